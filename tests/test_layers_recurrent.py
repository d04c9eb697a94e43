"""Recurrent layers (LSTM, GRU, SimpleRNN on `scan`) and the Embedding in front of them.

* forward: each layer (return_sequences / return_state / go_backwards, stacked, masked)
  against a numpy RNN written out here from the same weights in Keras' layout, on the
  reference interpreter and compiled;
* backward: weights after a few SGD train_on_batch steps, compiled against reference,
  and the reference's gradient (autodiff, float64) against central finite differences;
* masking via Embedding(mask_zero=True), unit_forget_bias, bad inputs (ids out of range,
  2-D input to an LSTM), a two-branch functional LSTM model, gradient clipping, and the
  compile time of the W3 model not growing with the sequence length.

Keras semantics referred to (Keras 3): gates i, f, c, o (LSTM) and z, r, h (GRU,
reset_after=True, bias (2, 3u)); go_backwards processes the sequence reversed and, with
return_sequences, returns the outputs in processing order; a masked step carries the
state (and the previous output) through unchanged.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from kcompile import layers, models, optimizers

try:
    from tests.model_checks import check_gradients_fd
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from model_checks import check_gradients_fd

B, T, D, U = 3, 5, 4, 3
FWD_ATOL, FWD_RTOL = 2e-5, 1e-4          # float32 (native polynomials) vs float64 numpy
TRAIN_ATOL, TRAIN_RTOL = 1e-5, 1e-4      # compiled vs reference after a few steps

KINDS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}


# ------------------------------------------------------------------ numpy references
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_rnn(kind, x, weights, mask=None, go_backwards=False, reset_after=True,
           activation=np.tanh):
    """A Keras RNN in float64. Returns (outputs in processing order (B, T, u), h, c)."""
    W, Uk, b = (np.asarray(w, np.float64) for w in weights)
    x = np.asarray(x, np.float64)
    Bn, Tn, _ = x.shape
    u = Uk.shape[0]
    h = np.zeros((Bn, u))
    c = np.zeros((Bn, u))
    outs = []
    for t in (range(Tn - 1, -1, -1) if go_backwards else range(Tn)):
        xt = x[:, t]
        c_new = c
        if kind == "lstm":
            z = xt @ W + h @ Uk + b
            i, f, g, o = (z[:, j * u:(j + 1) * u] for j in range(4))
            c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h_new = sigmoid(o) * np.tanh(c_new)
        elif kind == "gru" and reset_after:
            mx = xt @ W + b[0]
            mi = h @ Uk + b[1]
            z = sigmoid(mx[:, :u] + mi[:, :u])
            r = sigmoid(mx[:, u:2 * u] + mi[:, u:2 * u])
            hh = np.tanh(mx[:, 2 * u:] + r * mi[:, 2 * u:])
            h_new = z * h + (1 - z) * hh
        elif kind == "gru":
            mx = xt @ W + b
            z = sigmoid(mx[:, :u] + h @ Uk[:, :u])
            r = sigmoid(mx[:, u:2 * u] + h @ Uk[:, u:2 * u])
            hh = np.tanh(mx[:, 2 * u:] + (r * h) @ Uk[:, 2 * u:])
            h_new = z * h + (1 - z) * hh
        else:
            h_new = activation(xt @ W + h @ Uk + b)
        if mask is not None:
            m = np.asarray(mask[:, t], bool)[:, None]
            h_new = np.where(m, h_new, h)
            c_new = np.where(m, c_new, c)
        h, c = h_new, c_new
        outs.append(h)
    return np.stack(outs, axis=1), h, c


def rnn_weights(kind, d, u, rng, reset_after=True, scale=0.5):
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
    W = rng.normal(0, scale, (d, gates * u))
    Uk = rng.normal(0, scale, (u, gates * u))
    bshape = (2, 3 * u) if kind == "gru" and reset_after else (gates * u,)
    b = rng.normal(0, 0.3, bshape)
    return [a.astype(np.float32) for a in (W, Uk, b)]


def close(actual, expected, what, atol=FWD_ATOL, rtol=FWD_RTOL):
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


def seeded(model, seed):
    r = np.random.default_rng(seed)
    return [r.normal(0, 0.4, w.shape).astype(np.float32) for w in model.get_weights()]


def twins(build, optimizer, loss="mse", seed=0, nthreads=None):
    """The same model twice with identical weights: compiled and reference."""
    nat, ref = build(), build()
    w0 = seeded(nat, seed)
    nat.set_weights(w0)
    ref.set_weights(w0)
    nat.compile(optimizer=optimizer(), loss=loss, backend="native", nthreads=nthreads)
    ref.compile(optimizer=optimizer(), loss=loss, backend="reference")
    return nat, ref


def assert_same_training(nat, ref, x, y, steps=3):
    for s in range(steps):
        ln = nat.train_on_batch(x, y)
        lr = ref.train_on_batch(x, y)
        np.testing.assert_allclose(ln, lr, rtol=TRAIN_RTOL, atol=TRAIN_ATOL, err_msg=f"loss {s}")
    for i, (a, b) in enumerate(zip(nat.get_weights(), ref.get_weights())):
        np.testing.assert_allclose(a, b, rtol=TRAIN_RTOL, atol=TRAIN_ATOL,
                                   err_msg=f"weight {i} ({nat.weights[i].path}) after {steps} steps")


# ------------------------------------------- reference gradients vs finite differences
# ----------------------------------------------------------- forward vs numpy
VARIANTS = [("last", {}), ("seq", dict(return_sequences=True)),
            ("back_last", dict(go_backwards=True)),
            ("back_seq", dict(return_sequences=True, go_backwards=True)),
            ("state", dict(return_state=True)),
            ("seq_state_back", dict(return_sequences=True, return_state=True, go_backwards=True))]


def variant_model(kind, weights, **extra):
    inp = layers.Input((T, D))
    outs, labels = [], []
    for name, kw in VARIANTS:
        layer = KINDS[kind](U, **kw, **extra)
        o = layer(inp)
        layer.set_weights(weights)
        o = o if isinstance(o, list) else [o]
        n_state = 2 if kind == "lstm" else 1
        if kw.get("return_state"):
            assert len(o) == 1 + n_state, f"{kind} return_state gave {len(o)} outputs"
            labels += [f"{name}/out", f"{name}/h"] + ([f"{name}/c"] if kind == "lstm" else [])
        else:
            assert len(o) == 1
            labels.append(name)
        outs += o
    return models.Model(inp, outs), labels


def expected_variants(kind, x, weights, **np_kw):
    exp = {}
    for name, kw in VARIANTS:
        seq, h, c = np_rnn(kind, x, weights, go_backwards=kw.get("go_backwards", False), **np_kw)
        out = seq if kw.get("return_sequences") else h
        if kw.get("return_state"):
            exp[f"{name}/out"], exp[f"{name}/h"] = out, h
            if kind == "lstm":
                exp[f"{name}/c"] = c
        else:
            exp[name] = out
    return exp


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn", "gru_reset_before"])
def test_rnn_variants_match_numpy(kind, backend):
    """Every combination of return_sequences / return_state / go_backwards equals the
    numpy RNN (Keras semantics), on the reference interpreter and compiled."""
    rng = np.random.default_rng(sorted(KINDS).index(kind) if kind in KINDS else 7)
    base, extra, np_kw = kind, {}, {}
    if kind == "gru_reset_before":
        base, extra, np_kw = "gru", dict(reset_after=False), dict(reset_after=False)
    weights = rnn_weights(base, D, U, rng, **np_kw)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    model, labels = variant_model(base, weights, **extra)
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    got = model.predict(x, verbose=0)
    exp = expected_variants(base, x, weights, **np_kw)
    failures = []
    for label, arr in zip(labels, got):
        try:
            close(arr, exp[label], f"{kind} {label}")
        except AssertionError as e:
            failures.append(f"{label}: max |diff| {np.max(np.abs(arr - exp[label])):.3g} "
                            f"(shape {arr.shape})")
    assert not failures, f"{kind} ({backend}) outputs differ from numpy/Keras: {failures}"


def test_go_backwards_returns_sequence_in_processing_order():
    """Keras: LSTM(go_backwards=True, return_sequences=True)(x) equals
    LSTM(return_sequences=True)(x[:, ::-1]) -- step 0 of the output is the step that
    read x[:, T-1]; its last step equals the final state."""
    rng = np.random.default_rng(3)
    w = rnn_weights("lstm", D, U, rng)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    back = models.Sequential([layers.LSTM(U, return_sequences=True, go_backwards=True,
                                          input_shape=(T, D))])
    fwd = models.Sequential([layers.LSTM(U, return_sequences=True, input_shape=(T, D))])
    back.set_weights(w)
    fwd.set_weights(w)
    for m in (back, fwd):
        m.compile(optimizer="sgd", loss="mse", backend="reference")
    yb = back.predict(x, verbose=0)
    yf_rev = fwd.predict(x[:, ::-1].copy(), verbose=0)
    close(yb, yf_rev, "go_backwards sequence vs forward run on the reversed input")
    last = models.Sequential([layers.LSTM(U, go_backwards=True, input_shape=(T, D))])
    last.set_weights(w)
    last.compile(optimizer="sgd", loss="mse", backend="reference")
    close(yb[:, -1], last.predict(x, verbose=0), "last step of the sequence == final output")


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_stacked_lstms_match_numpy(backend):
    rng = np.random.default_rng(5)
    w1, w2, w3 = rnn_weights("lstm", D, 4, rng), rnn_weights("lstm", 4, 3, rng), \
        rnn_weights("lstm", 3, 2, rng)
    model = models.Sequential([layers.LSTM(4, return_sequences=True, input_shape=(T, D)),
                               layers.LSTM(3, return_sequences=True),
                               layers.LSTM(2)])
    model.set_weights(w1 + w2 + w3)
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    s1, _, _ = np_rnn("lstm", x, w1)
    s2, _, _ = np_rnn("lstm", s1, w2)
    _, h3, _ = np_rnn("lstm", s2, w3)
    close(model.predict(x, verbose=0), h3, "3 stacked LSTMs")
    assert model.layers[1].output_shape == (None, T, 3)
    assert model.layers[2].output_shape == (None, 2)


def test_weight_layout_and_unit_forget_bias():
    """Keras' shapes and order; LSTM's initial bias is ones on the forget block only."""
    for kind, gates, bshape in [("lstm", 4, (4 * U,)), ("gru", 3, (2, 3 * U)),
                                ("simple_rnn", 1, (U,))]:
        m = models.Sequential([KINDS[kind](U, input_shape=(T, D))])
        shapes = [w.shape for w in m.get_weights()]
        assert shapes == [(D, gates * U), (U, gates * U), bshape], (kind, shapes)
        assert [w.name for w in m.layers[0].weights] == ["kernel", "recurrent_kernel", "bias"]
    assert models.Sequential([layers.GRU(U, reset_after=False, input_shape=(T, D))]) \
        .get_weights()[2].shape == (3 * U,)
    bias = models.Sequential([layers.LSTM(U, input_shape=(T, D))]).get_weights()[2]
    np.testing.assert_array_equal(bias, np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)])
    bias = models.Sequential([layers.LSTM(U, unit_forget_bias=False,
                                          input_shape=(T, D))]).get_weights()[2]
    np.testing.assert_array_equal(bias, np.zeros(4 * U))
    # Keras: bias_initializer on the i, c, o blocks, ones on f
    bias = models.Sequential([layers.LSTM(U, bias_initializer="ones",
                                          input_shape=(T, D))]).get_weights()[2]
    np.testing.assert_array_equal(bias, np.ones(4 * U))
    # orthogonal recurrent kernel: orthonormal rows for (u, 4u)
    rk = models.Sequential([layers.LSTM(U, input_shape=(T, D))]).get_weights()[1]
    np.testing.assert_allclose(rk @ rk.T, np.eye(U), atol=1e-5)


# ------------------------------------------------------------------- masking
V = 9


def masked_ids():
    # pre-padded, unpadded, post-padded, padding in the middle, all padding
    return np.array([[0, 0, 3, 4, 5],
                     [1, 2, 3, 4, 8],
                     [6, 7, 0, 0, 0],
                     [0, 5, 0, 2, 0],
                     [0, 0, 0, 0, 0]], np.int32)


def masked_model(weights_by_kind, table):
    inp = layers.Input((T,), dtype="int32")
    emb = layers.Embedding(V, D, mask_zero=True)
    e = emb(inp)
    outs, labels = [], []
    for kind in ("lstm", "gru", "simple_rnn"):
        for name, kw in [("last", {}), ("seq", dict(return_sequences=True)),
                         ("back_last", dict(go_backwards=True)),
                         ("back_seq", dict(return_sequences=True, go_backwards=True)),
                         ("state", dict(return_state=True))]:
            layer = KINDS[kind](U, **kw)
            o = layer(e)
            layer.set_weights(weights_by_kind[kind])
            o = o if isinstance(o, list) else [o]
            outs += o
            labels += [f"{kind}/{name}/{j}" for j in range(len(o))]
    emb.set_weights([table])
    return models.Model(inp, outs), labels


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_mask_zero_carries_state_through_masked_steps(backend):
    rng = np.random.default_rng(11)
    table = rng.normal(size=(V, D)).astype(np.float32)
    wk = {k: rnn_weights(k, D, U, rng) for k in KINDS}
    model, labels = masked_model(wk, table)
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    ids = masked_ids()
    got = dict(zip(labels, model.predict(ids, verbose=0)))
    x, mask = table[ids], ids != 0
    failures = []
    for kind in KINDS:
        seq, h, c = np_rnn(kind, x, wk[kind], mask=mask)
        bseq, bh, _ = np_rnn(kind, x, wk[kind], mask=mask, go_backwards=True)
        exp = {f"{kind}/last/0": h, f"{kind}/seq/0": seq, f"{kind}/back_seq/0": bseq,
               f"{kind}/back_last/0": bh,
               f"{kind}/state/0": h, f"{kind}/state/1": h}
        if kind == "lstm":
            exp["lstm/state/2"] = c
        for k, e in exp.items():
            if not np.allclose(got[k], e, atol=FWD_ATOL, rtol=FWD_RTOL):
                failures.append(f"{k}: max |diff| {np.max(np.abs(got[k] - e)):.3g}")
        # pre-padding: the final state equals the RNN run on the unpadded suffix alone
        _, h_suffix, c_suffix = np_rnn(kind, x[:1, 2:], wk[kind])
        close(got[f"{kind}/last/0"][0], h_suffix[0], f"{kind}: pre-padded == suffix only")
        if kind == "lstm":
            close(got["lstm/state/2"][0], c_suffix[0], "lstm c: pre-padded == suffix only")
        # masked steps repeat the previous output; leading masked steps output zeros
        s = got[f"{kind}/seq/0"]
        np.testing.assert_allclose(s[0, :2], 0.0, atol=1e-7)
        np.testing.assert_allclose(s[2, 3:], np.repeat(s[2, 1:2], 2, axis=0), atol=1e-6)
        # an all-padding sequence keeps the zero initial state
        np.testing.assert_allclose(got[f"{kind}/last/0"][4], 0.0, atol=1e-7)
    assert not failures, f"masked outputs differ from numpy ({backend}): {failures}"


def test_mask_survives_dropout_between_embedding_and_lstm():
    """Keras: Dropout supports masking, so Embedding(mask_zero=True) -> Dropout -> LSTM
    still skips the padding in training: the padding row (id 0) of the table gets no
    gradient and the loss does not depend on it."""
    rng = np.random.default_rng(2)
    ids = masked_ids()
    y = rng.normal(size=(len(ids), 1)).astype(np.float32)
    for with_dropout in (False, True):
        middle = [layers.Dropout(0.3, seed=1)] if with_dropout else []
        model = models.Sequential([layers.Embedding(V, D, mask_zero=True), *middle,
                                   layers.LSTM(U), layers.Dense(1)])
        model.build((None, T))
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        row0 = model.get_weights()[0][0].copy()
        model.train_on_batch(ids, y)
        np.testing.assert_array_equal(
            model.get_weights()[0][0], row0,
            err_msg=f"the padding row was updated (with_dropout={with_dropout}): the mask "
                    f"did not reach the LSTM in training")


def test_stacked_lstm_with_mask_propagates_mask():
    """Embedding(mask_zero) -> LSTM(return_sequences) -> LSTM: the second LSTM sees the
    mask too, so pre-padding changes nothing."""
    rng = np.random.default_rng(4)
    table = rng.normal(size=(V, D)).astype(np.float32)
    w1, w2 = rnn_weights("lstm", D, U, rng), rnn_weights("lstm", U, 2, rng)
    m = models.Sequential([layers.Embedding(V, D, mask_zero=True),
                           layers.LSTM(U, return_sequences=True), layers.LSTM(2)])
    m.build((None, T))
    m.set_weights([table] + w1 + w2)
    m.compile(optimizer="sgd", loss="mse", backend="reference")
    ids = masked_ids()
    x, mask = table[ids], ids != 0
    s1, _, _ = np_rnn("lstm", x, w1, mask=mask)
    _, h2, _ = np_rnn("lstm", s1, w2, mask=mask)
    close(m.predict(ids, verbose=0), h2, "stacked masked LSTMs")


# ------------------------------------------------------------------- backward
def build_lstm_stack():
    return models.Sequential([layers.LSTM(4, return_sequences=True, input_shape=(T, D)),
                              layers.LSTM(3, go_backwards=True), layers.Dense(2)])


def build_gru_stack():
    return models.Sequential([layers.GRU(4, return_sequences=True, go_backwards=True,
                                         input_shape=(T, D)),
                              layers.GRU(3, reset_after=False), layers.Dense(2)])


def build_simple_stack():
    return models.Sequential([layers.SimpleRNN(4, return_sequences=True, input_shape=(T, D)),
                              layers.SimpleRNN(3, activation="relu"), layers.Dense(2)])


def build_masked():
    m = models.Sequential([layers.Embedding(V, D, mask_zero=True, input_length=T),
                           layers.LSTM(4, return_sequences=True), layers.GRU(3),
                           layers.Dense(2)])
    m.build((None, T))
    return m


BUILDS = {"lstm": build_lstm_stack, "gru": build_gru_stack, "simple_rnn": build_simple_stack,
          "masked_embedding": build_masked}


def data_for(name, rng, n=4):
    if name == "masked_embedding":
        x = masked_ids()[:n]
    else:
        x = rng.normal(size=(n, T, D)).astype(np.float32)
    return x, rng.normal(size=(n, 2)).astype(np.float32)


@pytest.mark.parametrize("name", list(BUILDS))
def test_training_compiled_matches_reference(name):
    rng = np.random.default_rng(21)
    nat, ref = twins(BUILDS[name], lambda: optimizers.SGD(0.1), seed=1)
    x, y = data_for(name, rng)
    assert_same_training(nat, ref, x, y, steps=3)
    np.testing.assert_allclose(nat.predict(x, verbose=0), ref.predict(x, verbose=0),
                               rtol=TRAIN_RTOL, atol=TRAIN_ATOL)


@pytest.mark.parametrize("name", list(BUILDS))
def test_training_on_two_threads_matches_reference_and_repeats_bitwise(name):
    """Scan bodies on 2 threads: barriers only between dependent body kernels, and
    none between a step's copy of its carries and the kernels that overwrite them."""
    rng = np.random.default_rng(22)
    x, y = data_for(name, rng, n=5)
    runs = []
    for _ in range(2):
        nat, ref = twins(BUILDS[name], lambda: optimizers.Adam(0.01), seed=3, nthreads=2)
        assert_same_training(nat, ref, x, y, steps=3)
        runs.append(nat.get_weights() + [nat.predict(x, verbose=0)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(BUILDS))
def test_reference_gradients_match_finite_differences(name):
    rng = np.random.default_rng(8)
    model = BUILDS[name]()
    model.set_weights(seeded(model, 2))
    x, _ = data_for(name, rng, n=2)
    check_gradients_fd(model, [x])


# --------------------------------------------------------------- bad inputs
def test_lstm_rejects_2d_input():
    pat = re.escape("(batch, timesteps, features)")
    with pytest.raises(ValueError, match=pat):
        models.Sequential([layers.LSTM(4, input_shape=(5,))])
    with pytest.raises(ValueError, match=pat):
        layers.LSTM(4)(layers.Input((5,)))
    m = models.Sequential([layers.GRU(4)])
    m.compile(optimizer="sgd", loss="mse", backend="reference")
    with pytest.raises(ValueError, match=pat):
        m.predict(np.zeros((2, 5), np.float32), verbose=0)


def _names_id(msg, bad, input_dim):
    msg = msg.replace(f"[0, {input_dim})", "")
    return re.search(rf"(?<![\d.]){re.escape(str(bad))}(?![\d])", msg) is not None


@pytest.fixture(scope="module")
def id_models():
    """Embedding -> LSTM -> Dense, compiled, with float (Sequential default) and int32 ids."""
    seq = models.Sequential([layers.Embedding(V, 2), layers.LSTM(2), layers.Dense(1)])
    seq.build((None, T))
    inp = layers.Input((T,), dtype="int32")
    fun = models.Model(inp, layers.Dense(1)(layers.LSTM(2)(layers.Embedding(V, 2)(inp))))
    y = np.zeros((len(masked_ids()), 1), np.float32)
    for model in (seq, fun):
        model.compile(optimizer="sgd", loss="mse", backend="native")
        model.train_on_batch(masked_ids(), y)       # compiled, and valid ids pass
    return {"float_ids": seq, "int32_ids": fun}


@pytest.mark.parametrize("bad", [-1, V, 10**9 + 7, 2**40])
@pytest.mark.parametrize("which", ["float_ids", "int32_ids"])
def test_embedding_ids_out_of_range_raise_naming_the_id(id_models, which, bad):
    """Checked before the native step runs, on every entry (fit/train/evaluate/predict);
    the message names the id; nothing is updated."""
    model = id_models[which]
    ids = masked_ids().astype(np.int64)
    y = np.zeros((len(ids), 1), np.float32)
    before = [w.copy() for w in model.get_weights()]
    ids[2, 1] = bad
    for entry, call in [("predict", lambda: model.predict(ids, verbose=0)),
                        ("train_on_batch", lambda: model.train_on_batch(ids, y)),
                        ("evaluate", lambda: model.evaluate(ids, y, verbose=0)),
                        ("fit", lambda: model.fit(ids, y, epochs=1, verbose=0))]:
        try:
            call()
        except ValueError as e:
            assert _names_id(str(e), bad, V), f"{entry}: message does not name id {bad}: {e}"
        else:
            pytest.fail(f"{entry}: id {bad} (input_dim {V}) was accepted")
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_embedding_ids_checked_when_input_is_shared_by_two_embeddings():
    """Each Embedding checks its own input_dim: an id valid for the big table but not
    for the small one raises."""
    inp = layers.Input((4,))
    small = layers.Flatten()(layers.Embedding(5, 2)(inp))
    big = layers.Flatten()(layers.Embedding(100, 2)(inp))
    model = models.Model(inp, layers.Concatenate()([small, big]))
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    with pytest.raises(ValueError, match="50"):
        model.predict(np.array([[1, 2, 3, 50]]), verbose=0)


def test_embedding_ids_checked_after_a_reshape():
    """An Embedding that is not the first op on the input still rejects bad ids."""
    model = models.Sequential([layers.Reshape((4,), input_shape=(2, 2)),
                               layers.Embedding(10, 3)])
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    with pytest.raises(ValueError, match="10"):
        model.predict(np.array([[[1, 2], [3, 10]]], np.float32), verbose=0)


# ---------------------------------------------------- functional two-branch model
def build_two_branch():
    a = layers.Input((T, D), name="seq_a")
    b = layers.Input((T + 2, 2), name="seq_b")
    ha = layers.LSTM(4, name="lstm_a")(a)
    hb = layers.LSTM(3, go_backwards=True, name="lstm_b")(b)
    out = layers.Dense(2, name="head")(layers.Concatenate()([ha, hb]))
    return models.Model([a, b], out)


def test_functional_two_lstm_branches_compiled_matches_reference():
    rng = np.random.default_rng(13)
    nat, ref = twins(build_two_branch, lambda: optimizers.Adam(0.01), seed=4)
    xa = rng.normal(size=(4, T, D)).astype(np.float32)
    xb = rng.normal(size=(4, T + 2, 2)).astype(np.float32)
    y = rng.normal(size=(4, 2)).astype(np.float32)
    w = ref.get_weights()
    _, ha, _ = np_rnn("lstm", xa, w[0:3])
    _, hb, _ = np_rnn("lstm", xb, w[3:6], go_backwards=True)
    exp = np.concatenate([ha, hb], axis=1) @ w[6] + w[7]
    close(ref.predict([xa, xb], verbose=0), exp, "two-branch forward (reference)")
    close(nat.predict([xa, xb], verbose=0), exp, "two-branch forward (native)")
    assert_same_training(nat, ref, [xa, xb], y, steps=3)
    assert nat.get_weights()[0].shape == (D, 16)


def test_functional_shared_lstm_on_two_inputs():
    """One LSTM (one set of weights) applied to two inputs: forward equals numpy and the
    gradient (both uses add up) equals finite differences."""
    rng = np.random.default_rng(19)
    a, b = layers.Input((T, D)), layers.Input((T, D))
    lstm = layers.LSTM(U)
    model = models.Model([a, b], layers.Dense(1)(layers.Concatenate()([lstm(a), lstm(b)])))
    assert len(model.weights) == 5
    model.set_weights(seeded(model, 3))
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    xa, xb = (rng.normal(size=(2, T, D)).astype(np.float32) for _ in range(2))
    w = model.get_weights()
    exp = np.concatenate([np_rnn("lstm", xa, w[:3])[1], np_rnn("lstm", xb, w[:3])[1]], 1) \
        @ w[3] + w[4]
    close(model.predict([xa, xb], verbose=0), exp, "shared LSTM forward")
    check_gradients_fd(model, [xa, xb])


def test_default_layer_names_follow_keras():
    """Keras' auto names: snake_case of the class name with acronyms kept together."""
    for cls, base in [(layers.LSTM, "lstm"), (layers.GRU, "gru"),
                      (layers.SimpleRNN, "simple_rnn"), (layers.Embedding, "embedding")]:
        layer = cls(2) if cls is not layers.Embedding else cls(3, 2)
        assert re.fullmatch(rf"{base}(_\d+)?", layer.name), (cls.__name__, layer.name)


# ------------------------------------------------------------ gradient clipping
CLIPS = {"clipnorm": 0.05, "clipvalue": 0.002, "global_clipnorm": 0.05}


def build_clip_model():
    return models.Sequential([layers.LSTM(3, input_shape=(T, D)), layers.Dense(1)])


@pytest.mark.parametrize("mode", list(CLIPS))
def test_clipping_on_lstm(mode):
    """Compiled == reference, and one SGD step equals Keras' clipping formula applied in
    numpy to the gradient of an unclipped twin."""
    rng = np.random.default_rng(17)
    x = rng.normal(size=(4, T, D)).astype(np.float32)
    y = rng.normal(size=(4, 1)).astype(np.float32) * 3
    lr, c = 0.5, CLIPS[mode]
    nat, ref = twins(build_clip_model, lambda: optimizers.SGD(lr, **{mode: c}), seed=6)
    free = build_clip_model()
    free.set_weights(ref.get_weights())
    free.compile(optimizer=optimizers.SGD(lr), loss="mse", backend="reference")
    w0 = [w.astype(np.float64) for w in ref.get_weights()]
    free.train_on_batch(x, y)
    grads = [(a - b.astype(np.float64)) / lr for a, b in zip(w0, free.get_weights())]
    if mode == "clipnorm":
        clipped = [g * c / max(np.linalg.norm(g), c) for g in grads]
    elif mode == "clipvalue":
        clipped = [np.clip(g, -c, c) for g in grads]
    else:
        gn = np.sqrt(sum(np.sum(g * g) for g in grads))
        clipped = [g * c / max(gn, c) for g in grads]
    assert any(not np.allclose(a, b) for a, b in zip(clipped, grads)), "clipping did not bind"
    ref.train_on_batch(x, y)
    for i, (w, g, got) in enumerate(zip(w0, clipped, ref.get_weights())):
        np.testing.assert_allclose(got, w - lr * g, atol=2e-6, rtol=1e-5,
                                   err_msg=f"{mode}: weight {i} after one step")
    ref.set_weights([w.astype(np.float32) for w in w0])
    ref.compile(optimizer=optimizers.SGD(lr, **{mode: c}), loss="mse", backend="reference")
    assert_same_training(nat, ref, x, y, steps=3)


# ------------------------------------------------------- compile time vs length
def test_w3_compile_time_does_not_grow_with_sequence_length(monkeypatch):
    """Embedding(5000, 64) -> LSTM(100) -> Dense(1, sigmoid), Adam, binary crossentropy,
    batch 64: the graph is the same size at T=20 and T=200, so its compile work is the
    same (the times are printed, not asserted: they swing on a loaded machine)."""
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    rng = np.random.default_rng(0)
    result = {}
    for length in (20, 200):
        model = models.Sequential([layers.Embedding(5000, 64, input_length=length),
                                   layers.LSTM(100), layers.Dense(1, activation="sigmoid")])
        model.build((None, length))
        model.compile(optimizer=optimizers.Adam(1e-3), loss="binary_crossentropy")
        ids = rng.integers(0, 5000, (64, length))
        y = rng.integers(0, 2, (64, 1)).astype(np.float32)
        loss = model.train_on_batch(ids, y)
        assert np.isfinite(loss)
        (exe,) = model._executables.values()
        assert not getattr(exe, "from_cache", False)
        result[length] = (model.compile_time, {k: len(g) for k, g in exe.graphs.items()})
    (t20, n20), (t200, n200) = result[20], result[200]
    print(f"compile time T=20 {t20:.3f}s, T=200 {t200:.3f}s")
    assert n20 == n200, f"graph sizes depend on the sequence length: {n20} vs {n200}"


def test_output_mask_weights_losses_and_metrics():
    """Keras: a mask on the output (Embedding(mask_zero=True) -> LSTM(return_sequences))
    leaves the padded time steps out of the loss and the metrics."""
    rng = np.random.default_rng(3)
    T = 6
    x = rng.integers(1, 20, (10, T))
    x[:, :2] = 0
    x[3, :5] = 0
    y = rng.integers(0, 3, (10, T)).astype("int32")
    results = []
    for backend in ("reference", "native"):
        m = models.Sequential([layers.Embedding(20, 4, mask_zero=True),
                               layers.LSTM(5, return_sequences=True),
                               layers.Dense(3, activation="softmax")])
        m.build((None, T))
        if results:
            m.set_weights(results[0][2])
        m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
        loss, acc = m.evaluate(x, y, batch_size=10, verbose=0)
        results.append((loss, acc, m.get_weights(), m.predict(x, verbose=0)))
    for loss, acc, _, p in results:
        valid = x != 0
        ce = -np.log(np.take_along_axis(p.astype(np.float64), y[..., None], -1)[..., 0])
        np.testing.assert_allclose(loss, ce[valid].mean(), rtol=1e-5)
        np.testing.assert_allclose(acc, (p.argmax(-1) == y)[valid].mean(), rtol=1e-6)
