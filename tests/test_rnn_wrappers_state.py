"""Bidirectional, TimeDistributed, stateful RNNs and dropout inside LSTM/GRU/SimpleRNN.

* Bidirectional in every merge mode vs numpy (forward run + backward run put back in
  time order), a custom backward_layer, return_state's order (forward states, then
  backward), Keras 3's config (layer named forward_<name>, backward_layer) and weight
  groups (forward_layer/cell/vars in a .keras file), Keras' errors;
* stateful: a batch starts from the previous batch's final states (eager calls, predict,
  fit), reset_states() zeroes them, a batch of another size is refused;
* dropout: one mask per sequence (the same at every step), kept entries scaled by
  1/(1-rate), the identity in inference; training compiled vs reference (same masks
  from the same seeds) and gradients vs finite differences with masks in place.
"""
from __future__ import annotations

import zipfile

import h5py
import numpy as np
import pytest

from kcompile import layers, models, optimizers

try:
    from tests.model_checks import check_gradients_fd
    from tests.rnn_reference import (MinimalRNNCell, N_STATES, cell_weights, np_loop,
                                      np_minimal, np_step)
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from model_checks import check_gradients_fd
    from rnn_reference import (MinimalRNNCell, N_STATES, cell_weights, np_loop, np_minimal,
                                np_step)

B, T, D, U = 3, 5, 4, 3
ATOL, RTOL = 2e-5, 1e-4
RNNS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}


def x_data(seed=0, n=B):
    return np.random.default_rng(seed).normal(size=(n, T, D)).astype(np.float32)


def compiled(model, backend="native"):
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    return model


# ----------------------------------------------------------------------- Bidirectional
MERGES = {"concat": lambda a, b: np.concatenate([a, b], -1), "sum": np.add,
          "mul": np.multiply, "ave": lambda a, b: (a + b) / 2}


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merge_modes_match_numpy(merge_mode, backend):
    rng = np.random.default_rng(1)
    wf, wb = cell_weights("gru", D, U, rng), cell_weights("gru", D, U, rng)
    inp = layers.Input((T, D))
    bi = layers.Bidirectional(layers.GRU(U, return_sequences=True), merge_mode=merge_mode)
    out = bi(inp)
    model = compiled(models.Model(inp, out), backend)
    bi.set_weights(wf + wb)
    x = x_data(2)
    got = model.predict(x, verbose=0)
    zero = [np.zeros((B, U))]
    fwd, _ = np_loop(lambda xt, s: np_step("gru", xt, s, *wf), x.astype(np.float64), zero)
    bwd, _ = np_loop(lambda xt, s: np_step("gru", xt, s, *wb), x.astype(np.float64), zero,
                     go_backwards=True)
    bwd = bwd[:, ::-1]                               # back in time order before the merge
    if merge_mode is None:
        np.testing.assert_allclose(got[0], fwd, atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(got[1], bwd, atol=ATOL, rtol=RTOL)
    else:
        np.testing.assert_allclose(got, MERGES[merge_mode](fwd, bwd), atol=ATOL, rtol=RTOL)


def test_bidirectional_backward_layer_and_return_state_order():
    rng = np.random.default_rng(3)
    wf, wb = cell_weights("lstm", D, U, rng), cell_weights("simple_rnn", D, U, rng)
    inp = layers.Input((T, D))
    bi = layers.Bidirectional(layers.LSTM(U, return_state=True, name="enc"),
                              backward_layer=layers.SimpleRNN(U, return_state=True,
                                                              go_backwards=True))
    model = compiled(models.Model(inp, bi(inp)))
    bi.set_weights(wf + wb)
    assert [w.path for w in bi.weights][:1] == ["forward_enc/lstm_cell/kernel"]
    x = x_data(4).astype(np.float64)
    out, h, c, hb = model.predict(x.astype(np.float32), verbose=0)
    _, (eh, ec) = np_loop(lambda xt, s: np_step("lstm", xt, s, *wf), x, [np.zeros((B, U))] * 2)
    _, (ehb,) = np_loop(lambda xt, s: np_step("simple_rnn", xt, s, *wb), x,
                        [np.zeros((B, U))], go_backwards=True)
    for a, e in zip([out, h, c, hb], [np.concatenate([eh, ehb], -1), eh, ec, ehb]):
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=RTOL)


