"""Every layer family a Keras model is built from survives the ways Keras copies a model:
`models.clone_model`, `model.to_json` / `models.model_from_json`, and
`layers.serialize` / `layers.deserialize`. With the weights copied over, each copy must
predict what the original predicts, and its config must read back unchanged."""
import numpy as np
import pytest

import kcompile as keras
from kcompile import layers, models

RNG = np.random.default_rng(5)


def _mha(x):
    return layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x, use_causal_mask=True)


# name -> (input shape without the batch, function from a KerasTensor to a KerasTensor)
ZOO = {
    "LayerNormalization": ((6, 8), lambda x: layers.LayerNormalization()(x)),
    "GroupNormalization": ((6, 8), lambda x: layers.GroupNormalization(groups=4)(x)),
    "UnitNormalization": ((6, 8), lambda x: layers.UnitNormalization()(x)),
    "EinsumDense": ((6, 8), lambda x: layers.EinsumDense("abc,cd->abd", (None, 5),
                                                         bias_axes="d")(x)),
    "MultiHeadAttention": ((6, 8), _mha),
    "Attention": ((6, 8), lambda x: layers.Attention()([x, x])),
    "AdditiveAttention": ((6, 8), lambda x: layers.AdditiveAttention()([x, x])),
    "RNN(LSTMCell)": ((6, 8), lambda x: layers.RNN(layers.LSTMCell(5))(x)),
    "StackedRNNCells": ((6, 8), lambda x: layers.RNN(
        layers.StackedRNNCells([layers.GRUCell(4), layers.SimpleRNNCell(3)]))(x)),
    "Bidirectional(sum)": ((6, 8), lambda x: layers.Bidirectional(
        layers.LSTM(4, return_sequences=True), merge_mode="sum")(x)),
    "TimeDistributed": ((6, 8), lambda x: layers.TimeDistributed(layers.Dense(3))(x)),
    "ConvLSTM1D": ((5, 7, 3), lambda x: layers.ConvLSTM1D(4, 3, padding="same")(x)),
    "PReLU": ((6, 8), lambda x: layers.PReLU()(x)),
    "ELU+Softmax": ((6, 8), lambda x: layers.Softmax(axis=1)(layers.ELU(0.5)(x))),
    "Permute+Dot": ((6, 8), lambda x: layers.Dot(axes=(1, 2))([x, layers.Permute((2, 1))(x)])),
    "noise": ((6, 8), lambda x: layers.SpatialDropout1D(0.3)(
        layers.GaussianNoise(0.1)(layers.GaussianDropout(0.2)(x)))),
    "Rescaling+Identity": ((6, 8), lambda x: layers.Identity()(layers.Rescaling(0.5, 1.0)(x))),
    "ActivityRegularization": ((6, 8), lambda x: layers.ActivityRegularization(l1=0.01)(x)),
}


def _unbuilt(config):
    """A config without the build records a built layer adds to its sublayers' entries
    (a fresh copy is not built yet), with an axis written as a list, as Keras'
    LayerNormalization writes it once built."""
    if isinstance(config, dict):
        return {k: ([v] if k == "axis" and isinstance(v, int) else _unbuilt(v))
                for k, v in config.items() if k != "build_config"}
    if isinstance(config, list):
        return [_unbuilt(v) for v in config]
    return config


def _model(name):
    shape, build = ZOO[name]
    inputs = keras.Input(shape)
    return keras.Model(inputs, build(inputs)), shape


def _same_predictions(a, b, shape):
    b.set_weights(a.get_weights())
    x = RNG.normal(size=(3, *shape)).astype(np.float32)
    np.testing.assert_allclose(b.predict(x, verbose=0), a.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_clone_model_keeps_architecture(name):
    model, shape = _model(name)
    clone = models.clone_model(model)
    assert [type(l).__name__ for l in clone.layers] == [type(l).__name__ for l in model.layers]
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    _same_predictions(model, clone, shape)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_json_roundtrip(name):
    model, shape = _model(name)
    again = models.model_from_json(model.to_json())
    assert again.to_json() == model.to_json()
    _same_predictions(model, again, shape)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_layers_serialize_roundtrip(name):
    model, _ = _model(name)
    for layer in model.layers[1:]:
        copy = layers.deserialize(layers.serialize(layer))
        assert type(copy) is type(layer)
        assert _unbuilt(copy.get_config()) == _unbuilt(layer.get_config())
