"""Inputs read where the caller keeps them and outputs written into the array returned
(codegen/io_pointers.py, kcompile/batch_calls.py): the same numbers as the reference
interpreter, the caller's arrays untouched, a returned array never reused, and the
other paths (copies, exe.run) unaffected by the pointers of a bound call."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from kcompile.batch_calls import IN_PLACE_BYTES

rng = np.random.default_rng(3)
ROWS, FEATURES, UNITS = 256, 32, 20          # input 32 KiB, output 20 KiB: both bound
X = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
X2 = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
Y = rng.standard_normal((ROWS, UNITS)).astype(np.float32)


def _pair(head=(), nthreads=None):
    """The same model on the native and the reference backend, same weights."""
    out = []
    for backend in ("native", "reference"):
        m = models.Sequential([layers.Input((FEATURES,)), layers.Dense(24, activation="relu"),
                               layers.Dense(UNITS), *[h() for h in head]])
        m.compile(optimizer=optimizers.SGD(0.01), loss="mse", backend=backend,
                  nthreads=nthreads if backend == "native" else None)
        out.append(m)
    out[1].set_weights(out[0].get_weights())
    return out


def _prepared(model, kind):
    return next(c for (k, _), c in model._batch_calls.items() if k == kind)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_predict_reads_the_input_in_place_and_returns_fresh_arrays(nthreads):
    assert X.nbytes >= IN_PLACE_BYTES and ROWS * UNITS * 4 >= IN_PLACE_BYTES
    nat, ref = _pair(nthreads=nthreads)
    nat.predict_on_batch(X)
    call = _prepared(nat, "predict")
    assert call.bound_inputs and call.bound_outputs       # the path under test is taken
    x, x2 = X.copy(), X2.copy()
    a = nat.predict_on_batch(x)
    b = nat.predict_on_batch(x2)
    np.testing.assert_array_equal(x, X)                    # the caller's input untouched
    np.testing.assert_array_equal(x2, X2)
    assert not np.shares_memory(a, b)
    np.testing.assert_allclose(a, ref.predict_on_batch(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, ref.predict_on_batch(X2), rtol=1e-5, atol=1e-6)
    # a pointer left from a bound call would make the copying path read a freed array
    exe = next(iter(nat._executables.values()))
    assert not exe.pointers[[i for _, i in call.bound_inputs]].any()
    got = exe.run("predict", {"x0": X2})
    np.testing.assert_allclose(next(iter(got.values())), ref.predict_on_batch(X2), rtol=1e-5,
                               atol=1e-6)


def test_inputs_of_another_layout_or_dtype_are_copied_and_wrong_shapes_named():
    nat, ref = _pair()
    nat.predict_on_batch(X)
    want = ref.predict_on_batch(X)
    fortran = np.asfortranarray(X)
    wide = np.zeros((ROWS, 2 * FEATURES), np.float32)
    wide[:, ::2] = X
    for x in (fortran, wide[:, ::2], X.astype(np.float64)):
        np.testing.assert_allclose(nat.predict_on_batch(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(wide[:, 1::2], 0)
    with pytest.raises(ValueError, match=r"\(None, 32\)"):
        nat.predict_on_batch(X[:, :31])


def test_a_returned_view_of_the_computed_output():
    """The output is a reshape of the last Dense: the bound pointer is that value's."""
    nat, ref = _pair(head=(lambda: layers.Reshape((4, 5)),))
    for _ in range(2):
        a = nat.predict_on_batch(X)
    assert _prepared(nat, "predict").bound_outputs
    b = nat.predict_on_batch(X2)
    assert a.shape == (ROWS, 4, 5) and not np.shares_memory(a, b)
    np.testing.assert_allclose(a, ref.predict_on_batch(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, ref.predict_on_batch(X2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_train_on_batch_reads_its_batch_in_place(nthreads):
    nat, ref = _pair(nthreads=nthreads)
    x, y = X.copy(), Y.copy()
    for step in range(3):
        got = nat.train_on_batch(x, y)
        want = ref.train_on_batch(X, Y)
        assert np.isclose(got, want, rtol=1e-4), (step, got, want)
    assert _prepared(nat, "train").bound_inputs
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    for a, b in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_evaluate_predict_loops_read_their_batches_in_place(shuffle):
    """Batches of consecutive rows are read in place, shuffled ones gathered into the
    arena, the padded last one (30 rows in batches of 8) copied: the same weights,
    losses and predictions as the reference interpreter, the arrays untouched."""
    nat, ref = _pair()
    x, y = X[:30].copy(), Y[:30].copy()
    sw = np.linspace(0.5, 1.5, 30).astype(np.float32)
    for model in (nat, ref):
        np.random.seed(5)
        model.fit(x, y, sample_weight=sw, batch_size=8, epochs=2, shuffle=shuffle, verbose=0)
    for a, b in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(nat.evaluate(x, y, batch_size=8, verbose=0),
                               ref.evaluate(x, y, batch_size=8, verbose=0), rtol=1e-4)
    np.testing.assert_allclose(nat.predict(x, batch_size=8, verbose=0),
                               ref.predict(x, batch_size=8, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x, X[:30])
    np.testing.assert_array_equal(y, Y[:30])
    # float64 and Fortran-ordered data (converted or copied on the way)
    xf = np.asfortranarray(x.astype(np.float64))
    np.testing.assert_allclose(nat.predict(xf, batch_size=8, verbose=0),
                               ref.predict(x, batch_size=8, verbose=0), rtol=1e-5, atol=1e-6)
    exe = next(iter(nat._executables.values()))
    slots = [i for e in exe._slots.values() for side in e.values() for i in side.values()]
    assert slots and not exe.pointers[slots].any()     # no slot left pointing at the data


def test_an_input_returned_as_the_output_is_not_read_in_place():
    """Dropout at inference is the identity: the output is the input's own buffer,
    which the caller reads from the arena, so the input is copied there."""
    m = models.Sequential([layers.Input((FEATURES,)), layers.Dropout(0.5)])
    m.compile(optimizer="sgd", loss="mse")
    for _ in range(2):
        np.testing.assert_array_equal(m.predict_on_batch(X), X)
        np.testing.assert_array_equal(m.predict(X, batch_size=64, verbose=0), X)
