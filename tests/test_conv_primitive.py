"""The convolution primitives (ir/conv.py) and their lowering (codegen/lower/conv.py).

* the reference rules agree with direct loops written from the definition
  (tests/conv_direct.py) over every padding pattern, strides 1-3, both
  dilations, groups and depthwise, 1-D and 2-D, odd sizes;
* compiled forward results and compiled gradients (dX, dW through autodiff)
  equal the reference interpreter's, on 1 and 2 threads, with a fused bias +
  relu epilogue and with an SGD update in the kernel gradient's epilogue;
* the VJPs (and the VJPs of the VJPs) agree with central finite differences;
* bad operands raise errors naming the problem.

Compiles are batched: one module per thread count holds every case.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.cost import flops
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import GRAD_PREFIX, autodiff
from kcompile.ir.passes.dce import eliminate_dead_code
from kcompile.runtime.executable import NativeExecutable
from kcompile.runtime.state import State

try:
    from tests import conv_direct
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    import conv_direct


def _same(n, k, s, d=1):
    """TensorFlow's "same" padding (as Keras computes it)."""
    kd = (k - 1) * d + 1
    total = max((-(-n // s) - 1) * s + kd - n, 0)
    return (total // 2, total - total // 2)


def _configs():
    """(name, x shape, kernel shape, attrs) covering the attribute space."""
    out = []
    # 2-D: every padding kind x strides 1-3, odd sizes
    for s in (1, 2, 3):
        for pad in ("valid", "same", "asym"):
            n, k = (9, 7), (3, 2)
            padding = {"valid": ((0, 0), (0, 0)),
                       "same": (_same(n[0], k[0], s), _same(n[1], k[1], s)),
                       "asym": ((2, 0), (0, 3))}[pad]
            out.append((f"2d_s{s}_{pad}", (2, *n, 3), (*k, 3, 5),
                        dict(strides=(s, s), padding=padding)))
    out += [
        ("2d_rhs_dil", (1, 11, 8, 2), (3, 3, 2, 4),
         dict(strides=(1, 2), padding=((2, 2), (1, 3)), rhs_dilation=(2, 3))),
        ("2d_lhs_dil", (2, 5, 4, 3), (3, 2, 3, 2),
         dict(strides=(1, 1), padding=((2, 2), (1, 1)), lhs_dilation=(2, 3))),
        ("2d_groups", (2, 6, 5, 6), (3, 3, 2, 9),
         dict(strides=(1, 1), padding=((1, 1), (1, 1)), groups=3)),
        ("2d_depthwise", (2, 7, 6, 5), (3, 3, 1, 10),
         dict(strides=(2, 1), padding=((1, 1), (1, 1)), groups=5)),
        ("2d_1x1", (3, 4, 5, 7), (1, 1, 7, 33), dict(strides=(1, 1), padding=((0, 0), (0, 0)))),
        ("2d_wide", (1, 5, 5, 17), (3, 3, 17, 70),
         dict(strides=(1, 1), padding=((1, 1), (1, 1)))),
        ("1d_same", (3, 17, 4), (3, 4, 6), dict(strides=(1,), padding=(_same(17, 3, 1),))),
        ("1d_causal", (2, 13, 3), (3, 3, 4), dict(strides=(1,), padding=((4, 0),),
                                                  rhs_dilation=(2,))),
        ("1d_s3", (2, 20, 5), (4, 5, 3), dict(strides=(3,), padding=((1, 2),))),
        ("1d_transposed", (2, 6, 4), (3, 4, 3),
         dict(strides=(1,), padding=((2, 2),), lhs_dilation=(2,))),
        ("1d_depthwise", (2, 9, 4), (5, 1, 4), dict(strides=(1,), padding=((2, 2),), groups=4)),
    ]
    return out


CONFIGS = _configs()
IDS = [c[0] for c in CONFIGS]


def _inputs(xs, ks, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(xs).astype(np.float32),
            rng.standard_normal(ks).astype(np.float32))


# ------------------------------------------------------------------ reference
@pytest.mark.parametrize("name,xs,ks,a", CONFIGS, ids=IDS)
def test_reference_matches_direct_loops(name, xs, ks, a):
    x, w = _inputs(xs, ks, 0)
    g = Graph()
    xv = Sym(g, g.leaf("input", TensorType(xs), "x"))
    wv = Sym(g, g.leaf("input", TensorType(ks), "w"))
    y = F.conv(xv, wv, **a)
    g.outputs["y"] = y.id
    R = np.random.default_rng(1).standard_normal(y.shape)
    gy = F.lift(g, R.astype(np.float32))
    g.outputs["dw"] = F.op("conv_weight_grad", xv, gy, kernel_shape=ks[:-2], **a).id
    out = interpret(g, {"x": x, "w": w}, float64=True)[0]
    want = conv_direct.conv(x, w, a)
    assert y.shape == want.shape
    np.testing.assert_allclose(out["y"], want, rtol=1e-12, atol=1e-12)
    want_dw = conv_direct.conv_weight_grad(x, R.astype(np.float32), dict(a, kernel_shape=ks[:-2]))
    np.testing.assert_allclose(out["dw"], want_dw, rtol=1e-11, atol=1e-11)


def test_flops_count_every_tap_and_channel():
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((2, 9, 7, 6)), "x"))
    w = Sym(g, g.leaf("param", TensorType((3, 2, 3, 8)), "w"))
    y = F.conv(x, w, (2, 1), ((1, 1), (0, 1)), groups=2)      # (2, 5, 7, 8)
    g.outputs["y"] = y.id
    assert y.shape == (2, 5, 7, 8)
    assert flops(g) == 2 * (2 * 5 * 7 * 8) * (3 * 2 * 3)
    g.outputs["loss"] = F.sum(y).id
    gg = eliminate_dead_code(autodiff(g, loss="loss"))
    # x is an input: no dX, only the kernel gradient, which costs what the forward does
    convs = [v for v, n in gg.nodes.items() if n.op in ("conv", "conv_weight_grad")]
    assert sorted(gg.nodes[v].op for v in convs) == ["conv", "conv_weight_grad"]
    assert flops(gg) >= 2 * flops(g)


# ------------------------------------------------------------------ compiled
def _graph(name, xs, ks, a, epilogue):
    """out = conv(x, w) (+ bias, relu when `epilogue`), loss = sum(out * R), the
    gradients by autodiff; with `epilogue`, w also takes an SGD step."""
    g = Graph()
    x = Sym(g, g.leaf("param", TensorType(xs), f"{name}/x"))
    w = Sym(g, g.leaf("param", TensorType(ks), f"{name}/w"))
    y = F.conv(x, w, **a)
    if epilogue:
        bias = Sym(g, g.leaf("param", TensorType((ks[-1],)), f"{name}/b"))
        y = F.relu(y + bias)
    R = Sym(g, g.leaf("input", TensorType(y.shape), f"{name}/R"))
    g.outputs["out"] = y.id
    g.outputs["loss"] = F.sum(y * R).id
    gg = autodiff(g, loss="loss")
    if epilogue:    # the kernel gradient's epilogue applies the update
        dw = Sym(gg, gg.outputs[GRAD_PREFIX + f"{name}/w"])
        wl = Sym(gg, gg.leaf_by_name(f"{name}/w"))
        gg.updates[wl.id] = (wl - 0.1 * dw).id
    return gg


def _values(name, xs, ks, seed):
    x, w = _inputs(xs, ks, seed)
    return {f"{name}/x": x, f"{name}/w": w,
            f"{name}/b": np.linspace(-0.5, 0.5, ks[-1]).astype(np.float32)}


class _Batch:
    def __init__(self, nthreads):
        self.graphs, self.values = {}, {}
        for (name, xs, ks, a), epi in itertools.product(CONFIGS, (False, True)):
            e = f"{name}_{'epi' if epi else 'plain'}"
            g = _graph(e, xs, ks, a, epi)
            vals = _values(e, xs, ks, len(self.graphs))
            R = g.type(g.leaf_by_name(f"{e}/R")).shape
            vals[f"{e}/R"] = np.random.default_rng(7).uniform(-1, 1, R).astype(np.float32)
            self.graphs[e], self.values[e] = g, vals
        layout = [(g.nodes[v].name, g.nodes[v].type) for g in self.graphs.values()
                  for v in g.leaves("param")]
        self.state = State(layout)
        self.exe = NativeExecutable(self.graphs, self.state, nthreads=nthreads)

    def run(self, e):
        g, vals = self.graphs[e], self.values[e]
        params = {g.nodes[v].name for v in g.leaves("param")}
        for k in params:
            self.state.assign(k, vals[k])
        got = self.exe.run(e, {k: v for k, v in vals.items() if k not in params})
        after = {k: self.state[k].copy() for k in params}
        want, want_updates = interpret(g, vals)
        return got, want, after, want_updates


@pytest.fixture(scope="module", params=[1, 2], ids=["1thread", "2threads"])
def batch(request):
    return _Batch(request.param)


def _close(got, want, what, scale=1.0):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    tol = 2e-5 * max(float(np.max(np.abs(want), initial=0.0)), scale)
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("epilogue", [False, True], ids=["plain", "bias_relu_sgd"])
@pytest.mark.parametrize("name,xs,ks,a", CONFIGS, ids=IDS)
def test_compiled_matches_reference(batch, name, xs, ks, a, epilogue):
    e = f"{name}_{'epi' if epilogue else 'plain'}"
    got, want, after, want_updates = batch.run(e)
    assert set(got) == set(want)
    for k in sorted(want):
        _close(got[k], want[k], k)
        assert np.all(np.isfinite(got[k])), k
    for k, v in want_updates.items():
        _close(after[k], v, f"updated {k}")


def test_conv_kernels_carry_their_epilogues(batch):
    """bias + relu runs in the forward conv kernel, the SGD update in the kernel
    gradient's, and the relu derivative in the kernel computing dX's input."""
    fused = batch.exe.pipeline.memory("2d_s1_same_epi").fused
    kinds = {}
    for k in fused.kernels:
        ops = [fused.graph.nodes[m].op for m in k.members]
        for op in ("conv", "conv_weight_grad"):
            if op in ops:
                kinds.setdefault(op, []).append(ops)
    assert any("maximum" in ops and "add" in ops for ops in kinds["conv"])
    assert any("sub" in ops for ops in kinds["conv_weight_grad"])


# ------------------------------------------------------------------ gradients
EPS = 1e-6


def _fd_check(build, arrays, seed):
    """build(syms) -> Sym out; the autodiff gradients of sum(out * R) vs central
    differences, in float64, at a few coordinates of each operand."""
    g = Graph()
    syms = [Sym(g, g.leaf("param", TensorType(a.shape), f"p{i}")) for i, a in enumerate(arrays)]
    out = build(syms)
    rng = np.random.default_rng(seed)
    R = rng.uniform(-1, 1, out.shape)
    g.outputs["out"] = out.id
    g.outputs["loss"] = F.sum(out * F.lift(g, R.astype(np.float32))).id
    vals = {f"p{i}": a.astype(np.float64) for i, a in enumerate(arrays)}
    grads = interpret(autodiff(g, loss="loss"), vals, float64=True)[0]
    R = R.astype(np.float32).astype(np.float64)
    for i, a in enumerate(arrays):
        name = f"p{i}"
        for j in rng.choice(a.size, min(a.size, 10), replace=False):
            plus, minus = dict(vals), dict(vals)
            for d, sign in ((plus, 1), (minus, -1)):
                z = vals[name].copy().ravel()
                z[j] += sign * EPS
                d[name] = z.reshape(a.shape)
            fd = np.sum((interpret(g, plus, float64=True)[0]["out"]
                         - interpret(g, minus, float64=True)[0]["out"]) * R) / (2 * EPS)
            np.testing.assert_allclose(grads[GRAD_PREFIX + name].ravel()[j], fd, rtol=1e-6,
                                       atol=1e-8, err_msg=f"d/d{name}[{j}]")


@pytest.mark.parametrize("name,xs,ks,a", CONFIGS[::2], ids=IDS[::2])
def test_vjp_matches_finite_differences(name, xs, ks, a):
    _fd_check(lambda s: F.conv(s[0], s[1], **a), list(_inputs(xs, ks, 3)), 4)


@pytest.mark.parametrize("name,xs,ks,a", CONFIGS[1::3], ids=IDS[1::3])
def test_second_order_vjps_match_finite_differences(name, xs, ks, a):
    """The gradient of a function of dW (as a gradient penalty would take): the VJPs
    of conv_weight_grad, which are convolutions too."""
    x, w = _inputs(xs, ks, 5)

    def build(s):
        y = F.conv(s[0], s[1], **a)
        dw = F.op("conv_weight_grad", s[0], F.tanh(y), kernel_shape=ks[:-2], **a)
        return dw * dw
    _fd_check(build, [x, w], 6)


# ------------------------------------------------------------------ errors
def _leaves(xs, ks):
    g = Graph()
    return (Sym(g, g.leaf("input", TensorType(xs), "x")),
            Sym(g, g.leaf("input", TensorType(ks), "w")))


@pytest.mark.parametrize("xs,ks,kw,match", [
    ((2, 5, 5, 4), (3, 3, 4, 6), dict(padding=((0, 0),)), "padding needs one"),
    ((2, 5, 5, 4), (3, 3, 4, 6), dict(padding=((-1, 0), (0, 0))), "non-negative"),
    ((2, 5, 5, 4), (3, 3, 3, 6), dict(), "3 input channels per group"),
    ((2, 5, 5, 4), (3, 3, 2, 6), dict(groups=2, strides=(1,)), "strides needs one value"),
    ((2, 5, 5, 4), (3, 3, 2, 5), dict(groups=2), "divisible by groups"),
    ((2, 5, 5, 4), (7, 3, 4, 6), dict(), "does not fit"),
    ((2, 5, 5, 4), (3, 3, 4, 6), dict(strides=(0, 1)), "strides must be >= 1"),
    ((2, 5, 5, 4), (3, 4, 6), dict(), "needs rank 4"),
    ((2, 5, 5, 5, 4), (3, 3, 3, 4, 6), dict(padding=((0, 0),) * 3), "1 or 2 spatial axes"),
])
def test_bad_operands_raise(xs, ks, kw, match):
    x, w = _leaves(xs, ks)
    rank = len(xs) - 2
    kw = {"strides": (1,) * rank, "padding": ((0, 0),) * rank, **kw}
    with pytest.raises(ValueError, match=match):
        F.conv(x, w, **kw)


def test_int_operands_raise():
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((2, 5, 3), "int32"), "x"))
    w = Sym(g, g.leaf("input", TensorType((3, 3, 2)), "w"))
    with pytest.raises(TypeError, match="conv needs float32"):
        F.conv(x, w, (1,), ((0, 0),))
