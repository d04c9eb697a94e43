"""The Keras names the guides reach for beside layers: lowercase merge helpers, Masking
and masks carried by results (`_keras_mask`), `layer.input` / `layer.output`,
`model.input` / `model.output`, `clone_model`, `serialize_keras_object`, Loss
subclasses with `call()`, extra positional arguments of a functional layer call, and
`fit(x)` with no targets for a model trained on its `add_loss` terms."""
import numpy as np
import pytest

import kcompile as keras
from kcompile import layers, models, ops, saving

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def test_lowercase_merge_helpers_follow_their_formulas():
    a, b = keras.Input((3,)), keras.Input((3,))
    outs = [layers.subtract([a, b]), layers.multiply([a, b]), layers.average([a, b]),
            layers.maximum([a, b]), layers.minimum([a, b])]
    model = keras.Model([a, b], outs)
    x, y = rand(4, 3), rand(4, 3)
    got = model.predict([x, y], verbose=0)
    for value, want in zip(got, [x - y, x * y, (x + y) / 2, np.maximum(x, y), np.minimum(x, y)]):
        np.testing.assert_allclose(value, want, rtol=1e-6)


def test_masking_layer_output_and_mask():
    x = rand(2, 5, 3)
    x[0, 3:] = 0.0
    x[1, 1] = 0.0
    out = layers.Masking(mask_value=0.0)(x)
    kept = np.any(x != 0.0, axis=-1)
    np.testing.assert_array_equal(out._keras_mask, kept)
    np.testing.assert_allclose(out, x * kept[..., None])


def test_lstm_after_masking_skips_the_padding():
    """Post-padded steps after Masking leave an LSTM's last state as on the real steps."""
    inputs = keras.Input((None, 3))
    lstm = layers.LSTM(4)
    model = keras.Model(inputs, lstm(layers.Masking()(inputs)))
    x = rand(1, 6, 3)
    padded = x.copy()
    padded[:, 4:] = 0.0
    ref = keras.Model(i := keras.Input((None, 3)), lstm(i))
    np.testing.assert_allclose(model.predict(padded, verbose=0), ref.predict(x[:, :4], verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_masks_ride_on_eager_results_and_keras_tensors():
    ids = np.array([[3, 1, 0, 0], [2, 0, 0, 0]], np.int32)
    emb = layers.Embedding(10, 4, mask_zero=True)
    out = emb(ids)
    np.testing.assert_array_equal(out._keras_mask, ids != 0)
    assert out._keras_mask.dtype == bool

    class PassThrough(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs):
            return ops.relu(inputs)
    t = PassThrough()(layers.Embedding(10, 4, mask_zero=True)(keras.Input((None,), dtype="int32")))
    assert t._keras_mask is not None and t._keras_mask.shape == (None, None)
    assert layers.Dense(2)(keras.Input((3,)))._keras_mask is None


def test_layer_and_model_input_output():
    inputs = keras.Input((3,), name="features")
    dense = layers.Dense(2)
    outputs = dense(inputs)
    model = keras.Model(inputs, outputs)
    assert model.input is inputs and model.output is outputs
    assert model.inputs == [inputs] and model.outputs == [outputs]
    assert dense.input is inputs and dense.output is outputs
    with pytest.raises(AttributeError, match="never been called"):
        layers.Dense(2).output
    seq = models.Sequential([keras.Input((3,)), layers.Dense(5), layers.Dense(1)])
    assert seq.layers[1].output.shape == (None, 1) and seq.output.shape == (None, 1)
    assert seq.layers[0].input.shape == (None, 3)


def test_clone_model_same_architecture_new_weights():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(3, activation="tanh")(layers.Dense(5)(inputs)))
    clone = models.clone_model(model)
    assert clone is not model and [type(l).__name__ for l in clone.layers] == \
        [type(l).__name__ for l in model.layers]
    assert not all(np.array_equal(a, b) for a, b in zip(clone.get_weights(), model.get_weights()))
    clone.set_weights(model.get_weights())
    x = rand(2, 4)
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    seq = models.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(2)])
    relu_clone = models.clone_model(
        seq, clone_function=lambda l: layers.Dense(l.units, activation="relu"))
    assert [l.activation for l in relu_clone.layers] == ["relu", "relu"] or \
        all(getattr(l.activation, "__name__", l.activation) == "relu" for l in relu_clone.layers)
    with pytest.raises(NotImplementedError, match="input_tensors"):
        models.clone_model(model, input_tensors=[keras.Input((4,))])


