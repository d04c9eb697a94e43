"""Symbolic tensors act like Keras tensors.

* every Python operator on a `Sym` (and on model variables while traced) emits the
  graph whose reference result equals numpy's on the same values, with Keras'
  int/float promotion;
* numpy indexing: ints (negative too), slices with any step, None, Ellipsis and an
  integer index array;
* uses that need a Python value (float(), int(), bool() / `if`, len() of a scalar,
  iteration, np.asarray) raise a TypeError saying the value is symbolic;
* ops on incompatible shapes name both shapes (Keras' wording);
* a model variable is symbolic inside a trace and a plain value outside.
"""
from __future__ import annotations

import operator

import numpy as np
import pytest

from kcompile import ops
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.tracing import Trace, tracing
from kcompile.variables import Variable

RNG = np.random.default_rng(0)
A = RNG.uniform(0.5, 2.0, (3, 4)).astype(np.float32) * RNG.choice([-1, 1], (3, 4))
B = RNG.uniform(0.5, 2.0, (4,)).astype(np.float32)
IA = RNG.integers(-9, 10, (3, 4)).astype(np.int32)
IB = RNG.integers(1, 5, (4,)).astype(np.int32)


def _run(fn, *arrays):
    g = Graph()
    syms = [Sym(g, g.leaf("input", TensorType(a.shape, "int32" if a.dtype.kind == "i"
                                              else "float32"), f"x{i}"))
            for i, a in enumerate(arrays)]
    out = fn(*syms)
    assert isinstance(out, Sym)
    g.outputs["y"] = out.id
    return interpret(g, {f"x{i}": a for i, a in enumerate(arrays)})[0]["y"], out


BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
          operator.mod, operator.lt, operator.le, operator.gt, operator.ge, operator.eq,
          operator.ne]


@pytest.mark.parametrize("op", BINARY, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtypes", ["float", "int"])
def test_binary_operators_follow_numpy(op, dtypes):
    a, b = (A, B) if dtypes == "float" else (IA, IB)
    got, sym = _run(op, a, b)
    want = op(a.astype(np.float64) if dtypes == "float" else a.astype(np.int64), b)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # result kind as Keras: true division and comparisons aside, ints stay ints
    if dtypes == "int" and op in (operator.add, operator.sub, operator.mul, operator.floordiv,
                                  operator.mod):
        assert sym.dtype == "int32"
    # reflected forms with a Python number
    got_r, _ = _run(lambda x: op(3, x), b)
    np.testing.assert_allclose(got_r, op(3, b.astype(np.float64)), rtol=1e-6, atol=1e-6)


def test_power_abs_neg_matmul_and_logic():
    np.testing.assert_allclose(_run(lambda x: x ** 2, A)[0], A.astype(np.float64) ** 2, rtol=1e-6)
    np.testing.assert_allclose(_run(lambda x: x ** 3, IA)[0], IA.astype(np.int64) ** 3)
    np.testing.assert_allclose(_run(lambda x: 2.0 ** x, B)[0], 2.0 ** B.astype(np.float64),
                               rtol=1e-6)
    np.testing.assert_allclose(_run(lambda x: abs(x), A)[0], np.abs(A))
    np.testing.assert_allclose(_run(lambda x: -x, IA)[0], -IA)
    np.testing.assert_allclose(_run(lambda x, y: x @ y, A, A.T.copy())[0], A @ A.T, rtol=1e-5)
    m1, m2 = A > 0, B > 1
    np.testing.assert_array_equal(_run(lambda x, y: (x > 0) & (y > 1), A, B)[0], m1 & m2)
    np.testing.assert_array_equal(_run(lambda x, y: (x > 0) | (y > 1), A, B)[0], m1 | m2)
    np.testing.assert_array_equal(_run(lambda x, y: (x > 0) ^ (y > 1), A, B)[0], m1 ^ m2)
    np.testing.assert_array_equal(_run(lambda x: ~(x > 0), A)[0], ~m1)


def test_promotion_as_keras():
    assert _run(lambda x: x + 2.5, IA)[1].dtype == "float32"
    np.testing.assert_allclose(_run(lambda x: x + 2.5, IA)[0], IA + 2.5)
    assert _run(lambda x: x * 2, IA)[1].dtype == "int32"
    assert _run(lambda x, y: x + y, IA, B)[1].dtype == "float32"
    assert _run(lambda x: x / 2, IA)[1].dtype == "float32"


INDEX_KEYS = [
    (slice(None), 0), (Ellipsis, slice(-1, None)), (slice(None), slice(None, None, 2)),
    (None,), -1, (1, Ellipsis, None), (slice(None, None, -1),), (slice(None), [3, 0, -1]),
    (slice(1, None), slice(3, 0, -2)), (Ellipsis, None, 2), (0, 1), (slice(5, 9),),
]


@pytest.mark.parametrize("key", INDEX_KEYS, ids=repr)
def test_indexing_follows_numpy(key):
    got, sym = _run(lambda x: x[key], A)
    want = A[key]
    assert sym.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_indexing_with_a_symbolic_index_array():
    idx = np.array([[2, 0], [1, 1]], np.int32)
    got, _ = _run(lambda x, i: x[i], A, idx)
    np.testing.assert_array_equal(got, A[idx])


@pytest.mark.parametrize("key,err", [(5, "out of bounds"), ((0, 0, 0), "too many indices"),
                                     ("a", "valid indices"), ((Ellipsis, Ellipsis), "single ellipsis"),
                                     (np.array([True, False, True]), "boolean masks")])
def test_bad_indices_raise(key, err):
    with pytest.raises(IndexError, match=err):
        _run(lambda x: x[key], A)


@pytest.mark.parametrize("use,what", [
    (float, "float()"), (int, "int()"), (bool, "`if`"), (lambda x: list(x), "iterating"),
    (lambda x: np.asarray(x), "numpy array"), (lambda x: [0, 1][x[0, 0]], "index"),
])
def test_uses_that_need_a_value_raise(use, what):
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((3, 4)), "x"))
    with pytest.raises(TypeError, match="symbolic" if what != "iterating" else "iterating"):
        use(x)
    if what == "`if`":
        with pytest.raises(TypeError, match="Python `if`"):
            if x > 0:
                pass


