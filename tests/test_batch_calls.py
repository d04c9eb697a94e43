"""The calls on one batch after their first call (kcompile/batch_calls.py): the same
numbers as the full path and the reference interpreter, whatever happened to the
model in between (new weights, a recompile, another model moving shared layers),
and the same errors on bad data."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, metrics as metrics_mod, models, optimizers, trainer

rng = np.random.default_rng(7)
X = rng.standard_normal((16, 6)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
LABELS = rng.integers(0, 3, 16)


def _pair(loss="categorical_crossentropy", metrics=("accuracy",)):
    """The same model on the native and the reference backend, same weights."""
    out = []
    for backend in ("native", "reference"):
        m = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                               layers.Dense(3, activation="softmax")])
        m.compile(optimizer=optimizers.Adam(0.01), loss=loss, metrics=list(metrics),
                  backend=backend)
        out.append(m)
    out[1].set_weights(out[0].get_weights())
    return out


@pytest.fixture
def no_adaptation(monkeypatch):
    """After the first call, `model`'s data is no longer adapted: the prepared path runs."""
    def install(model):
        for name in ("adapt_inputs", "adapt_targets"):
            original = getattr(trainer, name)

            def refuse(data, m, where, original=original):
                if m is model:
                    raise AssertionError("the full path ran")
                return original(data, m, where)
            monkeypatch.setattr(trainer, name, refuse)
    return install


