"""BatchNormalization, Dropout, Embedding, Flatten/Reshape, merge layers, and the
constraints and regularizers of the seed's layers.

Each against a numpy formula written out here (Keras 3 semantics), compiled against
the reference interpreter, and the reference's gradients (autodiff, float64) against
central finite differences.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from kcompile.ir.interpret import interpret
from kcompile.ir.passes import simplify
from kcompile import constraints, layers, models, optimizers, regularizers

try:
    from tests.model_checks import check_gradients_fd, loss_trace
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from model_checks import check_gradients_fd, loss_trace

ATOL, RTOL = 1e-5, 1e-4
BACKENDS = ["reference", "native"]


def close(a, b, what, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=what)


def seeded(model, seed, scale=0.4):
    r = np.random.default_rng(seed)
    return [r.normal(0, scale, w.shape).astype(np.float32) for w in model.get_weights()]


def twins(build, optimizer, loss="mse", seed=0, weights=None):
    nat, ref = build(), build()
    w0 = weights(nat) if weights else seeded(nat, seed)
    nat.set_weights(w0)
    ref.set_weights(w0)
    nat.compile(optimizer=optimizer(), loss=loss, backend="native")
    ref.compile(optimizer=optimizer(), loss=loss, backend="reference")
    return nat, ref


def assert_same_training(nat, ref, x, y, steps=3):
    for s in range(steps):
        close(nat.train_on_batch(x, y), ref.train_on_batch(x, y), f"loss at step {s}")
    for i, (a, b) in enumerate(zip(nat.get_weights(), ref.get_weights())):
        close(a, b, f"weight {i} ({nat.weights[i].path}) after {steps} steps")


# ------------------------------------------------------------------ IR-level helpers
def forward_reference(model, x, training):
    trace, feeds = loss_trace(model, [x], training)
    outs, _ = interpret(simplify(trace.graph), feeds)
    return outs["y0"]


# ================================================================ BatchNormalization
EPS_BN = 1e-3


def np_bn_train(x, gamma, beta, axis, eps=EPS_BN):
    x = np.asarray(x, np.float64)
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)       # biased
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    xhat = (x - mean) / np.sqrt(var + eps)
    return gamma.reshape(shape) * xhat + beta.reshape(shape), mean.ravel(), var.ravel(), xhat, axes


def np_bn_infer(x, gamma, beta, mm, mv, axis, eps=EPS_BN):
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    r = lambda a: np.asarray(a, np.float64).reshape(shape)  # noqa: E731
    return r(gamma) * (x - r(mm)) / np.sqrt(r(mv) + eps) + r(beta)


def test_batchnorm_weights_order_and_defaults():
    bn = layers.BatchNormalization()
    m = models.Sequential([layers.Dense(3, input_shape=(2,)), bn])
    assert [w.name for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.name for w in bn.trainable_weights] == ["gamma", "beta"]
    assert [w.name for w in bn.non_trainable_weights] == ["moving_mean", "moving_variance"]
    g, b, mm, mv = bn.get_weights()
    np.testing.assert_array_equal(np.stack([g, b, mm, mv]), [[1] * 3, [0] * 3, [0] * 3, [1] * 3])
    assert bn.momentum == 0.99 and bn.epsilon == 1e-3
    assert len(m.trainable_weights) == 4 and len(m.non_trainable_weights) == 2
    nc = layers.BatchNormalization(center=False)
    models.Sequential([layers.Dense(3, input_shape=(2,)), nc])
    assert [w.name for w in nc.weights] == ["gamma", "moving_mean", "moving_variance"]


BN_CASES = {"2d": ((6, 4), -1), "3d_last": ((5, 3, 4), -1), "3d_axis1": ((5, 4, 3), 1)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(BN_CASES))
def test_batchnorm_train_step_and_inference_match_numpy(case, backend):
    """train_on_batch: loss of the batch-normalized output (batch mean, biased variance),
    SGD step of gamma/beta, moving = moving*momentum + batch*(1-momentum); afterwards
    evaluate/predict use the moving statistics."""
    shape, axis = BN_CASES[case]
    rng = np.random.default_rng(1)
    c = shape[axis]
    mom, lr = 0.9, 0.1
    model = models.Sequential([layers.BatchNormalization(axis=axis, momentum=mom,
                                                         input_shape=shape[1:])])
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    mm, mv = rng.normal(size=c), rng.uniform(0.5, 2, c)
    model.set_weights([a.astype(np.float32) for a in (gamma, beta, mm, mv)])
    model.compile(optimizer=optimizers.SGD(lr), loss="mse", backend=backend)
    x = (rng.normal(size=shape) * 2 + 1).astype(np.float32)
    y = rng.normal(size=shape).astype(np.float32)

    out, mean, var, xhat, axes = np_bn_train(x, gamma, beta, axis)
    loss = model.train_on_batch(x, y)
    close(loss, np.mean((out - y) ** 2), "training loss (batch statistics)")
    dy = 2 * (out - y) / out.size
    g1 = gamma - lr * (dy * xhat).sum(axis=axes)
    b1 = beta - lr * dy.sum(axis=axes)
    mm1, mv1 = mm * mom + mean * (1 - mom), mv * mom + var * (1 - mom)
    got = model.get_weights()
    for name, a, e in zip(["gamma", "beta", "moving_mean", "moving_variance"], got,
                          [g1, b1, mm1, mv1]):
        close(a, e, f"{name} after one step")
    inf = np_bn_infer(x, g1, b1, mm1, mv1, axis)
    close(model.evaluate(x, y, verbose=0, batch_size=shape[0]), np.mean((inf - y) ** 2),
          "evaluate uses the moving statistics")
    if backend == "reference" or case == "2d":
        close(model.predict(x, verbose=0, batch_size=shape[0]), inf,
              "predict uses the moving statistics")
    after = model.get_weights()
    for a, b in zip(after, got):
        np.testing.assert_array_equal(a, b, err_msg="inference changed the weights")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batchnorm_partial_last_batch_uses_real_samples_only(backend):
    """fit with n=10, batch_size=4: the last batch has 2 real samples (padded to 4 in the
    compiled step); its moments are those of the 2 samples, as in Keras."""
    rng = np.random.default_rng(2)
    mom = 0.8
    model = models.Sequential([layers.BatchNormalization(momentum=mom, input_shape=(3, 2))])
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend=backend)
    x = (rng.normal(size=(10, 3, 2)) * 3 + 2).astype(np.float32)
    y = np.zeros_like(x)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    mm, mv = np.zeros(2), np.ones(2)
    for lo, hi in [(0, 4), (4, 8), (8, 10)]:
        xb = x[lo:hi].astype(np.float64)
        mm = mm * mom + xb.mean(axis=(0, 1)) * (1 - mom)
        mv = mv * mom + xb.var(axis=(0, 1)) * (1 - mom)
    _, _, got_mm, got_mv = model.get_weights()
    close(got_mm, mm, "moving_mean after a partial last batch")
    close(got_mv, mv, "moving_variance after a partial last batch")


def build_bn_mlp():
    return models.Sequential([layers.Dense(6, input_shape=(4,)),
                              layers.BatchNormalization(momentum=0.7),
                              layers.Dense(2)])


def bn_mlp_weights(m):
    w = seeded(m, 3)
    w[4] = np.abs(w[4]) + 0.5          # moving variance > 0
    return w


def test_batchnorm_in_mlp_compiled_matches_reference_and_fd():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    nat, ref = twins(build_bn_mlp, lambda: optimizers.SGD(0.1), weights=bn_mlp_weights)
    assert_same_training(nat, ref, x, y)
    close(nat.predict(x, verbose=0, batch_size=8), ref.predict(x, verbose=0, batch_size=8),
          "inference after training")
    check_gradients_fd(ref, [x], training=True)       # through the batch moments
    check_gradients_fd(ref, [x], training=False)      # through the moving statistics


def test_batchnorm_accepts_keras_identifiers_for_regularizers_and_constraints():
    """Keras resolves gamma_regularizer='l2' / beta_constraint='non_neg' like any layer."""
    rng = np.random.default_rng(5)
    m = models.Sequential([layers.BatchNormalization(gamma_regularizer="l2",
                                                     beta_constraint="non_neg",
                                                     input_shape=(3,))])
    m.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
    x = rng.normal(size=(4, 3)).astype(np.float32)
    y = np.full((4, 3), -5.0, np.float32)
    m.train_on_batch(x, y)
    gamma, beta = m.get_weights()[:2]
    assert np.all(beta >= 0)
    inf = np_bn_infer(x, *m.get_weights(), axis=-1)
    close(m.evaluate(x, y, verbose=0), np.mean((inf - y) ** 2) + 0.01 * np.sum(gamma ** 2),
          "loss includes the l2 penalty on gamma")


# ===================================================================== Dropout
N_DROP = 4000


def build_probe(rate, seed):
    """Dropout then a zero, bias-free Dense(1): one SGD step (lr 0.5, mse, y=-1, batch 1)
    sets the kernel to minus the dropped-out input, exposing the mask."""
    return models.Sequential([layers.Dropout(rate, seed=seed, input_shape=(N_DROP,)),
                              layers.Dense(1, use_bias=False, kernel_initializer="zeros")])


def probe_step(model, x):
    model.layers[1].set_weights([np.zeros((N_DROP, 1), np.float32)])
    model.train_on_batch(x, np.array([[-1.0]], np.float32))
    return -model.layers[1].get_weights()[0][:, 0]


@pytest.mark.parametrize("rate", [0.3, 0.75])
def test_dropout_mask_statistics_scaling_and_steps(rate):
    rng = np.random.default_rng(6)
    x = rng.uniform(0.5, 2.0, (1, N_DROP)).astype(np.float32)
    runs = {}
    for backend in BACKENDS:
        m = build_probe(rate, seed=1234)
        m.compile(optimizer=optimizers.SGD(0.5), loss="mse", backend=backend)
        runs[backend] = [probe_step(m, x) for _ in range(3)]
    for backend, drops in runs.items():
        for step, d in enumerate(drops):
            kept = d != 0
            frac = kept.mean()
            sigma = np.sqrt(rate * (1 - rate) / N_DROP)
            assert abs(frac - (1 - rate)) < 5 * sigma, (backend, step, frac)
            close(d[kept], x[0, kept] / (1 - rate), f"{backend}: kept values scaled by 1/(1-rate)",
                  atol=1e-6, rtol=1e-5)
        assert not np.array_equal(drops[0] != 0, drops[1] != 0), "step 2 reused step 1's mask"
        assert not np.array_equal(drops[1] != 0, drops[2] != 0), "step 3 reused step 2's mask"
    for a, b in zip(runs["native"], runs["reference"]):
        np.testing.assert_array_equal(a != 0, b != 0, err_msg="compiled mask != reference mask")


def test_dropout_inference_is_identity():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    for backend in BACKENDS:
        m = models.Sequential([layers.Dropout(0.5, input_shape=(6,))])
        m.compile(optimizer="sgd", loss="mse", backend=backend)
        np.testing.assert_array_equal(m.predict(x, verbose=0), x)
        assert m.evaluate(x, x, verbose=0) == 0.0
    d = models.Sequential([layers.Dense(3, input_shape=(6,)), layers.Dropout(0.9)])
    p = models.Sequential([layers.Dense(3, input_shape=(6,))])
    p.set_weights(d.get_weights()[:2])
    for m in (d, p):
        m.compile(optimizer="sgd", loss="mse", backend="reference")
    y = rng.normal(size=(5, 3)).astype(np.float32)
    assert d.evaluate(x, y, verbose=0) == pytest.approx(p.evaluate(x, y, verbose=0), rel=1e-6)
    np.testing.assert_array_equal(d.predict(x, verbose=0), p.predict(x, verbose=0))


def build_drop_net(seed):
    return models.Sequential([layers.Dense(16, activation="tanh", input_shape=(5,)),
                              layers.Dropout(0.5, seed=seed), layers.Dense(1)])


def test_dropout_same_seed_same_trajectory_different_seed_differs():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.normal(size=(8, 1)).astype(np.float32)
    proto = build_drop_net(0)
    w0 = seeded(proto, 9)
    traj = {}
    for name, seed, backend in [("a", 42, "native"), ("b", 42, "native"),
                                ("ref", 42, "reference"), ("other", 43, "reference")]:
        m = build_drop_net(seed)
        m.set_weights(w0)
        m.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=backend)
        traj[name] = ([m.train_on_batch(x, y) for _ in range(4)], m.get_weights())
    assert traj["a"][0] == traj["b"][0]
    for wa, wb in zip(traj["a"][1], traj["b"][1]):
        np.testing.assert_array_equal(wa, wb)
    close(traj["a"][0], traj["ref"][0], "compiled vs reference losses with dropout")
    for i, (wa, wr) in enumerate(zip(traj["a"][1], traj["ref"][1])):
        close(wa, wr, f"compiled vs reference weight {i} with dropout")
    # with the mask fixed (same step counter), the gradient through Dropout is exact
    probe = build_drop_net(42)
    probe.set_weights(w0)
    check_gradients_fd(probe, [x], training=True)
    assert not np.allclose(traj["ref"][0][1:], traj["other"][0][1:]), \
        "a different seed gave the same trajectory"


def test_dropout_noise_shape_broadcasts_the_mask():
    rng = np.random.default_rng(10)
    m = models.Sequential([layers.Dropout(0.5, noise_shape=(None, 1, 8), seed=3,
                                          input_shape=(6, 8))])
    x = rng.uniform(1, 2, (4, 6, 8)).astype(np.float32)
    out = forward_reference(m, x, training=True)
    kept = out != 0
    assert kept.any() and not kept.all()
    assert (kept == kept[:, :1, :]).all(), "the mask varies along a noise_shape=1 axis"
    close(out[kept], (x * 2)[kept], "kept values scaled by 2")


def test_dropout_masks_keep_changing_late_in_training():
    """The step counter behind the masks must keep counting: at step 2**24 two
    consecutive steps still use different masks."""
    m = build_probe(0.5, seed=5)
    m.build((None, N_DROP))
    m.compile(optimizer=optimizers.SGD(0.5), loss="mse", backend="reference")
    m.layers[0].seed_state.assign(np.array(2 ** 24))   # RNG state: not a weight
    x = np.ones((1, N_DROP), np.float32)
    a, b = probe_step(m, x), probe_step(m, x)
    assert not np.array_equal(a != 0, b != 0), "two consecutive steps reused the same mask"


def test_default_layer_names_follow_keras():
    """Keras' auto names: snake_case of the class name with acronyms kept together."""
    cases = [(layers.BatchNormalization(), "batch_normalization"),
             (layers.Dropout(0.1), "dropout"), (layers.Flatten(), "flatten"),
             (layers.Reshape((2,)), "reshape"), (layers.Concatenate(), "concatenate"),
             (layers.Add(), "add"), (layers.Subtract(), "subtract"),
             (layers.Multiply(), "multiply"), (layers.Average(), "average"),
             (layers.Maximum(), "maximum"), (layers.Minimum(), "minimum")]
    for layer, base in cases:
        assert re.fullmatch(rf"{base}(_\d+)?", layer.name), (base, layer.name)


