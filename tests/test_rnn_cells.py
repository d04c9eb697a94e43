"""RNN(cell): Keras' cells, StackedRNNCells and user-written cells.

* forward against a numpy loop written out here from the same weights (Keras' layout:
  gates i, f, c, o and z, r, h; GRU bias (2, 3u) with reset_after), on the reference
  interpreter and compiled; go_backwards, return_state, masks;
* user cells (Keras' MinimalRNNCell example, a cell with two states and a Dense
  sublayer) forward vs numpy, trained compiled vs reference, gradients vs finite
  differences, config round trip and save/load in .keras and .h5;
* the weights and configs Keras 3 writes: files written by Keras (tests/fixtures/rnn,
  made by make_rnn_fixtures.py) load and predict as Keras did.
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, ops, optimizers

try:
    from tests.model_checks import check_gradients_fd
    from tests.rnn_reference import (N_STATES, LeakyMemoryCell, MinimalRNNCell, cell_weights,
                                     np_leaky, np_loop, np_minimal, np_step)
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from model_checks import check_gradients_fd
    from rnn_reference import (N_STATES, LeakyMemoryCell, MinimalRNNCell, cell_weights,
                               np_leaky, np_loop, np_minimal, np_step)

B, T, D, U = 3, 5, 4, 3
ATOL, RTOL = 2e-5, 1e-4


CELLS = {"lstm": layers.LSTMCell, "gru": layers.GRUCell, "simple_rnn": layers.SimpleRNNCell}


def x_data(seed=0, n=B):
    return np.random.default_rng(seed).normal(size=(n, T, D)).astype(np.float32)


def compiled(model, backend):
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    return model


# ------------------------------------------------------------ built-in cells vs numpy
@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_rnn_of_a_builtin_cell_matches_numpy(kind, backend):
    rng = np.random.default_rng(1)
    w = cell_weights(kind, D, U, rng)
    inp = layers.Input((T, D))
    seq = layers.RNN(CELLS[kind](U), return_sequences=True, return_state=True)
    back = layers.RNN(CELLS[kind](U), go_backwards=True)
    outs = seq(inp)
    model = models.Model(inp, [*outs, back(inp)])
    seq.set_weights(w)
    back.set_weights(w)
    x = x_data(2)
    got = compiled(model, backend).predict(x, verbose=0)
    zeros = [np.zeros((B, U))] * N_STATES[kind]
    step = lambda xt, s: np_step(kind, xt, s, *w)        # noqa: E731
    ys, finals = np_loop(step, x.astype(np.float64), zeros)
    ys_back, _ = np_loop(step, x.astype(np.float64), zeros, go_backwards=True)
    for a, e, what in zip(got, [ys, *finals, ys_back[:, -1]],
                          ["sequence", *[f"state {i}" for i in range(len(finals))], "back"]):
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=RTOL, err_msg=what)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_stacked_cells_run_in_each_step_as_stacked_layers(backend):
    """StackedRNNCells: a cell's output feeds the next cell in the same step; the states
    are [lstm h, lstm c, gru h]; the output is the last cell's."""
    rng = np.random.default_rng(3)
    w1, w2 = cell_weights("lstm", D, U, rng), cell_weights("gru", U, 2, rng, reset_after=False)
    inp = layers.Input((T, D))
    rnn = layers.RNN([layers.LSTMCell(U), layers.GRUCell(2, reset_after=False)],
                     return_sequences=True, return_state=True)
    model = models.Model(inp, rnn(inp))
    rnn.set_weights(w1 + w2)
    assert isinstance(rnn.cell, layers.StackedRNNCells)
    x = x_data(4)
    got = compiled(model, backend).predict(x, verbose=0)
    y1, (h1, c1) = np_loop(lambda xt, s: np_step("lstm", xt, s, *w1), x.astype(np.float64),
                           [np.zeros((B, U))] * 2)
    y2, (h2,) = np_loop(lambda xt, s: np_step("gru", xt, s, *w2, reset_after=False), y1,
                        [np.zeros((B, 2))])
    for a, e in zip(got, [y2, h1, c1, h2]):
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=RTOL)