def test_bidirectional_config_and_weight_groups_follow_keras(tmp_path):
    inp = layers.Input((T, D))
    bi = layers.Bidirectional(layers.LSTM(U, return_sequences=True, name="enc"),
                              merge_mode="sum", name="bi")
    model = compiled(models.Model(inp, bi(inp)))
    cfg = bi.get_config()
    assert cfg["layer"]["config"]["name"] == "forward_enc"
    assert cfg["backward_layer"]["config"]["name"] == "backward_enc"
    assert cfg["backward_layer"]["config"]["go_backwards"] is True
    again = layers.Bidirectional.from_config(cfg)
    assert again.forward_layer.name == "forward_enc" and again.merge_mode == "sum"
    # Keras forces zero outputs at masked steps of returned sequences.
    assert again.forward_layer.zero_output_for_mask and again.backward_layer.zero_output_for_mask
    path = tmp_path / "bi.keras"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        z.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5") as f:
        for side in ("forward_layer", "backward_layer"):
            group = f[f"layers/bidirectional/{side}/cell/vars"]
            assert [group[k].shape for k in ("0", "1", "2")] == [(D, 4 * U), (U, 4 * U),
                                                                 (4 * U,)]
    x = x_data(5)
    loaded = compiled(models.load_model(path))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_bidirectional_weights_argument_and_errors():
    rng = np.random.default_rng(6)
    w = cell_weights("simple_rnn", D, 2, rng) + cell_weights("simple_rnn", D, 2, rng)
    bi = layers.Bidirectional(layers.SimpleRNN(2), weights=w)
    bi(layers.Input((T, D)))
    for a, b in zip(bi.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="Invalid merge mode"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="`keras.layers.Layer` instance"):
        layers.Bidirectional("lstm")
    with pytest.raises(ValueError, match="different `go_backwards`"):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2))
    with pytest.raises(ValueError, match='same value for attribute "return_sequences"'):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(
            2, go_backwards=True, return_sequences=True))
    with pytest.raises(AttributeError, match="must be stateful"):
        layers.Bidirectional(layers.LSTM(2)).reset_states()


def test_bidirectional_gradients_match_finite_differences():
    inp = layers.Input((T, D))
    y = layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode="mul")(inp)
    y = layers.Bidirectional(layers.RNN(layers.GRUCell(2)), merge_mode="ave")(y)
    model = models.Model(inp, y)
    rng = np.random.default_rng(7)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    check_gradients_fd(model, [x_data(8, n=2)])


# --------------------------------------------------------------------- TimeDistributed
class MaskedMean(layers.Layer):
    """Mean over the features of the entries the mask keeps (a layer taking a mask)."""

    def call(self, inputs, mask=None):
        return inputs * 0.0 + (1.0 if mask is None else mask[:, None] * 1.0)


