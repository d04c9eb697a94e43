"""Compiled primitives against the reference interpreter, and the vector math.

* every case of tests/op_cases.py, compiled: the forward result equals the
  reference interpreter's (float32); int32 results exactly;
* every differentiable case: the compiled VJP (loss = sum(out * R), then
  ir.passes.autodiff) equals the reference VJP;
* every primitive of ir.ops.REGISTRY is compiled by at least one case;
* special values (0, -0, +-inf, nan, subnormals, huge) through the compiled
  exp/log/tanh/sigmoid/sqrt follow numpy's semantics;
* the accuracy of the vector math (codegen/mathfns.py) over the whole float
  range against float64 numpy, with the measured figures next to the bounds.

An LLVM compile costs 50-300 ms and is never freed, so the cases are batched:
all forward cases are entries of ONE NativeExecutable, all VJP cases of
another, built once per module; the per-case tests only compare results.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.ops import REGISTRY
from kcompile.ir.passes import GRAD_PREFIX, autodiff
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State

try:
    from tests.op_cases import TESTED_ELSEWHERE, all_cases, build_case_graph, case_id, differentiable_operands
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from op_cases import TESTED_ELSEWHERE, all_cases, build_case_graph, case_id, differentiable_operands

ALL = all_cases()


def _is_differentiable(name, case):
    try:
        return any(differentiable_operands(name, case))
    except Exception:       # a broken VJP rule: let the VJP test report it
        return True


DIFF = [(n, i, c) for n, i, c in ALL if c.has_float_param and _is_differentiable(n, c)]


def _prefix(name, index):
    return f"{name}{index}/"


def _entry(kind, name, index):
    return f"{kind}_{name}_{index}"


# ------------------------------------------------------------------ batches
@dataclass
class Batch:
    """Many case graphs compiled into one module, each run once on both backends."""
    graphs: dict[str, Graph]
    values: dict[str, dict[str, np.ndarray]]         # entry -> all leaf values
    native: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    reference: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)   # compile/run failures
    exe: NativeExecutable | None = None
    state_before: dict[str, np.ndarray] = field(default_factory=dict)
    state_after: dict[str, np.ndarray] = field(default_factory=dict)


def _state_for(graphs, values):
    layout, init = [], {}
    for e, g in graphs.items():
        for v in g.leaves():
            n = g.nodes[v]
            if n.role in ("param", "state"):
                layout.append((n.name, n.type))
                init[n.name] = values[e][n.name]
    state = State(layout)
    for k, a in init.items():
        state.assign(k, a)
    return state


def _feeds(g, values):
    return {g.nodes[v].name: values[g.nodes[v].name] for v in g.leaves()
            if g.nodes[v].role in ("input", "target")}


def _run_batch(graphs, values) -> Batch:
    batch = Batch(graphs, values)
    state = _state_for(graphs, values)
    batch.state_before = {k: state[k].copy() for k in state.views}
    try:
        exes = {None: NativeExecutable(graphs, state)}
        batch.exe = exes[None]
    except Exception:
        # One bad case must not hide all the others: compile them one by one.
        exes = {}
        for e, g in graphs.items():
            try:
                exes[e] = NativeExecutable({e: g}, state)
            except Exception as err:   # noqa: BLE001 - reported by the case's test
                batch.errors[e] = err
    ref = ReferenceExecutable(graphs, state)
    for e, g in graphs.items():
        if e in batch.errors:
            continue
        feeds = _feeds(g, values[e])
        exe = exes.get(None) or exes[e]
        batch.native[e] = exe.run(e, feeds)
        batch.reference[e] = ref.run(e, feeds)
    batch.state_after = {k: state[k].copy() for k in state.views}
    return batch


def _loss_graph(name, index, case):
    """The case graph plus loss = sum(float(out) * R), R an input leaf; then autodiff."""
    p = _prefix(name, index)
    g, values = build_case_graph(name, case, prefix=p)
    out = Sym(g, g.outputs["out"])
    R = Sym(g, g.leaf("input", TensorType(out.shape), p + "R"))
    g.outputs["loss"] = F.sum(F.cast(out, "float32") * R).id
    values[p + "R"] = np.random.default_rng(case.seed + 1).uniform(-1.0, 1.0, out.shape
                                                                   ).astype(np.float32)
    return autodiff(g, loss="loss"), values


@pytest.fixture(scope="module")
def fwd() -> Batch:
    graphs, values = {}, {}
    for name, i, c in ALL:
        e = _entry("fwd", name, i)
        graphs[e], values[e] = build_case_graph(name, c, prefix=_prefix(name, i))
    return _run_batch(graphs, values)


@pytest.fixture(scope="module")
def vjp() -> Batch:
    graphs, values = {}, {}
    for name, i, c in DIFF:
        e = _entry("vjp", name, i)
        graphs[e], values[e] = _loss_graph(name, i, c)
    return _run_batch(graphs, values)


# ------------------------------------------------------------------ tolerances
RTOL, ATOL = 2e-6, 1e-6             # arithmetic, layout, select, cast, comparisons
# The polynomial exp/log/tanh/sigmoid (and libm's powf): measured <= 2.2e-7
# relative on the cases (about 2 ulp), bound a few ulp above.
TRANSCENDENTAL = {"exp", "log", "tanh", "sigmoid", "pow", "sin", "cos", "erf"}
RTOL_TRANSCENDENTAL = 3e-6
# Sums are accumulated in a different order than numpy's pairwise sum: the error
# is bounded by the sum of the magnitudes of the terms, not by the result
# (measured: <= 1.3e-7 of the magnitude, K up to 1000).
ATOL_MAGNITUDE = 1e-6


def _magnitude(name, case, values64):
    """Elementwise sum of |terms| of a summing op (float64), or None."""
    xs = [np.abs(v) for v in values64]
    a = case.attrs
    if name == "reduce_sum":
        return np.sum(xs[0], axis=tuple(a["axes"]), keepdims=a.get("keepdims", False))
    if name == "reduce_mean":
        return np.mean(xs[0], axis=tuple(a["axes"]), keepdims=a.get("keepdims", False))
    if name in ("conv", "conv_weight_grad"):
        return REGISTRY[name].reference(xs, REGISTRY[name].normalize(
            [TensorType(x.shape) for x in xs], dict(a)))
    if name == "matmul":
        x = xs[0].T if a.get("transpose_a") else xs[0]
        y = xs[1].T if a.get("transpose_b") else xs[1]
        return x @ y
    return None


def _assert_close(got, want, rtol, atol, what):
    got64, want64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got64.shape == want64.shape, (what, got64.shape, want64.shape)
    # same nan/inf pattern first (assert_allclose would hide a nan against a nan)
    np.testing.assert_array_equal(np.isnan(got64), np.isnan(want64), err_msg=f"{what}: nan")
    fin = np.isfinite(want64)
    np.testing.assert_array_equal(got64[~fin], want64[~fin], err_msg=f"{what}: inf")
    err = np.abs(got64 - want64)[fin]
    bound = (rtol * np.abs(want64) + np.broadcast_to(atol, want64.shape))[fin]
    bad = err > bound
    if np.any(bad):
        k = np.flatnonzero(bad)[:5]
        raise AssertionError(
            f"{what}: {bad.sum()} of {err.size} elements out of tolerance "
            f"(rtol={rtol}); worst err/bound {np.max(err / bound):.3g}; "
            f"got {got64[fin][k]} want {want64[fin][k]}")


def _check_output(name, case, key, got, want, case_values, R=None, out64=None):
    want = np.asarray(want)
    assert got.dtype == want.dtype, (key, got.dtype, want.dtype)
    assert got.shape == want.shape, (key, got.shape, want.shape)
    if want.dtype == np.int32:
        np.testing.assert_array_equal(got, want, err_msg=key)
        return
    rtol = RTOL_TRANSCENDENTAL if name in TRANSCENDENTAL else RTOL
    if key == "out":
        vals64 = [np.asarray(v, np.float64) for v in case_values]
        mag = _magnitude(name, case, vals64)
        atol = ATOL if mag is None else ATOL_MAGNITUDE * mag
        _assert_close(got, want, rtol, atol, key)
    elif key == "loss":
        # a sum of out * R: bounded by the magnitude of its terms
        mag = float(np.sum(np.abs(out64 * R)))
        _assert_close(got, want, rtol, ATOL_MAGNITUDE * max(mag, 1.0), key)
    else:
        # A gradient is R times a Jacobian: absolute errors scale with the larger of
        # the gradient and the seed R (tanh's 1 - out^2 near |out| = 1 cancels).
        scale = max(float(np.max(np.abs(want), initial=0.0)), float(np.max(np.abs(R))), 1e-30)
        _assert_close(got, want, rtol, ATOL * scale, key)


# ------------------------------------------------------------------ forward
@pytest.mark.parametrize("name,index,case", ALL, ids=[case_id(*x) for x in ALL])
def test_forward_matches_reference(fwd, name, index, case):
    e = _entry("fwd", name, index)
    if e in fwd.errors:
        raise fwd.errors[e]
    got, want = fwd.native[e], fwd.reference[e]
    assert set(got) == set(want) == {"out"}
    vals = [fwd.values[e][_prefix(name, index) + n] for n in case.leaf_names()]
    _check_output(name, case, "out", got["out"], want["out"], vals)


def test_forward_entries_leave_params_alone(fwd):
    for k, before in fwd.state_before.items():
        np.testing.assert_array_equal(fwd.state_after[k], before, err_msg=k)


# ------------------------------------------------------------------ VJP
@pytest.mark.parametrize("name,index,case", DIFF, ids=[case_id(*x) for x in DIFF])
def test_vjp_matches_reference(vjp, name, index, case):
    e = _entry("vjp", name, index)
    if e in vjp.errors:
        raise vjp.errors[e]
    got, want = vjp.native[e], vjp.reference[e]
    p = _prefix(name, index)
    params = [p + n for n, role in zip(case.leaf_names(), case.leaf_roles()) if role == "param"]
    assert set(got) == set(want) == {"out", "loss", *(GRAD_PREFIX + q for q in params)}
    vals = [vjp.values[e][p + n] for n in case.leaf_names()]
    R = vjp.values[e][p + "R"].astype(np.float64)
    out64 = interpret(vjp.graphs[e], vjp.values[e], float64=True)[0]["out"].astype(np.float64)
    for key in sorted(got):
        _check_output(name, case, key, got[key], want[key], vals, R=R, out64=out64)
        assert np.all(np.isfinite(got[key])), key


# ------------------------------------------------------------------ coverage
def _compiled_ops(batch: Batch) -> set[str]:
    assert batch.exe is not None, f"batch compile failed: {batch.errors}"
    return {batch.exe.entries[e].fused.graph.nodes[m].op
            for e in batch.exe.entries for k in batch.exe.entries[e].fused.kernels
            for m in k.members}


def test_every_primitive_is_compiled(fwd, vjp):
    # every primitive reaches a kernel of the forward module (not simplified away)
    missing = sorted(set(REGISTRY) - _compiled_ops(fwd) - set(TESTED_ELSEWHERE))
    assert not missing, f"primitives no compiled case exercises: {missing}"
    # and every case was compiled and run
    assert set(fwd.native) == set(fwd.graphs), sorted(set(fwd.graphs) - set(fwd.native))
    assert set(vjp.native) == set(vjp.graphs), sorted(set(vjp.graphs) - set(vjp.native))
    # every differentiable primitive has a compiled VJP case
    expected = {"neg", "exp", "log", "sqrt", "abs", "sigmoid", "tanh", "add", "sub", "mul",
                "div", "pow", "maximum", "minimum", "select", "cast", "reduce_sum",
                "reduce_mean", "reduce_max", "matmul", "reshape", "transpose", "broadcast_to",
                "conv", "conv_weight_grad"}
    assert not sorted(expected - {n for n, _, _ in DIFF})
    # (cast's only differentiable case, float32 -> float32, is simplified away)
    assert not sorted(expected - {"cast"} - _compiled_ops(vjp))


def test_every_elementwise_primitive_has_a_scalar_lowering():
    from kcompile.codegen.lower.elementwise import SCALAR
    from kcompile.codegen.lower.emitter import SPECIAL
    missing = sorted(n for n, d in REGISTRY.items()
                     if d.kind in ("elementwise", "gather") and n not in SCALAR and n not in SPECIAL)
    assert not missing


# ------------------------------------------------------------------ vector math
MATH = ("exp", "log", "tanh", "sigmoid", "sqrt")
SWEEP_N = 2_000_000
TINY = float(np.finfo(np.float32).tiny)          # smallest normal
DENORM_MIN = 2.0 ** -149
FLT_MAX = float(np.finfo(np.float32).max)


def _special_values() -> np.ndarray:
    f = np.float32
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan,
            DENORM_MIN, -DENORM_MIN, 1e-40, -1e-40, 1e-45, TINY, -TINY,
            float(np.nextafter(f(TINY), f(0))),                         # largest subnormal
            FLT_MAX, -FLT_MAX, 3.4e38, -3.4e38, 1e30, -1e30, 1e20, -1e20,
            1.0, -1.0, float(np.nextafter(f(1), f(2))), float(np.nextafter(f(1), f(0))),
            0.5, -0.5, 0.625, float(np.nextafter(f(0.625), f(0))), -0.625,   # tanh's switch
            2.0, -2.0, 9.0, 10.0, -10.0, 20.0, -20.0, 50.0, -50.0,
            80.0, 88.0, 88.7228, 89.0, 100.0, 1000.0,                  # exp overflow
            -80.0, -87.33, -88.0, -100.0, -103.0, -103.9, -103.972, -104.0, -110.0,
            -150.0, -1000.0, 1e-10, -1e-10, 1e-20, 1e-30]
    v = np.array(vals, np.float32)
    # tile with a shift so that every value also goes through the vector body
    # of the loop, not only its scalar remainder
    return np.concatenate([v, np.roll(v, 3), np.roll(v, 7), v[:5]])


def _sigmoid64(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


NUMPY32 = {
    "exp": np.exp, "log": np.log, "tanh": np.tanh, "sqrt": np.sqrt,
    "sigmoid": lambda x: REGISTRY["sigmoid"].reference([x], {}).astype(np.float32),
}


@pytest.fixture(scope="module")
def mathexe():
    """One module: an entry computing all five functions of a special-value vector,
    and one entry per function for the 2M-point sweeps."""
    graphs = {}
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType(_special_values().shape), "x"))
    for fn in MATH:
        g.outputs[fn] = getattr(F, fn)(x).id
    graphs["special"] = g
    for fn in ("exp", "log", "tanh", "sigmoid"):
        g = Graph()
        x = Sym(g, g.leaf("input", TensorType((SWEEP_N,)), "x"))
        g.outputs["y"] = getattr(F, fn)(x).id
        graphs[f"sweep_{fn}"] = g
    return NativeExecutable(graphs, State([]))


@pytest.mark.parametrize("fn", MATH)
def test_special_values_follow_numpy(mathexe, fn):
    x = _special_values()
    got = mathexe.run("special", {"x": x})[fn].astype(np.float64)
    with np.errstate(all="ignore"):
        want = NUMPY32[fn](x).astype(np.float64)
    where = lambda m: sorted(set(x[m].tolist()), key=str)   # noqa: E731
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), \
        f"{fn}: nan at {where(nan_g & ~nan_w)}, not nan at {where(nan_w & ~nan_g)}"
    inf_w = np.isinf(want)
    bad = inf_w & (got != want)
    assert not bad.any(), f"{fn}: numpy gives inf at {where(bad)}, compiled {got[bad]}"
    bad = np.isinf(got) & ~inf_w
    assert not bad.any(), f"{fn}: compiled gives inf at {where(bad)}, numpy {want[bad]}"
    # an infinite input gives numpy's exact limit (exp(-inf) = 0, tanh(inf) = 1, ...)
    lim = np.isinf(x) & ~nan_w
    bad = lim & (got != want)
    assert not bad.any(), f"{fn}: at {where(bad)} compiled {got[bad]}, numpy {want[bad]}"
    # finite results: a few ulp, and at most one subnormal ulp where the result is
    # zero (sign of zero is not compared: kernels run with nsz); a result in the
    # subnormal range is flushed to zero (compiled entries run with FTZ set)
    fin = np.isfinite(want) & ~lim
    err = np.abs(got[fin] - want[fin])
    bound = np.maximum(4e-7 * np.abs(want[fin]), DENORM_MIN)
    flushed = (np.abs(want[fin]) < TINY) & (got[fin] == 0)
    bad = (err > bound) & ~flushed
    assert not bad.any(), f"{fn}: at {x[fin][bad]} compiled {got[fin][bad]}, numpy {want[fin][bad]}"


def test_exp_overflows_exactly_where_float32_does(mathexe):
    # ln(FLT_MAX) = 88.7228391...: every float32 below it has a finite exp.
    lo = np.float32(88.72)
    xs = [lo]
    while xs[-1] < np.float32(88.7229):
        xs.append(np.nextafter(xs[-1], np.float32(100)))
    x, n = _padded(xs)
    got = _sweep(mathexe, "exp", x)[:n]
    want = np.exp(np.array(xs, np.float64))
    representable = want <= FLT_MAX
    early = representable & np.isinf(got)
    assert not early.any(), \
        f"exp overflows to inf at {np.array(xs)[early]} (true {want[early]}, FLT_MAX {FLT_MAX:.7g})"
    fin = representable
    np.testing.assert_allclose(got[fin], want[fin], rtol=2e-7)
    assert np.all(np.isinf(got[~representable]))


def _sweep(mathexe, fn, x):
    y = mathexe.run(f"sweep_{fn}", {"x": x.astype(np.float32)})["y"]
    return y.astype(np.float64)


def _padded(x):
    x = np.asarray(x, np.float32)
    assert x.size <= SWEEP_N
    return np.concatenate([x, np.ones(SWEEP_N - x.size, np.float32)]), x.size


def test_exp_accuracy_over_the_float_range(mathexe):
    x = np.linspace(-104.0, 89.0, SWEEP_N).astype(np.float32)
    y = _sweep(mathexe, "exp", x)
    t = np.exp(x.astype(np.float64))
    normal = (t >= TINY) & (t <= FLT_MAX)
    rel = np.abs(y[normal] - t[normal]) / t[normal]
    # measured 8.3e-8 (at x = 15.6), under one ulp; bound a little above
    assert rel.max() < 1.2e-7, (rel.max(), x[normal][rel.argmax()])
    sub = t < TINY
    # results in the subnormal range (x < -87.3) are flushed to zero (FTZ)
    assert np.all(y[sub] == 0.0), y[sub][y[sub] != 0.0]
    assert np.all(np.isinf(y[t > FLT_MAX]))


def test_log_accuracy_over_the_float_range(mathexe):
    pos = np.geomspace(TINY, FLT_MAX, SWEEP_N - 300_000)          # every normal binade
    subn = np.geomspace(DENORM_MIN, TINY, 200_000)                 # subnormals
    one = np.float32(1.0)
    near1 = one + np.arange(-50_000, 50_000, dtype=np.float64) * 2.0 ** -23   # 1 +- k ulp
    x = np.concatenate([subn, pos, near1]).astype(np.float32)
    x = x[(x > 0) & np.isfinite(x)]
    x, n = _padded(x)
    y = _sweep(mathexe, "log", x)[:n]
    x = x[:n].astype(np.float64)
    t = np.log(x)
    err = np.abs(y - t)
    far = np.abs(t) >= 0.5
    rel = err[far] / np.abs(t[far])
    # measured 7.8e-8 relative (|log x| >= 0.5; 4.4e-8 on subnormal x)
    assert rel.max() < 1.2e-7, (rel.max(), x[far][rel.argmax()])
    # near 1 (x in [0.607, 1.649]): measured 2.3e-8 absolute, 6.7e-8 relative
    assert err[~far].max() < 5e-8, (err[~far].max(), x[~far][err[~far].argmax()])
    nz = ~far & (t != 0)
    assert np.max(err[nz] / np.abs(t[nz])) < 1.2e-7
    assert np.all(y[x == 1.0] == 0.0)


@pytest.mark.parametrize("fn,ref,bound", [
    ("tanh", np.tanh, 2e-7),            # measured 1.33e-7 relative (1.26 ulp) at x = -0.643
    ("sigmoid", _sigmoid64, 2.5e-7),    # measured 1.92e-7 relative (2.66 ulp) at x = -3.25
])
def test_tanh_sigmoid_accuracy(mathexe, fn, ref, bound):
    x = np.linspace(-20.0, 20.0, SWEEP_N).astype(np.float32)
    # also tiny arguments, where tanh(x) ~ x
    x[:20_000] = np.geomspace(1e-30, 1e-3, 20_000).astype(np.float32)
    x[20_000:40_000] = -x[:20_000]
    y = _sweep(mathexe, fn, x)
    t = ref(x.astype(np.float64))
    rel = np.abs(y - t) / np.abs(t)
    assert rel.max() < bound, (rel.max(), x[rel.argmax()])
    assert np.all(np.abs(y) <= 1.0) and (fn == "tanh" or np.all(y >= 0.0))


def test_subnormal_results_flush_to_zero_and_the_callers_mode_is_restored(mathexe):
    """Compiled entries run with FTZ (a decaying optimizer slot would otherwise turn
    subnormal, each operand a ~100-cycle microcode assist), and give the caller back
    its floating-point mode: numpy after a compiled call still makes subnormals."""
    x, n = _padded([-100.0, -90.0, -87.0])
    y = _sweep(mathexe, "exp", x)[:n]
    assert y[0] == 0.0 and y[1] == 0.0               # e^-100, e^-90: subnormal, flushed
    assert y[2] == pytest.approx(np.exp(-87.0), rel=2e-7)        # e^-87: normal
    tiny = np.array([TINY], np.float32)
    assert (tiny * np.float32(0.5))[0] != 0.0        # numpy's own subnormal survives