def test_masked_steps_carry_states_and_output_or_give_zeros():
    """Keras: a masked step keeps the states; its output is the previous one, or zeros
    with zero_output_for_mask=True."""
    rng = np.random.default_rng(5)
    w = cell_weights("simple_rnn", D, U, rng)
    x = x_data(6)
    x[0, 3:] = 0.0
    x[1, 1:] = 0.0
    valid = np.any(x != 0, axis=-1)
    for zero in (False, True):
        inp = layers.Input((T, D))
        rnn = layers.RNN(layers.SimpleRNNCell(U), return_sequences=True,
                         zero_output_for_mask=zero)
        model = compiled(models.Model(inp, rnn(layers.Masking()(inp))), "native")
        rnn.set_weights(w)
        got = model.predict(x, verbose=0)
        h = np.zeros((B, U))
        for t in range(T):
            new, _ = np_step("simple_rnn", x[:, t].astype(np.float64), [h], *w)
            m = valid[:, t:t + 1]
            h = np.where(m, new, h)
            expect = np.where(m, new, 0.0 if zero else h)
            np.testing.assert_allclose(got[:, t], expect, atol=ATOL, rtol=RTOL,
                                       err_msg=f"step {t} zero_output_for_mask={zero}")


# ---------------------------------------------------------------------- user cells
def user_model(cell):
    inp = layers.Input((T, D))
    return models.Model(inp, layers.RNN(cell, return_sequences=True)(inp))


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_user_cells_match_numpy(backend):
    rng = np.random.default_rng(7)
    x = x_data(8)
    m1 = user_model(MinimalRNNCell(U))
    K, R = (rng.normal(0, 0.4, w.shape).astype(np.float32) for w in m1.weights)
    m1.set_weights([K, R])
    np.testing.assert_allclose(compiled(m1, backend).predict(x, verbose=0),
                               np_minimal(x.astype(np.float64), K, R)[0], atol=ATOL, rtol=RTOL)
    m2 = user_model(LeakyMemoryCell(U, leak=0.6))
    # Keras' order: the cell's own weights (gain), then its Dense's.
    assert [w.name for w in m2.weights] == ["gain", "kernel", "bias"]
    ws = [rng.normal(0, 0.4, w.shape).astype(np.float32) for w in m2.weights]
    m2.set_weights(ws)
    gain, Wd, bd = ws
    np.testing.assert_allclose(compiled(m2, backend).predict(x, verbose=0),
                               np_leaky(x.astype(np.float64), Wd, bd, gain, 0.6)[0],
                               atol=ATOL, rtol=RTOL)


def build_user_stack():
    inp = layers.Input((T, D))
    y = layers.RNN([LeakyMemoryCell(U), layers.GRUCell(2)])(inp)
    return models.Model(inp, layers.Dense(2)(y))


def build_cell_rnns():
    inp = layers.Input((T, D))
    y = layers.RNN(layers.LSTMCell(U), return_sequences=True, go_backwards=True)(inp)
    y = layers.RNN(MinimalRNNCell(2))(y)
    return models.Model(inp, layers.Dense(2)(y))


BUILDS = {"user_stack": build_user_stack, "cell_rnns": build_cell_rnns}


@pytest.mark.parametrize("name", list(BUILDS))
def test_training_compiled_matches_reference(name):
    rng = np.random.default_rng(9)
    x, y = x_data(10, n=4), rng.normal(size=(4, 2)).astype(np.float32)
    nat, ref = BUILDS[name](), BUILDS[name]()
    w0 = [rng.normal(0, 0.4, w.shape).astype(np.float32) for w in nat.get_weights()]
    nat.set_weights(w0)
    ref.set_weights(w0)
    nat.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="native")
    ref.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="reference")
    for s in range(3):
        np.testing.assert_allclose(nat.train_on_batch(x, y), ref.train_on_batch(x, y),
                                   rtol=1e-4, atol=1e-5, err_msg=f"loss {s}")
    for a, b, v in zip(nat.get_weights(), ref.get_weights(), nat.weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=v.path)
    assert any(not np.allclose(a, b) for a, b in zip(w0, nat.get_weights()))


@pytest.mark.parametrize("name", list(BUILDS))
def test_reference_gradients_match_finite_differences(name):
    model = BUILDS[name]()
    rng = np.random.default_rng(11)
    model.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    check_gradients_fd(model, [x_data(12, n=2)])


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_user_cell_models_save_and_load(tmp_path, fmt):
    model = compiled(build_user_stack(), "native")
    x = x_data(13)
    before = model.predict(x, verbose=0)
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    loaded = models.load_model(path)
    rnn = [l for l in loaded.layers if isinstance(l, layers.RNN)][0]
    assert isinstance(rnn.cell.cells[0], LeakyMemoryCell) and rnn.cell.cells[0].leak == 0.7
    loaded.compile(optimizer="sgd", loss="mse", backend="native")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, atol=1e-6)


