"""Every `kcompile.ops` function, from the cases of tests/op_cases_keras.py:

* eager: called on numpy arrays, the result equals numpy's formula (float64) to
  float32 accuracy, with Keras' result kind (float / int / bool);
* traced: the same call on symbolic tensors, compiled to native code, equals the
  reference interpreter, forward and gradient (loss = sum(out * R));
* the gradient of every differentiable case equals central finite differences of
  the reference interpreter in float64;
* every public name of `kcompile.ops` has cases.

The compiled cases share one native module (an LLVM compile per case would cost
minutes), built once per test session.
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import ops
from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import GRAD_PREFIX, autodiff
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State

try:
    from tests.op_cases_keras import KERAS_CASES, all_keras_cases, keras_case_id
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from op_cases_keras import KERAS_CASES, all_keras_cases, keras_case_id

ALL = all_keras_cases()
IDS = [keras_case_id(*x) for x in ALL]
SYMBOLIC = [x for x in ALL if x[2].symbolic]
DIFF = [x for x in SYMBOLIC if x[2].diff and any(a.dtype == np.float32 for a in x[2].arrays)]


def test_every_public_op_has_cases():
    missing = sorted(set(ops.__all__) - set(KERAS_CASES))
    assert not missing, f"kcompile.ops functions without cases in op_cases_keras.py: {missing}"
    unknown = sorted(set(KERAS_CASES) - set(ops.__all__))
    assert not unknown, f"cases for names kcompile.ops does not export: {unknown}"
    # and the submodules as Keras lays them out
    for name in ("relu", "softmax", "gelu", "one_hot", "moments", "sparse_categorical_crossentropy"):
        assert getattr(ops.nn, name) is getattr(ops, name)


def _f64(a):
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a.astype(np.int64) if \
        a.dtype.kind in "iu" else a


def _flatten(r):
    return list(r) if isinstance(r, (list, tuple)) else [r]


def _close(got, want, rtol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if want.dtype.kind in "biu" or got.dtype.kind in "biu" and want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    g, w = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{what}: nan")
    fin = np.isfinite(w)
    np.testing.assert_array_equal(g[~fin], w[~fin], err_msg=f"{what}: inf")
    scale = max(1.0, float(np.max(np.abs(w[fin]), initial=0.0)))
    np.testing.assert_allclose(g[fin], w[fin], rtol=rtol, atol=rtol * scale, err_msg=what)


# ------------------------------------------------------------------ eager
@pytest.mark.parametrize("name,index,case", ALL, ids=IDS)
def test_eager_matches_numpy(name, index, case):
    got = case.call(*case.arrays)
    want = case.expect(*[_f64(a) for a in case.arrays])
    if isinstance(want, (str, bool, int)) or (isinstance(want, tuple) and
                                               all(isinstance(w, int) for w in want)):
        assert got == want, (got, want)       # shape queries: Python values
        return
    gots, wants = _flatten(got), _flatten(want)
    assert len(gots) == len(wants)
    for j, (g, w) in enumerate(zip(gots, wants)):
        assert isinstance(g, (np.ndarray, np.generic, tuple)), type(g)
        g, w = np.asarray(g), np.asarray(w)
        # Keras' result kind: bool stays bool, integer stays integer, float is float32
        assert g.dtype.kind == ("i" if w.dtype.kind == "u" else w.dtype.kind), (g.dtype, w.dtype)
        assert g.dtype in (np.float32, np.int32, np.bool_), g.dtype
        _close(g, w, case.rtol, f"{name} output {j}")


# ------------------------------------------------------------------ traced and compiled
def _case_graph(name, index, case, role_float="input"):
    """The case traced on symbolic leaves; outputs out0, out1, ... Leaf names carry a
    prefix so that every case's leaves can live in one State."""
    g = Graph()
    p = f"{name}{index}/"
    syms, values = [], {}
    for k, a in enumerate(case.arrays):
        arr = a.astype(np.float32) if a.dtype == bool else a
        dtype = "int32" if arr.dtype.kind in "iu" else "float32"
        role = role_float if dtype == "float32" else "input"
        leaf = f"{p}x{k}"
        syms.append(Sym(g, g.leaf(role, TensorType(arr.shape, dtype), leaf)))
        values[leaf] = arr.astype(dtype)
    result = case.call(*syms)
    outs = _flatten(result)
    for j, o in enumerate(outs):
        assert isinstance(o, Sym), f"{name}: a symbolic call returned {type(o)}"
        g.outputs[f"out{j}"] = o.id
    return g, values