def test_train_and_test_on_batch_match_the_reference(no_adaptation):
    nat, ref = _pair()
    for _ in range(2):      # the second round: every variable has found its State
        assert np.allclose(nat.train_on_batch(X, Y), ref.train_on_batch(X, Y), rtol=1e-4)
        assert np.allclose(nat.test_on_batch(X, Y), ref.test_on_batch(X, Y), rtol=1e-4)
    no_adaptation(nat)
    for step in range(4):
        x = X.astype(np.float64) if step % 2 else X      # widened on the way in
        if step % 2:
            with pytest.raises(AssertionError, match="full path"):
                nat.train_on_batch(x, Y)      # a new signature: the full path, refused here
            x = X
        got = nat.train_on_batch(x, Y, return_dict=True)
        want = ref.train_on_batch(X, Y, return_dict=True)
        assert got.keys() == want.keys()
        for k in want:
            assert np.isclose(got[k], want[k], rtol=1e-4, atol=1e-6), (k, got, want)
        assert np.allclose(nat.test_on_batch(X, Y), ref.test_on_batch(X, Y), rtol=1e-4)
    for a, b in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_predict_on_batch_and_one_batch_predict(no_adaptation):
    nat, ref = _pair()
    want = ref.predict(X[:5], verbose=0)
    for _ in range(2):
        np.testing.assert_allclose(nat.predict_on_batch(X[:5]), want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(nat.predict(X[:5], verbose=0), want, rtol=1e-5, atol=1e-7)
    no_adaptation(nat)
    a = nat.predict_on_batch(X[:5])
    b = nat.predict_on_batch(X[:5])
    assert a is not b and not np.shares_memory(a, b)    # each call returns its own array
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(nat.predict(X[:5], verbose=0), want, rtol=1e-5, atol=1e-7)


def test_new_weights_recompile_and_moved_variables_are_seen():
    nat, ref = _pair()
    nat.predict_on_batch(X)
    nat.predict_on_batch(X)
    w = [v * 0.5 for v in nat.get_weights()]
    nat.set_weights(w)
    ref.set_weights(w)
    np.testing.assert_allclose(nat.predict_on_batch(X), ref.predict(X, verbose=0), rtol=1e-5,
                               atol=1e-7)
    # another model over the same layers moves their variables into its own State
    other = models.Sequential(nat.layers)
    other.compile(optimizer="sgd", loss="mse")
    other.train_on_batch(X, Y)
    ref.set_weights(nat.get_weights())
    np.testing.assert_allclose(nat.predict_on_batch(X), ref.predict(X, verbose=0), rtol=1e-5,
                               atol=1e-7)
    nat.compile(optimizer="sgd", loss="categorical_crossentropy")     # recompiled
    ref.compile(optimizer="sgd", loss="categorical_crossentropy", backend="reference")
    ref.set_weights(nat.get_weights())
    for _ in range(2):
        assert np.isclose(nat.train_on_batch(X, Y), ref.train_on_batch(X, Y), rtol=1e-5)


def test_bad_data_after_the_first_call():
    nat, _ = _pair(loss="sparse_categorical_crossentropy")
    nat.train_on_batch(X, LABELS)
    nat.train_on_batch(X, LABELS)
    bad = LABELS.copy()
    bad[5] = 3
    weights = nat.get_weights()
    with pytest.raises(ValueError, match=r"label 3 at position \(5,\).*\[0, 3\)"):
        nat.train_on_batch(X, bad)
    with pytest.raises(ValueError, match=r"\(None, 6\)"):
        nat.train_on_batch(X[:, :5], LABELS)
    with pytest.raises(ValueError, match=r"\(None, 6\)"):
        nat.predict_on_batch(X[:, :5])
    for a, b in zip(weights, nat.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_eager_model_calls_after_the_first(no_adaptation):
    """model(x) on a seen signature: same outputs and state updates (BatchNormalization's
    moving statistics with training=True) as the reference backend, call after call."""
    pair = []
    for backend in ("native", "reference"):
        m = models.Sequential([layers.Input((6,)), layers.Dense(5),
                               layers.BatchNormalization(momentum=0.5),
                               layers.Dense(2)])
        m.compile(optimizer="sgd", loss="mse", backend=backend)
        pair.append(m)
    nat, ref = pair
    ref.set_weights(nat.get_weights())
    for step in range(4):
        if step == 2:
            no_adaptation(nat)
        for training in (True, False):
            got, want = nat(X, training=training), ref(X, training=training)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)
    for a, b in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("return_dict", [False, True])
def test_prepared_logs_are_the_full_paths_logs(return_dict):
    """The prepared path makes its logs itself (kcompile/trainer.py _prepared_logs): the
    same values, bit for bit, as the full path's running means on twin models, for a
    loss, in-step metrics (one with a vector result) and a metric computed after the step."""
    def model():
        m = models.Sequential([layers.Input((6,)), layers.Dense(3, activation="softmax")])
        m.compile(optimizer=optimizers.SGD(0.1), loss="categorical_crossentropy",
                  metrics=["accuracy", "mse", metrics_mod.Precision(thresholds=[0.3, 0.6])])
        return m
    fast, full = model(), model()
    full.set_weights(fast.get_weights())
    for step in range(4):       # from the third: every variable has found its State
        got = fast.train_on_batch(X, Y, return_dict=return_dict)
        full.__dict__.pop("_batch_calls", None)         # the full path each time
        want = full.train_on_batch(X, Y, return_dict=return_dict)
        if step >= 2:
            assert "train" in fast._last_batch_call     # the path under test ran
        for g, w in zip(*(_flat(v) for v in (got, want))):
            np.testing.assert_array_equal(g, w)
        for method in ("test_on_batch",):
            got = getattr(fast, method)(X, Y, return_dict=return_dict)
            full.__dict__.pop("_batch_calls", None)
            want = getattr(full, method)(X, Y, return_dict=return_dict)
            for g, w in zip(*(_flat(v) for v in (got, want))):
                np.testing.assert_array_equal(g, w)


def _flat(logs):
    """The values of a logs dict or list, in order (names first for a dict)."""
    if isinstance(logs, dict):
        return [list(logs)] + [np.asarray(v) for v in logs.values()]
    return [np.asarray(v) for v in (logs if isinstance(logs, list) else [logs])]


def test_model_call_fast_path_keeps_outputs_structure_and_losses():
    """Repeated model(x) calls (kcompile/models.py Model.__call__ -> prepared_model_call):
    outputs as the reference backend computes them, as EagerTensors in the model's output
    structure; the losses a layer adds are those of the last call; set_weights is seen."""
    pair = []
    for backend in ("native", "reference"):
        inp = layers.Input((6,))
        h = layers.Dense(4, activity_regularizer="l2")(inp)
        out = {"a": layers.Dense(2)(h), "b": layers.Dense(3, activation="softmax")(h)}
        m = models.Model(inp, out)
        m.compile(optimizer="sgd", loss="mse", backend=backend)
        pair.append(m)
    nat, ref = pair
    ref.set_weights(nat.get_weights())
    single = models.Sequential([layers.Input((6,)), layers.Dense(3)])
    for step in range(4):
        if step == 2:
            new = [w * 0.5 for w in nat.get_weights()]
            nat.set_weights(new)
            ref.set_weights(new)
        got, want = nat(X), ref(X)
        assert set(got) == {"a", "b"}
        for k in want:
            assert hasattr(got[k], "numpy")
            np.testing.assert_allclose(got[k].numpy(), np.asarray(want[k]), rtol=1e-5, atol=1e-6)
        assert np.isclose(sum(float(v) for v in nat.losses), sum(float(v) for v in ref.losses),
                          rtol=1e-4)
        y = single(X)
        assert hasattr(y, "numpy") and y.shape == (16, 3)
        np.testing.assert_allclose(y.numpy(), X @ single.get_weights()[0] + single.get_weights()[1],
                                   rtol=1e-5, atol=1e-6)
    assert nat._eager_cache.last is not None and single._eager_cache.last[2]["one_output"]