def test_rnn_config_round_trip_keeps_cells_and_options():
    rnn = layers.RNN([layers.LSTMCell(3, unit_forget_bias=False, dropout=0.1),
                      layers.SimpleRNNCell(2, activation="relu")],
                     return_sequences=True, go_backwards=True, zero_output_for_mask=True)
    cfg = rnn.get_config()
    assert cfg["cell"]["class_name"] == "StackedRNNCells"
    assert [c["class_name"] for c in cfg["cell"]["config"]["cells"]] == ["LSTMCell",
                                                                         "SimpleRNNCell"]
    again = layers.RNN.from_config(cfg)
    assert again.go_backwards and again.return_sequences and again.zero_output_for_mask
    c0, c1 = again.cell.cells
    assert (c0.units, c0.unit_forget_bias, c0.dropout) == (3, False, 0.1)
    assert c1.get_config()["activation"] == "relu"


def test_bad_cells_and_states_raise_keras_errors():
    with pytest.raises(ValueError, match="should have a `call` method"):
        layers.RNN(object())

    class NoState(layers.Layer):
        def call(self, inputs, states):
            return inputs, states
    with pytest.raises(ValueError, match="`state_size` attribute"):
        layers.RNN(NoState())
    with pytest.raises(ValueError, match="All cells must have a `state_size`"):
        layers.StackedRNNCells([layers.GRUCell(2), NoState()])
    with pytest.raises(ValueError, match="invalid value for argument `units`"):
        layers.LSTMCell(0)
    inp = layers.Input((T, D))
    with pytest.raises(ValueError, match="expects 2 state"):
        layers.RNN(layers.LSTMCell(2))(inp, initial_state=[layers.Input((2,))])


# ------------------------------------------------------- files Keras 3 wrote
FIXTURES = ["cells", "cells_masked", "bidirectional", "bidirectional_masked", "dropout_options", "stateful",
            "conv_lstm"]


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("name", FIXTURES)
def test_keras_files_load_and_predict_as_keras(name, fmt):
    """Keras' configs (cells, forward_/backward_ layers, zero_output_for_mask forced by
    Bidirectional, dropout options) and weight layouts (layers/<rnn>/cell/...,
    forward_layer/cell/..., cells/<cell>/...) load; a stateful model's second batch
    starts from the first's final states."""
    import os
    here = os.path.join(os.path.dirname(__file__), "fixtures", "rnn")
    model = models.load_model(os.path.join(here, f"{name}.{fmt}"))
    model.compile(optimizer="sgd", loss="mse", backend="native")
    data = np.load(os.path.join(here, f"{name}.npz"))
    i = 0
    while f"x{i}" in data:
        x = [data[f"x{i}"], data[f"s{i}"]] if f"s{i}" in data else data[f"x{i}"]
        got = model.predict(x, verbose=0)
        got = got if isinstance(got, list) else [got]
        n = len([k for k in data if k.startswith(f"y{i}_")])
        assert len(got) == n
        for j, a in enumerate(got):
            np.testing.assert_allclose(a, data[f"y{i}_{j}"], atol=2e-6, rtol=1e-5,
                                       err_msg=f"{name}.{fmt} batch {i} output {j}")
        i += 1


class StartsAtOne(MinimalRNNCell):
    """A cell whose `get_initial_state` gives ones (Keras asks the cell for its states)."""

    def get_initial_state(self, batch_size=None):
        return [ops.ones((batch_size, self.units))]


def test_a_cells_get_initial_state_starts_the_loop():
    rng = np.random.default_rng(14)
    layer = layers.RNN(StartsAtOne(U), return_sequences=True)
    inp = layers.Input((T, D))
    model = compiled(models.Model(inp, layer(inp)), "native")
    K, R = (rng.normal(0, 0.4, w.shape).astype(np.float32) for w in layer.weights)
    layer.set_weights([K, R])
    x = x_data(15).astype(np.float64)
    expect, _ = np_loop(lambda xt, s: ((lambda o: (o, [o]))(xt @ K + s[0] @ R)), x,
                        [np.ones((B, U))])
    np.testing.assert_allclose(model.predict(x.astype(np.float32), verbose=0), expect,
                               atol=ATOL, rtol=RTOL)
    zeros = layers.RNN(layers.LSTMCell(2)).get_initial_state(4)
    assert [z.shape for z in zeros] == [(4, 2), (4, 2)] and not any(z.any() for z in zeros)


class LossyCell(MinimalRNNCell):
    def call(self, inputs, states):
        out, new = super().call(inputs, states)
        self.add_loss(ops.sum(out))
        return out, new


class CountingCell(MinimalRNNCell):
    def build(self, input_shape):
        super().build(input_shape)
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="count")

    def call(self, inputs, states):
        self.count.assign(self.count + 1.0)
        return super().call(inputs, states)


def test_a_cell_adding_losses_or_updates_in_its_step_is_refused():
    for cell, what in ((LossyCell(2), "added a loss"), (CountingCell(2), "assigned a variable")):
        with pytest.raises(ValueError, match=what):
            layers.RNN(cell)(layers.Input((T, D)))
