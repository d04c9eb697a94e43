"""The primitives' reference rules, shape rules and VJPs, op by op.

* every primitive of ir.ops.REGISTRY has cases in tests/op_cases.py;
* the reference interpreter agrees with an independent numpy expression
  (written here, in float64) and with the op's declared type;
* every VJP agrees with central finite differences of loss = sum(out * R)
  in float64; non-differentiable ops give exactly zero gradients;
* shape/dtype rules reject bad operands with a message naming them;
* the documented tie conventions of maximum/minimum/reduce_max and gradient
  fan-in.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.ops import REGISTRY
from kcompile.ir.passes import autodiff, GRAD_PREFIX

try:
    from tests import conv_direct
    from tests.op_cases import (OP_CASES, TESTED_ELSEWHERE, all_cases, build_case_graph, case_id,
                                differentiable_operands)
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    import conv_direct
    from op_cases import (OP_CASES, TESTED_ELSEWHERE, all_cases, build_case_graph, case_id,
                          differentiable_operands)

ALL = all_cases()
IDS = [case_id(n, i, c) for n, i, c in ALL]


# ------------------------------------------------------------ registry coverage
def test_every_primitive_has_cases():
    missing = sorted(set(REGISTRY) - set(OP_CASES) - set(TESTED_ELSEWHERE))
    assert not missing, f"primitives without test cases in tests/op_cases.py: {missing}"
    unknown = sorted(set(OP_CASES) - set(REGISTRY))
    assert not unknown, f"OP_CASES names unknown primitives: {unknown}"
    few = sorted(n for n in OP_CASES if len(OP_CASES[n]) < 3)
    assert not few, f"primitives with fewer than 3 cases: {few}"


def test_case_arities_match_registry():
    for name, cases in OP_CASES.items():
        for i, c in enumerate(cases):
            assert len(c.in_types) == REGISTRY[name].arity, case_id(name, i, c)


def test_cases_cover_odd_sizes():
    dims = {d for _, _, c in ALL for t in c.in_types for d in t.shape}
    assert {1, 7, 33, 1000} <= dims
    assert any(t.shape == () for _, _, c in ALL for t in c.in_types)


# ------------------------------------------------ independent numpy expressions
def _axes(attrs, rank):
    return tuple(sorted({a % rank for a in attrs["axes"]})) if rank else ()


def _keep(x, r, attrs):
    """Re-insert the reduced axes of r (reduced from x) when keepdims is set."""
    axes = _axes(attrs, x.ndim)
    if attrs.get("keepdims", False):
        for a in axes:
            r = np.expand_dims(r, a)
    return r


def _reduce(x, attrs, fn):
    """Reduce over the axes by moving them last and flattening them."""
    axes = _axes(attrs, x.ndim)
    rest = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, rest + list(axes)).reshape([x.shape[a] for a in rest] + [-1])
    return _keep(x, fn(moved), attrs)


def _trunc_toward_zero(x):
    return (np.sign(x) * np.floor(np.abs(x))).astype(np.int64)


def _cast(xs, a):
    x = xs[0]
    if a["dtype"] == "int32":
        return _trunc_toward_zero(x) if x.dtype.kind == "f" else x.astype(np.int64)
    return x.astype(np.float64)


def _select(xs, a):
    c, x, y = xs
    m = c != 0
    return m * x + (~m) * y


def _matmul(xs, a):
    x = xs[0].T if a.get("transpose_a") else xs[0]
    y = xs[1].T if a.get("transpose_b") else xs[1]
    return np.einsum("ik,kj->ij", x, y)


def _transpose(xs, a):
    letters = "abcdefgh"[:xs[0].ndim]
    return np.einsum(f"{letters}->{''.join(letters[p] for p in a['perm'])}", xs[0])


def _argmax_last(xs, a):
    x = xs[0]
    assert a["axis"] % x.ndim == x.ndim - 1
    # first index reaching the maximum, via a stable sort of the negated values
    return np.argsort(-x, axis=-1, kind="stable")[..., 0]


def _cmp(fn):
    return lambda xs, a: fn(xs[0], xs[1]).astype(np.float64)


def _pad(xs, a):
    x = xs[0]
    out = np.zeros(tuple(d + l + h for d, l, h in zip(x.shape, a["lo"], a["hi"])), x.dtype)
    out[tuple(np.s_[l:l + d] for l, d in zip(a["lo"], x.shape))] = x
    return out


def _scatter_add(xs, a):
    idx, upd = xs
    idx = idx.astype(np.int64).ravel()
    rows = upd.reshape(len(idx), -1)
    out = np.zeros((a["num"], rows.shape[1]), upd.dtype)
    for i, r in zip(idx, rows):       # a plain loop, not np.add.at
        out[i] += r
    return out.reshape((a["num"],) + upd.shape[xs[0].ndim:])


def _random_uniform(xs, a):
    """Statistics, not bits: the hash is checked bit for bit against the compiled code."""
    n = int(np.prod(a["shape"]))
    ref = np.asarray(REGISTRY["random_uniform"].reference(
        [np.float32(xs[0])], a), dtype=np.float64).reshape(a["shape"])
    assert np.all((ref >= 0) & (ref < 1))
    if n >= 100:
        assert abs(ref.mean() - 0.5) < 4 / np.sqrt(12 * n)
    return ref


EXPECTED = {
    "neg": lambda xs, a: 0 - xs[0],
    "exp": lambda xs, a: np.power(np.e, xs[0]),
    "log": lambda xs, a: np.log2(xs[0]) * np.log(2.0),
    "sqrt": lambda xs, a: xs[0] ** 0.5,
    "abs": lambda xs, a: np.where(xs[0] < 0, -xs[0], xs[0]),
    "sign": lambda xs, a: (xs[0] > 0).astype(np.float64) - (xs[0] < 0),
    "sigmoid": lambda xs, a: 1.0 / (1.0 + np.exp(-xs[0])),
    "tanh": lambda xs, a: 1.0 - 2.0 / (np.exp(2.0 * xs[0]) + 1.0),
    "stop_gradient": lambda xs, a: xs[0] + 0.0,
    "sin": lambda xs, a: np.imag(np.exp(1j * xs[0])),
    "cos": lambda xs, a: np.real(np.exp(1j * xs[0])),
    "erf": lambda xs, a: 1.0 - np.vectorize(math.erfc, otypes=[np.float64])(xs[0]),
    "floor": lambda xs, a: xs[0] - np.mod(xs[0], 1.0),
    "round": lambda xs, a: np.rint(xs[0]),
    "add": lambda xs, a: xs[0] + xs[1],
    "sub": lambda xs, a: xs[0] - xs[1],
    "mul": lambda xs, a: xs[0] * xs[1],
    "div": lambda xs, a: xs[0] * (1.0 / xs[1]),
    "pow": lambda xs, a: np.exp(xs[1] * np.log(xs[0])),
    "maximum": lambda xs, a: np.where(xs[0] > xs[1], xs[0], xs[1]),
    "minimum": lambda xs, a: np.where(xs[0] < xs[1], xs[0], xs[1]),
    "greater": _cmp(lambda x, y: x > y),
    "greater_equal": _cmp(lambda x, y: ~(x < y)),
    "less": _cmp(lambda x, y: y > x),
    "less_equal": _cmp(lambda x, y: ~(x > y)),
    "equal": _cmp(lambda x, y: (x - y) == 0),
    "not_equal": _cmp(lambda x, y: (x - y) != 0),
    "select": _select,
    "cast": _cast,
    "reduce_sum": lambda xs, a: _reduce(xs[0], a, lambda m: np.add.reduce(m, axis=-1)),
    "reduce_mean": lambda xs, a: _reduce(xs[0], a, lambda m: m.sum(-1) / m.shape[-1]),
    "reduce_max": lambda xs, a: _reduce(xs[0], a, lambda m: np.sort(m, axis=-1)[..., -1]),
    "argmax": _argmax_last,
    "matmul": _matmul,
    "reshape": lambda xs, a: xs[0].ravel().reshape(a["shape"]),
    "transpose": _transpose,
    "broadcast_to": lambda xs, a: xs[0] + np.zeros(a["shape"], xs[0].dtype),
    "slice": lambda xs, a: xs[0][tuple(np.s_[s:s + n] for s, n in zip(a["start"], a["size"]))],
    "pad": _pad,
    "gather": lambda xs, a: np.take(xs[0], xs[1].astype(np.int64), axis=0),
    "scatter_add": _scatter_add,
    "random_uniform": _random_uniform,
    "conv": lambda xs, a: conv_direct.conv(xs[0], xs[1], a),
    "conv_weight_grad": lambda xs, a: conv_direct.conv_weight_grad(xs[0], xs[1], a),
}


def test_every_primitive_has_an_expected_expression():
    assert not sorted(set(REGISTRY) - set(EXPECTED) - set(TESTED_ELSEWHERE))


def _as_f64(arrays):
    return [a.astype(np.float64) if a.dtype.kind == "f" else a.astype(np.int64) for a in arrays]


@pytest.mark.parametrize("name,index,case", ALL, ids=IDS)
def test_reference_matches_numpy(name, index, case):
    g, values = build_case_graph(name, case)
    declared = g.type(g.outputs["out"])
    expected = np.asarray(EXPECTED[name](_as_f64(list(values.values())), case.attrs))
    expected_dtype = "int32" if expected.dtype.kind in "iub" else "float32"

    assert declared.shape == expected.shape
    assert declared.dtype == expected_dtype

    out32 = interpret(g, values)[0]["out"]
    out64 = interpret(g, values, float64=True)[0]["out"]
    assert out32.shape == declared.shape and out64.shape == declared.shape
    if declared.dtype == "int32":
        assert out32.dtype == np.int32 and out64.dtype == np.int32
        np.testing.assert_array_equal(out32, expected)
        np.testing.assert_array_equal(out64, expected)
    else:
        assert out32.dtype == np.float32 and out64.dtype == np.float64
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(out64, expected, rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(out32, expected, rtol=2e-5, atol=2e-5 * scale)


# -------------------------------------------------------- VJP vs finite differences
EPS = 1e-6
RTOL, ATOL = 1e-5, 1e-7
MAX_COORDS = 24


def _loss_graph(name, case):
    """The case graph plus loss = sum(float(out) * R) for a fixed random R."""
    g, values = build_case_graph(name, case)
    out = Sym(g, g.outputs["out"])
    outf = F.cast(out, "float32")
    rng = np.random.default_rng(case.seed + 1)
    R = rng.uniform(-1.0, 1.0, out.shape).astype(np.float32)
    g.outputs["loss"] = F.sum(outf * F.lift(g, R)).id
    return g, values, R.astype(np.float64)


def _coords(grad, size, rng):
    """All coordinates of a small array, else a random subset plus the largest gradients."""
    if size <= MAX_COORDS:
        return np.arange(size)
    flat = np.abs(grad.ravel())
    top = np.argsort(-flat, kind="stable")[:4]
    rand = rng.choice(size, MAX_COORDS - 6, replace=False)
    return np.unique(np.concatenate([top, rand, [0, size - 1]]))


GRADIENT_STOPPED = {"stop_gradient"}


def _check_gradients(name, case, expect_zero):
    g, values, R = _loss_graph(name, case)
    values = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in values.items()}
    gg = autodiff(g, loss="loss")
    outs = interpret(gg, values, float64=True)[0]
    rng = np.random.default_rng(case.seed + 2)
    params = [n for n, role in zip(case.leaf_names(), case.leaf_roles()) if role == "param"]
    assert params
    for pname in params:
        grad = outs[GRAD_PREFIX + pname]
        x = values[pname]
        assert grad.shape == x.shape and grad.dtype == np.float64, (pname, grad.shape, x.shape)
        if expect_zero:
            np.testing.assert_array_equal(grad, np.zeros_like(x), err_msg=pname)
        if name in GRADIENT_STOPPED:
            continue        # zero by definition: finite differences see the identity
        idx = _coords(grad, x.size, rng)
        fd = np.empty(len(idx))
        for j, i in enumerate(idx):
            vals = dict(values)
            for sign, slot in ((1, "plus"), (-1, "minus")):
                xp = x.copy().ravel()
                xp[i] += sign * EPS
                vals[pname] = xp.reshape(x.shape)
                o = interpret(g, vals, float64=True)[0]["out"].astype(np.float64)
                if slot == "plus":
                    o_plus = o
                else:
                    o_minus = o
            # sum((out+ - out-) * R): same quantity as the loss difference, without
            # the cancellation of two large sums
            fd[j] = np.sum((o_plus - o_minus) * R) / (2 * EPS)
        np.testing.assert_allclose(grad.ravel()[idx], fd, rtol=RTOL, atol=ATOL,
                                   err_msg=f"d loss / d {pname} at flat indices {idx.tolist()}")


def _is_differentiable(name, case):
    try:
        return any(differentiable_operands(name, case))
    except Exception:       # a broken rule: let the gradient test report it, not collection
        return True


DIFF = [(n, i, c) for n, i, c in ALL if c.has_float_param and _is_differentiable(n, c)]
NONDIFF = [(n, i, c) for n, i, c in ALL if c.has_float_param and not _is_differentiable(n, c)]


def test_differentiable_ops_are_differentiated():
    diff_ops = {n for n, _, _ in DIFF}
    expected = {"neg", "exp", "log", "sqrt", "abs", "sigmoid", "tanh", "add", "sub", "mul",
                "div", "pow", "maximum", "minimum", "select", "cast", "reduce_sum",
                "reduce_mean", "reduce_max", "matmul", "reshape", "transpose", "broadcast_to",
                "conv", "conv_weight_grad"}
    assert expected <= diff_ops, sorted(expected - diff_ops)


@pytest.mark.parametrize("name,index,case", DIFF, ids=[case_id(*x) for x in DIFF])
def test_vjp_matches_finite_differences(name, index, case):
    _check_gradients(name, case, expect_zero=False)


@pytest.mark.parametrize("name,index,case", NONDIFF, ids=[case_id(*x) for x in NONDIFF])
def test_nondifferentiable_ops_give_zero_gradients(name, index, case):
    # the domains keep away from the discontinuities, so finite differences are 0 too
    if name in ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal") \
            and case.note == "ties":
        g, values, _ = _loss_graph(name, case)
        outs = interpret(autodiff(g, loss="loss"), values, float64=True)[0]
        for p in case.leaf_names():
            np.testing.assert_array_equal(outs[GRAD_PREFIX + p], 0.0)
        return
    _check_gradients(name, case, expect_zero=True)


# ------------------------------------------------------------- tie conventions
def _grads(build, **values):
    g = Graph()
    syms = {k: Sym(g, g.leaf("param", TensorType(np.shape(v)), k)) for k, v in values.items()}
    g.outputs["loss"] = build(**syms).id
    outs = interpret(autodiff(g, loss="loss"), {k: np.asarray(v, np.float32)
                                                for k, v in values.items()}, float64=True)[0]
    return {k: outs[GRAD_PREFIX + k] for k in values}


def test_relu_gradient_is_zero_at_zero():
    # ties of maximum send the gradient to the second operand: relu'(0) = 0
    x = np.array([-1.0, 0.0, 2.0])
    gr = _grads(lambda x: F.sum(F.relu(x)), x=x)["x"]
    np.testing.assert_array_equal(gr, [0.0, 0.0, 1.0])
    gr = _grads(lambda a, b: F.sum(F.maximum(a, b) * 3.0 + F.minimum(a, b)),
                a=np.array([1.0, 2.0, 3.0]), b=np.array([1.0, 0.0, 5.0]))
    np.testing.assert_array_equal(gr["a"], [0.0, 3.0, 1.0])
    np.testing.assert_array_equal(gr["b"], [4.0, 1.0, 3.0])


def test_reduce_max_ties_share_the_gradient():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, 1.0, 1.0, 1.0]])
    gr = _grads(lambda x: F.sum(F.max(x, axis=1) * np.array([1.0, 2.0, 3.0], np.float32)),
                x=x)["x"]
    np.testing.assert_allclose(gr, [[0, .5, .5, 0], [.5, .5, .5, .5], [3, 0, 0, 0]], rtol=1e-12)
    gr = _grads(lambda x: F.max(x), x=x)["x"]
    np.testing.assert_allclose(gr, np.where(x == 5.0, 1.0, 0.0))


def test_gradient_fan_in_adds_up():
    x = np.array([0.5, -1.5, 2.0])
    gr = _grads(lambda x: F.sum(x * x + F.exp(x) / x), x=x)["x"]
    np.testing.assert_allclose(gr, 2 * x + np.exp(x) / x - np.exp(x) / x ** 2, rtol=1e-12)
    gr = _grads(lambda x: F.sum(F.matmul(F.reshape(x, (1, 3)), F.reshape(x, (1, 3)),
                                         transpose_a=True)), x=x)["x"]
    np.testing.assert_allclose(gr, 2 * np.sum(x) * np.ones(3), rtol=1e-12)


# ------------------------------------------------------------ shape-rule errors
def _leaf(g, shape, dtype="float32", name=None):
    return Sym(g, g.leaf("input", TensorType(shape, dtype), name or f"v{len(g)}"))


BAD_BROADCASTS = [
    ("add", (7, 33), (7,)),
    ("mul", (33, 7), (7, 33)),
    ("sub", (1000,), (33,)),
    ("maximum", (7, 1, 33), (5, 7)),
    ("greater", (7,), (33,)),
    ("div", (2, 7), (3, 7)),
]


@pytest.mark.parametrize("name,sa,sb", BAD_BROADCASTS, ids=[f"{n}-{a}-{b}" for n, a, b in BAD_BROADCASTS])
def test_mismatched_broadcast_raises(name, sa, sb):
    g = Graph()
    with pytest.raises(ValueError) as e:
        F.op(name, _leaf(g, sa), _leaf(g, sb))
    assert str(sa) in str(e.value) and str(sb) in str(e.value)


def test_select_mismatched_broadcast_raises():
    g = Graph()
    with pytest.raises(ValueError, match=r"\(7, 33\).*\(33, 7\)"):
        F.op("select", _leaf(g, (7, 33), "int32"), _leaf(g, (33, 7)), _leaf(g, (7, 33)))


MATMUL_BAD = [
    ((7, 33), (7, 33), False, False),
    ((7, 33), (1, 33), False, False),
    ((7, 33), (33, 1), True, False),
    ((7, 33), (33, 1), False, True),
    ((1, 7), (33, 7), True, True),
]


@pytest.mark.parametrize("sa,sb,ta,tb", MATMUL_BAD, ids=[f"{a}@{b}-{ta:d}{tb:d}" for a, b, ta, tb in MATMUL_BAD])
def test_matmul_inner_dim_mismatch_raises(sa, sb, ta, tb):
    g = Graph()
    with pytest.raises(ValueError) as e:
        F.matmul(_leaf(g, sa), _leaf(g, sb), transpose_a=ta, transpose_b=tb)
    assert str(sa) in str(e.value) and str(sb) in str(e.value)


@pytest.mark.parametrize("sa,sb", [((7,), (7, 1)), ((7, 1, 33), (33, 7)), ((), (1, 1))])
def test_matmul_needs_rank_2(sa, sb):
    g = Graph()
    with pytest.raises(ValueError) as e:
        F.matmul(_leaf(g, sa), _leaf(g, sb))
    assert str(sa) in str(e.value) and str(sb) in str(e.value)


@pytest.mark.parametrize("shape,new", [((7, 33), (7, 34)), ((1000,), (33, 33)), ((), (7,)), ((7, 1), ())])
def test_reshape_size_mismatch_raises(shape, new):
    g = Graph()
    with pytest.raises(ValueError) as e:
        F.op("reshape", _leaf(g, shape), shape=new)
    assert str(shape) in str(e.value) and str(new) in str(e.value)


@pytest.mark.parametrize("shape,new", [((7, 33), (33, 7)), ((33,), (33, 7)), ((7, 2), (7, 1)),
                                       ((7, 33), (33,))])
def test_broadcast_to_incompatible_raises(shape, new):
    g = Graph()
    with pytest.raises(ValueError) as e:
        F.op("broadcast_to", _leaf(g, shape), shape=new)
    assert str(shape) in str(e.value) and str(new) in str(e.value)


@pytest.mark.parametrize("perm", [(0, 0), (0,), (1, 2), (0, 1, 2)])
def test_transpose_bad_permutation_raises(perm):
    g = Graph()
    with pytest.raises(ValueError, match="permutation"):
        F.op("transpose", _leaf(g, (7, 33)), perm=perm)


FLOAT_ONLY_UNARY = ["exp", "log", "sqrt", "sign", "sigmoid", "tanh", "sin", "cos", "erf", "floor",
                    "round"]


@pytest.mark.parametrize("name", FLOAT_ONLY_UNARY)
def test_float_only_unary_rejects_int32(name):
    g = Graph()
    with pytest.raises(TypeError, match=f"{name}.*int32"):
        F.op(name, _leaf(g, (7, 33), "int32"))


@pytest.mark.parametrize("name", ["reduce_sum", "reduce_mean", "reduce_max"])
def test_float_only_reductions_reject_int32(name):
    g = Graph()
    with pytest.raises(TypeError, match=f"{name}.*int32"):
        F.op(name, _leaf(g, (7, 33), "int32"), axes=(0,), keepdims=False)


@pytest.mark.parametrize("da,db", [("int32", "float32"), ("float32", "int32"), ("int32", "int32")])
def test_matmul_rejects_int32(da, db):
    g = Graph()
    with pytest.raises(TypeError, match="matmul.*int32"):
        F.matmul(_leaf(g, (7, 33), da), _leaf(g, (33, 1), db))


@pytest.mark.parametrize("name", ["add", "mul", "maximum", "equal", "div"])
def test_mixed_dtypes_raise(name):
    g = Graph()
    with pytest.raises(TypeError, match="float32.*int32"):
        F.op(name, _leaf(g, (7, 33)), _leaf(g, (33,), "int32"))


def test_select_branches_mixed_dtypes_raise():
    g = Graph()
    with pytest.raises(TypeError, match="select"):
        F.op("select", _leaf(g, (7,), "int32"), _leaf(g, (7,)), _leaf(g, (7,), "int32"))


def test_argmax_only_over_last_axis():
    g = Graph()
    with pytest.raises(ValueError, match="last axis"):
        F.op("argmax", _leaf(g, (7, 33)), axis=0)


@pytest.mark.parametrize("name", ["reduce_sum", "reduce_mean", "reduce_max"])
def test_reduction_axis_out_of_range_raises(name):
    # -1 and -2 are valid on rank 2; 2, 5 and -3 are not (numpy raises AxisError)
    for axes in [(2,), (5,), (-3,), (0, 7)]:
        g = Graph()
        with pytest.raises(ValueError, match="out of range"):
            F.op(name, _leaf(g, (7, 33)), axes=axes, keepdims=False)


def test_argmax_axis_out_of_range_raises():
    g = Graph()
    with pytest.raises(ValueError):
        F.op("argmax", _leaf(g, (7, 33)), axis=3)


def test_argmax_of_scalar_raises_value_error():
    g = Graph()
    with pytest.raises(ValueError):
        F.op("argmax", _leaf(g, ()), axis=0)