# ===================================================================== Embedding
VOC, DIM, LEN = 7, 3, 4


def ids_with_repeats(rng, n=5):
    ids = rng.integers(0, VOC, (n, LEN))
    ids[0, :] = 2                       # repeated within a sample
    ids[1, 0] = 2                       # and across samples
    return ids


@pytest.mark.parametrize("backend", BACKENDS)
def test_embedding_gather_forward_and_scatter_add_gradient(backend):
    rng = np.random.default_rng(11)
    model = models.Sequential([layers.Embedding(VOC, DIM, input_length=LEN)])
    model.build((None, LEN))
    table = rng.normal(size=(VOC, DIM)).astype(np.float32)
    model.set_weights([table])
    model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend=backend)
    ids = ids_with_repeats(rng)
    np.testing.assert_array_equal(model.predict(ids, verbose=0), table[ids])
    y = rng.normal(size=(len(ids), LEN, DIM)).astype(np.float32)
    model.train_on_batch(ids, y)
    dout = 2 * (table[ids].astype(np.float64) - y) / y.size
    grad = np.zeros((VOC, DIM))
    np.add.at(grad, ids, dout)
    assert np.count_nonzero(ids == 2) > 4
    close(model.get_weights()[0], table - grad, "table after one SGD step (np.add.at)",
          atol=1e-6)
    unused = sorted(set(range(VOC)) - set(ids.ravel().tolist()))
    if unused:
        np.testing.assert_array_equal(model.get_weights()[0][unused], table[unused])


