"""ConvLSTM1D / ConvLSTM2D: forward vs a numpy loop of direct 1-D convolutions (Keras'
gates i, f, c, o; the recurrent convolution at stride 1 with "same" padding), training
compiled vs reference, gradients vs finite differences (with per-gate dropout masks in
place), config round trip and save/load. Files Keras wrote: test_rnn_cells.py."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers

try:
    from tests.model_checks import check_gradients_fd
    from tests.rnn_reference import sigmoid
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from model_checks import check_gradients_fd
    from rnn_reference import sigmoid

B, T, L, C, FILT = 2, 4, 7, 3, 2


def conv1d(x, w, padding):
    """x (B, L, Cin), w (k, Cin, Cout), stride 1: direct cross-correlation."""
    k = w.shape[0]
    if padding == "same":
        x = np.pad(x, ((0, 0), ((k - 1) // 2, k - 1 - (k - 1) // 2), (0, 0)))
    n = x.shape[1] - k + 1
    return np.stack([np.einsum("bkc,kco->bo", x[:, i:i + k], w) for i in range(n)], 1)


def np_conv_lstm1d(x, W, R, b, padding):
    f = R.shape[1]
    h = np.zeros((x.shape[0], conv1d(x[:, 0], W, padding).shape[1], f))
    c = np.zeros_like(h)
    outs = []
    for t in range(x.shape[1]):
        z = conv1d(x[:, t], W, padding) + b + conv1d(h, R, "same")
        i, fg, g, o = (z[..., j * f:(j + 1) * f] for j in range(4))
        c = sigmoid(fg) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1), h, c


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv_lstm1d_matches_numpy(padding, backend):
    rng = np.random.default_rng(1)
    inp = layers.Input((T, L, C))
    layer = layers.ConvLSTM1D(FILT, 3, padding=padding, return_sequences=True,
                              return_state=True)
    model = models.Model(inp, layer(inp))
    W, R, b = (rng.normal(0, 0.4, w.shape).astype(np.float32) for w in layer.weights)
    layer.set_weights([W, R, b])
    assert W.shape == (3, C, 4 * FILT) and R.shape == (3, FILT, 4 * FILT)
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    x = rng.normal(size=(B, T, L, C)).astype(np.float32)
    got = model.predict(x, verbose=0)
    for a, e in zip(got, np_conv_lstm1d(x.astype(np.float64), W, R, b, padding)):
        np.testing.assert_allclose(a, e, atol=2e-5, rtol=1e-4)


def build():
    inp = layers.Input((T, 5, 4, C))
    y = layers.ConvLSTM2D(FILT, 2, padding="same", return_sequences=True, dropout=0.2,
                          recurrent_dropout=0.1, seed=4)(inp)
    y = layers.ConvLSTM2D(FILT, (2, 3), strides=(2, 1), go_backwards=True)(y)
    return models.Model(inp, layers.Dense(1)(layers.Flatten()(y)))


def test_training_compiled_matches_reference_with_dropout():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, T, 5, 4, C)).astype(np.float32)
    y = rng.normal(size=(3, 1)).astype(np.float32)
    nat, ref = build(), build()
    w0 = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in nat.get_weights()]
    for m, backend in ((nat, "native"), (ref, "reference")):
        m.set_weights(w0)
        m.compile(optimizer=optimizers.SGD(0.05), loss="mse", backend=backend)
    for s in range(2):
        np.testing.assert_allclose(nat.train_on_batch(x, y), ref.train_on_batch(x, y),
                                   rtol=1e-4, atol=1e-5, err_msg=f"loss {s}")
    for a, b in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gradients_match_finite_differences_with_dropout_masks():
    model = build()
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.3, w.shape) for w in model.get_weights()])
    check_gradients_fd(model, [rng.normal(size=(2, T, 5, 4, C))], training=True)


def test_config_save_load_and_errors(tmp_path):
    model = build()
    model.compile(optimizer="sgd", loss="mse", backend="native")
    x = np.random.default_rng(4).normal(size=(2, T, 5, 4, C)).astype(np.float32)
    cfg = model.layers[1].get_config()
    assert (cfg["filters"], cfg["kernel_size"], cfg["dropout"]) == (FILT, (2, 2), 0.2)
    assert layers.ConvLSTM2D.from_config(cfg).cell.recurrent_dropout == 0.1
    for fmt in ("keras", "h5"):
        model.save(tmp_path / f"m.{fmt}")
        loaded = models.load_model(tmp_path / f"m.{fmt}")
        loaded.compile(optimizer="sgd", loss="mse", backend="native")
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="expected ndim=5, found ndim=6"):
        layers.ConvLSTM2D(2, 3)(layers.Input((T, 5, 4, C, 1)))
    with pytest.raises(ValueError, match="not compatible with `dilation_rate > 1`"):
        layers.ConvLSTM1D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="zero or negative"):
        layers.ConvLSTM1D(2, 9)(layers.Input((T, L, C)))