def test_time_distributed_dense_and_mask_to_inner_layer():
    rng = np.random.default_rng(9)
    inp = layers.Input((T, D))
    td = layers.TimeDistributed(layers.Dense(2))
    mk = layers.TimeDistributed(MaskedMean())
    masked = layers.Masking()(inp)
    model = compiled(models.Model(inp, [td(inp), mk(masked)]))
    W, b = rng.normal(size=(D, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    td.set_weights([W, b])
    assert [w.path for w in td.weights] == [f"{td.layer.name}/kernel", f"{td.layer.name}/bias"]
    x = x_data(10)
    x[1, 3:] = 0.0
    y, m = model.predict(x, verbose=0)
    np.testing.assert_allclose(y, x @ W + b, atol=1e-5)
    # The inner layer saw the (batch*time,) mask of the Masking layer.
    np.testing.assert_array_equal(m[..., 0], np.any(x != 0, -1).astype(np.float32))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        layers.TimeDistributed(layers.Dense(2))(layers.Input((4,)))
    with pytest.raises(ValueError, match="`keras.layers.Layer` instance"):
        layers.TimeDistributed(3)


# --------------------------------------------------------------------------- stateful
def stateful_model(kind="lstm", batch=B):
    return models.Sequential([layers.Input(batch_shape=(batch, T, D)),
                              RNNS[kind](U, stateful=True, return_sequences=True)])


@pytest.mark.parametrize("kind", list(RNNS))
def test_stateful_batches_continue_from_the_last_states(kind):
    rng = np.random.default_rng(11)
    model = compiled(stateful_model(kind))
    w = cell_weights(kind, D, U, rng)
    model.set_weights(w)
    layer = model.layers[0]
    assert layer.get_weights().__len__() == 3            # states are not weights (Keras)
    x1, x2 = x_data(12), x_data(13)
    states = [np.zeros((B, U))] * N_STATES[kind]
    step = lambda xt, s: np_step(kind, xt, s, *w)          # noqa: E731
    e1, states = np_loop(step, x1.astype(np.float64), states)
    e2, _ = np_loop(step, x2.astype(np.float64), states)
    np.testing.assert_allclose(model.predict(x1, verbose=0), e1, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(model.predict(x2, verbose=0), e2, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(layer.states[0].numpy(), e2[:, -1], atol=ATOL, rtol=RTOL)
    layer.reset_states()
    assert all(not s.numpy().any() for s in layer.states)
    np.testing.assert_allclose(model.predict(x2, verbose=0),
                               np_loop(step, x2.astype(np.float64),
                                       [np.zeros((B, U))] * N_STATES[kind])[0],
                               atol=ATOL, rtol=RTOL)


def test_stateful_eager_calls_and_fit_carry_states():
    """The guide's use: call the layer on successive chunks, then reset_states()."""
    layer = layers.LSTM(U, stateful=True)
    rng = np.random.default_rng(14)
    x = rng.normal(size=(2, 3 * T, D)).astype(np.float32)
    whole = layers.LSTM(U)
    whole(x[:, :T])
    layer(x[:, :T])
    layer.set_weights(whole.get_weights())
    layer.reset_states()
    for k in range(3):
        out = layer(x[:, k * T:(k + 1) * T])
    np.testing.assert_allclose(out, whole(x), atol=ATOL, rtol=RTOL)
    layer.reset_states()
    np.testing.assert_allclose(layer(x[:, :T]), whole(x[:, :T]), atol=ATOL, rtol=RTOL)
    # fit: the states move with the batches (and training changes them).
    model = stateful_model("gru")
    model.compile(optimizer=optimizers.SGD(0.01), loss="mse", backend="native")
    before = model.layers[0].states[0].numpy()
    model.fit(x_data(15), np.zeros((B, T, U), np.float32), batch_size=B, epochs=1, verbose=0)
    assert np.abs(model.layers[0].states[0].numpy() - before).max() > 0


def test_stateful_errors_follow_keras():
    model = compiled(stateful_model("simple_rnn", batch=2))
    with pytest.raises(ValueError, match="Expected batch size: 2"):
        model.predict(x_data(16, n=4), batch_size=4, verbose=0)
    with pytest.raises(AttributeError, match="must be stateful"):
        layers.GRU(2).reset_states()


def test_stateful_bidirectional_resets_both_directions():
    inp = layers.Input(batch_shape=(B, T, D))
    bi = layers.Bidirectional(layers.GRU(U, stateful=True))
    model = compiled(models.Model(inp, bi(inp)))
    x = x_data(17)
    first = model.predict(x, verbose=0)
    second = model.predict(x, verbose=0)
    assert len(bi.states) == 2 and np.abs(first - second).max() > 1e-4
    bi.reset_states()
    np.testing.assert_allclose(model.predict(x, verbose=0), first, atol=1e-6)


# ---------------------------------------------------------------------------- dropout
def identity_rnn(**kw):
    """A linear SimpleRNN with identity kernels: its outputs show the masks."""
    layer = layers.SimpleRNN(D, activation=None, use_bias=False, return_sequences=True,
                             seed=3, **kw)
    layer(np.zeros((1, T, D), np.float32))
    return layer


def only_zero_or(a, scale):
    a = np.asarray(a, np.float64)
    return bool(np.all(np.isclose(a, 0.0, atol=1e-6) | np.isclose(a, scale, rtol=1e-5)))


def test_input_dropout_mask_is_drawn_once_per_sequence():
    rate = 0.4
    layer = identity_rnn(dropout=rate)
    layer.set_weights([np.eye(D), np.zeros((D, D))])
    x = np.ones((64, T, D), np.float32)
    y = np.asarray(layer(x, training=True))
    # output_t = x_t * mask: one mask for all the steps, entries 0 or 1/(1-rate).
    np.testing.assert_allclose(y, np.repeat(y[:, :1], T, axis=1), atol=1e-6)
    assert only_zero_or(y, 1 / (1 - rate))
    assert abs((y[:, 0] == 0).mean() - rate) < 0.1
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    other = np.asarray(layer(x, training=True))
    assert np.abs(other - y).max() > 0                   # a new mask for a new batch


def test_recurrent_dropout_mask_is_the_same_at_every_step():
    rate = 0.3
    layer = identity_rnn(recurrent_dropout=rate)
    layer.set_weights([np.eye(D), np.eye(D)])
    x = np.zeros((64, T, D), np.float32)
    x[:, 0] = 1.0
    y = np.asarray(layer(x, training=True))
    # h0 = 1, h_t = h_{t-1} * m: h1 = m, h2 = m^2 with the same m.
    m = y[:, 1]
    assert only_zero_or(m, 1 / (1 - rate))
    np.testing.assert_allclose(y[:, 2], m * m, rtol=1e-5)
    np.testing.assert_allclose(y[:, 3], m ** 3, rtol=1e-5)


def build_dropout_model():
    inp = layers.Input((T, D))
    y = layers.LSTM(U, dropout=0.3, recurrent_dropout=0.2, return_sequences=True, seed=1)(inp)
    y = layers.GRU(U, dropout=0.25, return_sequences=True, seed=2)(y)
    # A single built-in cell runs the layers' fused loop; stacked cells run their calls.
    y = layers.RNN(layers.SimpleRNNCell(2, recurrent_dropout=0.4, seed=3),
                   return_sequences=True)(y)
    y = layers.RNN([layers.LSTMCell(2, dropout=0.2, recurrent_dropout=0.3, seed=5),
                    layers.GRUCell(2, dropout=0.1, seed=6)])(y)
    return models.Model(inp, layers.Dense(2)(y))


def test_dropout_training_compiled_matches_reference_and_inference_ignores_it():
    rng = np.random.default_rng(18)
    x, y = x_data(19, n=4), rng.normal(size=(4, 2)).astype(np.float32)
    nat, ref = build_dropout_model(), build_dropout_model()
    w0 = [rng.normal(0, 0.4, w.shape).astype(np.float32) for w in nat.get_weights()]
    nat.set_weights(w0)
    ref.set_weights(w0)
    nat.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="native")
    ref.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="reference")
    losses = []
    for s in range(3):
        ln, lr = nat.train_on_batch(x, y), ref.train_on_batch(x, y)
        np.testing.assert_allclose(ln, lr, rtol=1e-4, atol=1e-5, err_msg=f"loss {s}")
        losses.append(float(ln))
    for a, b in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The same weights without dropout predict the same (dropout is off in inference).
    plain = models.Model.from_config(nat.get_config())
    for layer in plain.layers:
        cell = getattr(layer, "cell", None)
        for c in getattr(cell, "cells", [cell] if cell is not None else []):
            c.dropout = c.recurrent_dropout = 0.0
    plain.set_weights(nat.get_weights())
    plain.compile(optimizer="sgd", loss="mse", backend="native")
    np.testing.assert_allclose(nat.predict(x, verbose=0), plain.predict(x, verbose=0),
                               atol=1e-6)
    assert nat.layers[1].get_config()["recurrent_dropout"] == 0.2


def test_dropout_gradients_match_finite_differences():
    model = build_dropout_model()
    rng = np.random.default_rng(20)
    model.set_weights([rng.normal(0, 0.4, w.shape) for w in model.get_weights()])
    check_gradients_fd(model, [x_data(21, n=2)], training=True)


def test_bidirectional_of_a_user_cell_rnn_copies_the_cell(tmp_path):
    inp = layers.Input((T, D))
    bi = layers.Bidirectional(layers.RNN(MinimalRNNCell(2), return_sequences=True))
    model = compiled(models.Model(inp, bi(inp)))
    assert type(bi.backward_layer.cell) is MinimalRNNCell
    assert bi.forward_layer.cell is not bi.backward_layer.cell
    rng = np.random.default_rng(22)
    K1, R1, K2, R2 = (rng.normal(0, 0.4, w.shape).astype(np.float32) for w in bi.weights)
    bi.set_weights([K1, R1, K2, R2])
    x = x_data(23)
    fwd = np_minimal(x.astype(np.float64), K1, R1)[0]
    bwd = np_minimal(x[:, ::-1].astype(np.float64), K2, R2)[0][:, ::-1]
    np.testing.assert_allclose(model.predict(x, verbose=0), np.concatenate([fwd, bwd], -1),
                               atol=ATOL, rtol=RTOL)
    model.save(tmp_path / "m.keras")
    loaded = compiled(models.load_model(tmp_path / "m.keras"))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


class Twice(layers.Wrapper):
    """A user wrapper: the wrapped layer applied twice."""

    def call(self, inputs):
        return self.layer(self.layer(inputs))


def test_wrapper_subclass_holds_the_layer_and_its_config(tmp_path):
    inner = layers.Dense(D, use_bias=False)
    inp = layers.Input((D,))
    model = compiled(models.Model(inp, Twice(inner)(inp)))
    W = np.random.default_rng(24).normal(size=(D, D)).astype(np.float32)
    inner.set_weights([W])
    x = np.random.default_rng(25).normal(size=(2, D)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ W @ W, rtol=1e-5, atol=1e-5)
    assert model.layers[1].weights == inner.weights
    model.save(tmp_path / "w.keras")
    loaded = compiled(models.load_model(tmp_path / "w.keras", custom_objects={"Twice": Twice}))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), x @ W @ W, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="supplied to Wrapper"):
        Twice("dense")


def test_stateful_first_layer_takes_its_batch_size_as_keras_faq_writes_it():
    """LSTM(32, input_shape=(10, 16), batch_size=32, stateful=True) in a Sequential."""
    model = models.Sequential([layers.LSTM(U, input_shape=(T, D), batch_size=2, stateful=True),
                               layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", backend="native")
    assert model.layers[0].states[0].shape == (2, U)
    x = x_data(26, n=2)
    model.train_on_batch(x, np.zeros((2, 1), np.float32))
    assert np.abs(model.layers[0].states[0].numpy()).max() > 0