def test_embedding_arguments():
    e = layers.Embedding(VOC, DIM, input_length=LEN)
    m = models.Sequential([e])
    m.build((None, LEN))
    assert e.get_weights()[0].shape == (VOC, DIM)
    assert e.compute_output_shape((None, LEN)) == (None, LEN, DIM)
    table = np.arange(VOC * DIM, dtype=np.float32).reshape(VOC, DIM)
    w = layers.Embedding(VOC, DIM, weights=[table])
    models.Sequential([w]).build((None, LEN))
    np.testing.assert_array_equal(w.get_weights()[0], table)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError):
            layers.Embedding(bad, DIM)
        with pytest.raises(ValueError):
            layers.Embedding(VOC, bad)


# =========================================================== Flatten, Reshape, merges
def merge_model():
    a, b = layers.Input((3, 4), name="a"), layers.Input((3, 4), name="b")
    c = layers.Input((1, 4), name="c")
    outs = {
        "add": layers.Add()([a, b]), "add3": layers.Add()([a, b, a]),
        "add_bcast": layers.Add()([a, c]),
        "sub": layers.Subtract()([a, b]), "mul": layers.Multiply()([a, b, c]),
        "avg": layers.Average()([a, b, b]), "max": layers.Maximum()([a, b]),
        "min": layers.Minimum()([a, b, c]),
        "cat_last": layers.Concatenate()([a, b]), "cat_1": layers.Concatenate(axis=1)([a, c, b]),
        "cat_fn": layers.concatenate([b, a], axis=-1), "add_fn": layers.add([a, c]),
        "flat": layers.Flatten()(a), "reshape": layers.Reshape((4, 3))(a),
        "reshape_neg": layers.Reshape((-1, 2))(a), "reshape_3d": layers.Reshape((2, 3, 2))(a),
    }
    return models.Model([a, b, c], list(outs.values())), list(outs)