def test_shape_attributes_and_len():
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((3, 4), "int32"), "x"))
    assert x.shape == (3, 4) and x.ndim == 2 and x.dtype == "int32" and len(x) == 3
    assert ops.shape(x) == (3, 4) and ops.size(x) == 12 and ops.ndim(x) == 2
    s = Sym(g, g.leaf("input", TensorType(()), "s"))
    with pytest.raises(TypeError, match="scalar"):
        len(s)


def test_syms_stay_usable_as_dict_keys():
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((2,)), "x"))
    y = x + 1
    d = {x: "x", y: "y"}
    assert d[x] == "x" and d[y] == "y"


# ------------------------------------------------------------------ error wording
def _sym(shape, dtype="float32"):
    g = Graph()
    return Sym(g, g.leaf("input", TensorType(shape, dtype), "x")), g


@pytest.mark.parametrize("symbolic", [False, True])
def test_incompatible_shapes_name_both(symbolic):
    if symbolic:
        g = Graph()
        a = Sym(g, g.leaf("input", TensorType((2, 3)), "a"))
        b = Sym(g, g.leaf("input", TensorType((4,)), "b"))
        m = Sym(g, g.leaf("input", TensorType((4, 2)), "m"))
    else:
        a, b, m = np.ones((2, 3)), np.ones(4), np.ones((4, 2))
    with pytest.raises(ValueError, match=r"Cannot broadcast shape.*Input shapes are: \[2, 3\] "
                                         r"and \[4\]"):
        ops.add(a, b)
    with pytest.raises(ValueError, match=r"Inner dimensions.*x1.shape=\(2, 3\).*x2.shape=\(4, 2\)"):
        ops.matmul(a, m)
    with pytest.raises(ValueError, match=r"same shape except on the concatenation axis.*\(2, 3\)"
                                         r".*\(4, 2\)"):
        ops.concatenate([a, m], axis=0)
    with pytest.raises(ValueError, match=r"total size.*input_shape=\(2, 3\), target_shape=\(4,\)"):
        ops.reshape(a, (4,))
    with pytest.raises(ValueError, match="out of bounds"):
        ops.sum(a, axis=2)


def test_where_without_branches_explains():
    with pytest.raises(ValueError, match="depends on the data"):
        ops.where(np.ones(3))


# ------------------------------------------------------------------ model variables
def test_variables_are_symbolic_only_while_traced():
    v = Variable(np.arange(6, dtype=np.float32).reshape(2, 3), "v")
    eager = v * 2 + 1
    assert isinstance(eager, np.ndarray)
    np.testing.assert_array_equal(eager, np.arange(6).reshape(2, 3) * 2 + 1)
    np.testing.assert_array_equal(ops.sum(v, axis=0), [3, 5, 7])
    np.testing.assert_array_equal(v[:, 1], [1, 4])
    trace = Trace()
    with tracing(trace):
        y = ops.matmul(v, np.ones((3, 1), np.float32)) + v[:, :1] ** 2
        assert isinstance(y, Sym)
        trace.graph.outputs["y"] = y.id
    leaf = trace.graph.leaves("param")
    assert [trace.graph.nodes[i].name for i in leaf] == ["v"]
    got = interpret(trace.graph, {"v": v.numpy()})[0]["y"]
    a = v.numpy().astype(np.float64)
    np.testing.assert_allclose(got, a.sum(1, keepdims=True) + a[:, :1] ** 2)
    # identity equality: variables are found in lists and dicts
    assert v in [v] and {v: 1}[v] == 1