@saving.register_keras_serializable(package="surface_tests")
class Scaled:
    def __init__(self, factor=2.0):
        self.factor = factor

    def get_config(self):
        return {"factor": self.factor}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_serialize_keras_object_round_trips():
    for obj, check in [
            (keras.regularizers.L1(0.005), lambda o: o.get_config() == {"l1": 0.005}),
            (keras.optimizers.Adam(0.25), lambda o: np.isclose(o.get_config()["learning_rate"], 0.25)),
            (layers.Dense(3, activation="relu"), lambda o: o.units == 3),
            (Scaled(3.0), lambda o: isinstance(o, Scaled) and o.factor == 3.0),
            (np.arange(4, dtype=np.int32), lambda o: np.array_equal(o, np.arange(4)))]:
        config = saving.serialize_keras_object(obj)
        assert check(saving.deserialize_keras_object(config)), config
    config = saving.serialize_keras_object(keras.activations.relu)
    assert config["class_name"] == "function" and config["config"] == "relu"
    assert saving.deserialize_keras_object(config) is keras.activations.relu
    assert saving.serialize_keras_object(Scaled())["registered_name"] == "surface_tests>Scaled"
    with pytest.raises(ValueError, match="NoSuchThing"):
        saving.deserialize_keras_object({"class_name": "NoSuchThing", "config": {}})


def test_loss_subclass_call_is_the_training_loss():
    class HalfMSE(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return 0.5 * ops.mean(ops.square(y_true - y_pred), axis=-1)
    model = models.Sequential([keras.Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=HalfMSE())
    x, y = rand(6, 3), rand(6, 2)
    pred = model.predict(x, verbose=0)
    assert np.isclose(model.evaluate(x, y, verbose=0), 0.5 * np.mean((y - pred) ** 2), rtol=1e-5)


def test_positional_call_arguments_and_fit_without_targets():
    class Endpoint(layers.Layer):
        def call(self, targets, logits, scale=1.0):
            self.add_loss(scale * ops.mean(ops.square(targets - logits)))
            return logits
    inputs, targets = keras.Input((3,), name="inputs"), keras.Input((2,), name="targets")
    logits = layers.Dense(2)(inputs)
    model = keras.Model([inputs, targets], Endpoint()(targets, logits, 3.0))
    model.compile(optimizer="sgd")
    data = {"inputs": rand(8, 3), "targets": rand(8, 2)}
    pred = model.predict(data, verbose=0)
    want = 3.0 * np.mean((data["targets"] - pred) ** 2)
    assert np.isclose(model.evaluate(data, verbose=0), want, rtol=1e-5)
    history = model.fit(data, epochs=2, batch_size=8, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="y is None"):
        model.fit(data, verbose=0)


def test_static_batch_size_and_sequential_inputs():
    x = keras.Input(batch_shape=(16, 10, 5))
    assert x.shape == (16, 10, 5)
    y = layers.Conv1D(4, 3)(x)
    assert y.shape == (16, 8, 4)                      # as Keras: the batch size stays
    inputs = keras.Input((20, 3))
    seq = models.Sequential([inputs, layers.Dense(4, name="hidden"), layers.Dense(1)])
    assert seq.inputs == [inputs] and seq.output_shape == (None, 20, 1)
    features = keras.Model(seq.inputs, seq.get_layer("hidden").output)
    data = rand(2, 20, 3)
    k, b = seq.get_layer("hidden").get_weights()
    np.testing.assert_allclose(features.predict(data, verbose=0), data @ k + b, rtol=1e-5)
    # a None axis traced at sizes a valid convolution accepts
    assert layers.Conv1D(2, 5)(keras.Input((None, 3))).shape == (None, None, 2)