def merge_expected(a, b, c):
    return {"add": a + b, "add3": a + b + a, "add_bcast": a + c, "sub": a - b,
            "mul": a * b * c, "avg": (a + b + b) / 3, "max": np.maximum(a, b),
            "min": np.minimum(np.minimum(a, b), c),
            "cat_last": np.concatenate([a, b], -1), "cat_1": np.concatenate([a, c, b], 1),
            "cat_fn": np.concatenate([b, a], -1), "add_fn": a + c,
            "flat": a.reshape(len(a), -1), "reshape": a.reshape(len(a), 4, 3),
            "reshape_neg": a.reshape(len(a), 6, 2), "reshape_3d": a.reshape(len(a), 2, 3, 2)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_and_reshape_layers_forward_match_numpy(backend):
    rng = np.random.default_rng(12)
    a, b = (rng.normal(size=(5, 3, 4)).astype(np.float32) for _ in range(2))
    b[:, 0] = a[:, 0]                         # ties for Maximum / Minimum
    c = rng.normal(size=(5, 1, 4)).astype(np.float32)
    model, names = merge_model()
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    got = dict(zip(names, model.predict([a, b, c], verbose=0)))
    for k, e in merge_expected(a, b, c).items():
        assert got[k].shape == e.shape, (k, got[k].shape, e.shape)
        close(got[k], e, k, atol=1e-6, rtol=1e-6)
    shapes = dict(zip(names, (t.shape for t in model._outputs)))
    assert shapes["cat_1"] == (None, 7, 4) and shapes["reshape_neg"] == (None, 6, 2)
    assert shapes["flat"] == (None, 12) and shapes["add_bcast"] == (None, 3, 4)


def build_merge_net():
    x = layers.Input((3, 4))
    a = layers.Dense(5)(x)
    b = layers.Dense(5, activation="tanh")(x)
    m = layers.Concatenate()([layers.Add()([a, b]), layers.Subtract()([a, b]),
                              layers.Multiply()([a, b]), layers.Average()([a, b]),
                              layers.Maximum()([a, b]), layers.Minimum()([a, b])])
    h = layers.Flatten()(layers.Reshape((10, 9))(layers.Flatten()(m)))
    return models.Model(x, layers.Dense(2)(h))


def test_merge_net_training_compiled_matches_reference_and_fd():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(6, 3, 4)).astype(np.float32)
    y = rng.normal(size=(6, 2)).astype(np.float32)
    nat, ref = twins(build_merge_net, lambda: optimizers.SGD(0.05), seed=5)
    check_gradients_fd(ref, [x], per_weight=5)
    assert_same_training(nat, ref, x, y)