def _loss_graph(name, index, case):
    g, values = _case_graph(name, index, case, role_float="param")
    rng = np.random.default_rng(index + 7)
    loss, Rs = None, {}
    for key, vid in list(g.outputs.items()):
        out = Sym(g, vid)
        if out.dtype != "float32":
            continue
        R = rng.uniform(-1.0, 1.0, out.shape).astype(np.float32)
        Rs[key] = R
        term = F.sum(out * F.lift(g, R))
        loss = term if loss is None else loss + term
    g.outputs["loss"] = loss.id
    return g, values, Rs


def _state(graphs, values):
    layout, init = [], {}
    for e, g in graphs.items():
        for v in g.leaves():
            n = g.nodes[v]
            if n.role == "param":
                layout.append((n.name, n.type))
                init[n.name] = values[e][n.name]
    state = State(layout)
    for k, a in init.items():
        state.assign(k, a)
    return state


@pytest.fixture(scope="module")
def compiled():
    """Forward entries of every symbolic case and gradient entries of every
    differentiable one, in one native module, each run on both backends."""
    graphs, values = {}, {}
    for name, i, c in SYMBOLIC:
        graphs[f"f/{name}{i}"], values[f"f/{name}{i}"] = _case_graph(name, i, c)
    for name, i, c in DIFF:
        g, vals, _ = _loss_graph(name, i, c)
        graphs[f"v/{name}{i}"], values[f"v/{name}{i}"] = autodiff(g, loss="loss"), vals
    state = _state(graphs, values)
    native = NativeExecutable(graphs, state)
    reference = ReferenceExecutable(graphs, state)
    results = {}
    for e, g in graphs.items():
        feeds = {g.nodes[v].name: values[e][g.nodes[v].name] for v in g.leaves()
                 if g.nodes[v].role == "input"}
        results[e] = (native.run(e, feeds), reference.run(e, feeds))
    return results


@pytest.mark.parametrize("name,index,case", SYMBOLIC, ids=[keras_case_id(*x) for x in SYMBOLIC])
def test_compiled_matches_reference(compiled, name, index, case):
    got, want = compiled[f"f/{name}{index}"]
    assert set(got) == set(want)
    for k in sorted(want):
        assert got[k].dtype == want[k].dtype, k
        _close(got[k], want[k], 1e-5, f"{name} {k}")


@pytest.mark.parametrize("name,index,case", DIFF, ids=[keras_case_id(*x) for x in DIFF])
def test_compiled_gradient_matches_reference(compiled, name, index, case):
    got, want = compiled[f"v/{name}{index}"]
    grads = [k for k in want if k.startswith(GRAD_PREFIX)]
    assert grads, f"{name}: no gradient computed"
    for k in grads:
        _close(got[k], want[k], 1e-5, f"{name} {k}")
        assert np.all(np.isfinite(got[k]))


# ------------------------------------------------------------------ gradients
EPS = 1e-6


@pytest.mark.parametrize("name,index,case", DIFF, ids=[keras_case_id(*x) for x in DIFF])
def test_vjp_matches_finite_differences(name, index, case):
    g, values, Rs = _loss_graph(name, index, case)
    values = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in values.items()}
    grads = interpret(autodiff(g, loss="loss"), values, float64=True)[0]
    params = [g.nodes[v].name for v in g.leaves("param")]
    rng = np.random.default_rng(index)
    for pname in params:
        grad = grads[GRAD_PREFIX + pname]
        x = values[pname]
        assert grad.shape == x.shape
        coords = np.arange(x.size) if x.size <= 8 else rng.choice(x.size, 8, replace=False)
        fd = []
        for i in coords:
            diff = 0.0
            for sign in (1.0, -1.0):
                xp = x.copy().ravel()
                xp[i] += sign * EPS
                outs = interpret(g, {**values, pname: xp.reshape(x.shape)}, float64=True)[0]
                diff += sign * sum(float(np.sum(outs[k] * R)) for k, R in Rs.items())
            fd.append(diff / (2 * EPS))
        scale = max(1.0, float(np.max(np.abs(grad))))
        np.testing.assert_allclose(grad.ravel()[coords], fd, rtol=1e-4, atol=1e-6 * scale,
                                   err_msg=f"{name}: d loss / d {pname} at {coords.tolist()}")