def test_merge_and_reshape_bad_shapes_raise_value_error():
    a, b = layers.Input((3, 4)), layers.Input((3, 5))
    r = layers.Input((2, 4))
    for make in (lambda: layers.Add()([a, b]), lambda: layers.Multiply()([a, b]),
                 lambda: layers.Maximum()([a, b]), lambda: layers.Average()([a, r]),
                 lambda: layers.Subtract()([a, b]), lambda: layers.Minimum()([a, b]),
                 lambda: layers.Subtract()([a, a, a]),
                 lambda: layers.Concatenate()([a, r]),
                 lambda: layers.Concatenate(axis=1)([a, b]),
                 lambda: layers.Concatenate()([a, layers.Input((12,))]),
                 lambda: layers.Add()(a),
                 lambda: layers.Reshape((5,))(a), lambda: layers.Reshape((-1, 5))(a),
                 lambda: layers.Reshape((-1, -1)),
                 lambda: models.Sequential([layers.Reshape((7, 2), input_shape=(12,))])):
        with pytest.raises(ValueError):
            make()


# ======================================================== constraints and regularizers
CV, CD, CT, CU = 6, 3, 4, 3


def build_constrained(with_constraints=True):
    k = (lambda c: c) if with_constraints else (lambda c: None)
    return models.Sequential([
        layers.Embedding(CV, CD, embeddings_constraint=k(constraints.NonNeg())),
        layers.LSTM(CU, kernel_constraint=k(constraints.UnitNorm()),
                    recurrent_constraint=k(constraints.MaxNorm(0.5))),
        layers.Dense(2, kernel_constraint=k(constraints.MaxNorm(2)),
                     bias_constraint=k(constraints.NonNeg()))])


def np_constraints(ws):
    emb, kern, rec, bias, dk, db = (w.astype(np.float64) for w in ws)
    eps = 1e-7

    def maxnorm(w, m):
        n = np.sqrt((w ** 2).sum(axis=0, keepdims=True))
        return w * (np.clip(n, 0, m) / (n + eps))
    return [emb * (emb >= 0), kern / (np.sqrt((kern ** 2).sum(0, keepdims=True)) + eps),
            maxnorm(rec, 0.5), bias, maxnorm(dk, 2.0), db * (db >= 0)]


def test_constraints_hold_and_match_numpy_after_each_update():
    rng = np.random.default_rng(14)
    ids = rng.integers(0, CV, (5, CT))
    y = (rng.normal(size=(5, 2)) * 4).astype(np.float32)
    y[:, 1] = -10.0                      # pushes the Dense bias negative

    def build():
        m = build_constrained()
        m.build((None, CT))
        return m
    lr = 1.0
    nat, ref = twins(build, lambda: optimizers.SGD(lr), seed=7,
                     weights=lambda m: [w * 3 for w in seeded(m, 7)])
    free = build_constrained(False)
    free.build((None, CT))
    free.compile(optimizer=optimizers.SGD(lr), loss="mse", backend="reference")
    bound = set()
    for step in range(3):
        for model in (nat, ref):
            free.set_weights(model.get_weights())
            free.train_on_batch(ids, y)
            unconstrained = free.get_weights()
            expected = np_constraints(unconstrained)
            bound |= {i for i, (u, e) in enumerate(zip(unconstrained, expected))
                      if not np.allclose(u, e, atol=1e-4)}
            model.train_on_batch(ids, y)
            got = model.get_weights()
            tag = f"{model._backend} step {step}"
            for i, (g, e) in enumerate(zip(got, expected)):
                close(g, e, f"{tag}: weight {i} ({model.weights[i].path})")
            emb, kern, rec, _, dk, db = got
            assert (emb >= 0).all() and (db >= 0).all(), tag
            close(np.linalg.norm(kern, axis=0), 1.0, f"{tag}: UnitNorm", atol=1e-5)
            assert (np.linalg.norm(rec, axis=0) <= 0.5 + 1e-5).all(), tag
            assert (np.linalg.norm(dk, axis=0) <= 2 + 1e-5).all(), tag
    assert bound == {0, 1, 2, 4, 5}, f"constraints that never bound: {set(range(6)) - bound}"


def build_regularized(with_reg=True):
    k = (lambda r: r) if with_reg else (lambda r: None)
    return models.Sequential([
        layers.Embedding(CV, CD, embeddings_regularizer=k(regularizers.l1_l2(0.01, 0.02))),
        layers.LSTM(CU, kernel_regularizer=k(regularizers.l2(0.03)),
                    recurrent_regularizer=k(regularizers.L1(0.02)),
                    bias_regularizer=k(regularizers.L1L2(l1=0.01, l2=0.04))),
        layers.Dense(2, kernel_regularizer=k("l1"), bias_regularizer=k("l2"))])


REG = [(0.01, 0.02), (0.0, 0.03), (0.02, 0.0), (0.01, 0.04), (0.01, 0.0), (0.0, 0.01)]


def penalty(ws):
    return sum(l1 * np.abs(w.astype(np.float64)).sum() + l2 * (w.astype(np.float64) ** 2).sum()
               for w, (l1, l2) in zip(ws, REG))


def test_regularizers_add_exactly_to_the_loss_and_gradient():
    rng = np.random.default_rng(15)
    ids = rng.integers(0, CV, (5, CT))
    y = rng.normal(size=(5, 2)).astype(np.float32)

    def build():
        m = build_regularized()
        m.build((None, CT))
        return m
    lr = 0.1
    nat, ref = twins(build, lambda: optimizers.SGD(lr), seed=8)
    for model in (nat, ref):
        ws = model.get_weights()
        data = np.mean((model.predict(ids, verbose=0).astype(np.float64) - y) ** 2)
        close(model.evaluate(ids, y, verbose=0), data + penalty(ws),
              f"{model._backend}: evaluate = data loss + penalty", atol=1e-6, rtol=1e-5)
    # gradient: a step differs from an unregularized twin's by lr * d(penalty)/dw
    free = build_regularized(False)
    free.build((None, CT))
    w0 = ref.get_weights()
    free.set_weights(w0)
    free.compile(optimizer=optimizers.SGD(lr), loss="mse", backend="reference")
    free.train_on_batch(ids, y)
    ref.train_on_batch(ids, y)
    for i, (w, wf, wr, (l1, l2)) in enumerate(zip(w0, free.get_weights(), ref.get_weights(), REG)):
        expected = wf - lr * (l1 * np.sign(w) + 2 * l2 * w)
        close(wr, expected, f"weight {i}: step includes the penalty gradient", atol=2e-6)
    nat.train_on_batch(ids, y)
    for i, (a, b) in enumerate(zip(nat.get_weights(), ref.get_weights())):
        close(a, b, f"compiled vs reference weight {i}")


def test_activity_regularizer_adds_to_the_loss():
    """Keras 3 adds activity_regularizer(output) / batch_size to the loss."""
    rng = np.random.default_rng(16)
    m = models.Sequential([layers.Dense(3, activity_regularizer=regularizers.L2(0.1),
                                        input_shape=(4,))])
    m.compile(optimizer="sgd", loss="mse", backend="reference")
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.normal(size=(6, 3)).astype(np.float32)
    out = m.predict(x, verbose=0).astype(np.float64)
    expected = np.mean((out - y) ** 2) + 0.1 * np.sum(out ** 2) / len(x)
    close(m.evaluate(x, y, verbose=0, batch_size=6), expected, "activity regularization",
          atol=1e-6, rtol=1e-5)
