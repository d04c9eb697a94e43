"""scan: reference against a Python loop, VJP against finite differences, and
compiled (1 and 2 threads) against the reference, forward and backward; the
graph does not grow with the sequence length."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State

B, D, U = 3, 4, 6


def rnn_graph(T, reverse=False, two_carries=False, dynamic=False):
    g = Graph()
    steps = Sym(g, g.leaf("input", TensorType((), "int32"), "steps")) if dynamic else None
    x = Sym(g, g.leaf("param", TensorType((T, B, D)), "x"))
    W = Sym(g, g.leaf("param", TensorType((D, U)), "W"))
    Uw = Sym(g, g.leaf("param", TensorType((U, U)), "U"))
    h0 = Sym(g, g.leaf("param", TensorType((B, U)), "h0"))

    def step(k, c, xs):
        W_, U_ = k
        (xt,) = xs
        h = c[0]
        hn = F.tanh(xt @ W_ + h @ U_)
        if two_carries:
            s = c[1] + hn * hn
            return [hn, s], [hn * 2.0, F.sum(s, axis=1)]
        return [hn], [hn * 2.0]
    init = [h0] + ([F.broadcast_to(F.lift(g, 0.0), (B, U))] if two_carries else [])
    finals, ys = F.scan(step, [W, Uw], init, [x], reverse=reverse, steps=steps)
    loss = F.sum(ys[0] * ys[0]) + F.sum(finals[0] * finals[0] * finals[0])
    if two_carries:
        loss = loss + F.sum(F.sqrt(finals[1] + 1.0)) + F.sum(ys[1] * 0.1)
    g.outputs["loss"] = loss.id
    g.outputs["ys"] = ys[0].id
    return g


def values(T, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(T, B, D)), "W": rng.normal(size=(D, U)) * 0.5,
            "U": rng.normal(size=(U, U)) * 0.5, "h0": rng.normal(size=(B, U))}


def python_loop(v, T, reverse):
    h = v["h0"]
    ys = np.zeros((T, B, U))
    for s in range(T):
        t = T - 1 - s if reverse else s
        h = np.tanh(v["x"][t] @ v["W"] + h @ v["U"])
        ys[t] = 2 * h
    return ys, h


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_equals_a_python_loop(reverse):
    T = 7
    v = values(T)
    out, _ = interpret(rnn_graph(T, reverse), v, float64=True)
    ys, h = python_loop(v, T, reverse)
    np.testing.assert_allclose(out["ys"], ys, rtol=1e-12)
    np.testing.assert_allclose(out["loss"], np.sum(ys * ys) + np.sum(h ** 3), rtol=1e-12)


@pytest.mark.parametrize("reverse,two", [(False, False), (True, False), (False, True)])
def test_vjp_matches_finite_differences(reverse, two):
    T = 4
    g = rnn_graph(T, reverse, two)
    v = values(T, 1)
    grads, _ = interpret(autodiff(g), v, float64=True)
    for name in v:
        fd = np.zeros_like(v[name])
        for idx in np.ndindex(fd.shape):
            fd[idx] = _finite_difference(g, v, name, idx)
        np.testing.assert_allclose(grads["grad/" + name], fd, rtol=1e-5, atol=1e-6, err_msg=name)


def _finite_difference(g, v, name, idx, eps=1e-6):
    """d loss / d v[name][idx], by central differences in float64."""
    hi = {k: a.copy() for k, a in v.items()}
    hi[name][idx] += eps
    lo = {k: a.copy() for k, a in v.items()}
    lo[name][idx] -= eps
    return (interpret(g, hi, float64=True)[0]["loss"]
            - interpret(g, lo, float64=True)[0]["loss"]) / (2 * eps)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_compiled_equals_reference_forward_and_backward(nthreads):
    T = 9
    g = autodiff(rnn_graph(T, False, True))
    v = {k: a.astype(np.float32) for k, a in values(T, 2).items()}
    layout = [(n, TensorType(a.shape)) for n, a in v.items()]
    res = []
    for make in (lambda s: ReferenceExecutable({"f": g}, s),
                 lambda s: NativeExecutable({"f": g}, s, use_cache=False, nthreads=nthreads)):
        st = State(layout)
        for n, a in v.items():
            st.assign(n, a)
        res.append(make(st).run("f", {}))
    for k in res[0]:
        np.testing.assert_allclose(res[1][k], res[0][k], rtol=2e-5, atol=2e-5, err_msg=k)


def test_graph_size_does_not_grow_with_length():
    assert len(autodiff(rnn_graph(5))) == len(autodiff(rnn_graph(500)))


def test_transposed_loop_invariants_are_hoisted_out_of_the_backward_scan():
    """dh = dz U^T in the backward body reads U^T, transposed once before the loop."""
    from kcompile.ir.passes import simplify
    T = 9
    g = autodiff(rnn_graph(T, False, True))
    before = [n for n in g.nodes.values() if n.op == "scan"]
    after_g = simplify(g)
    after = [n for n in after_g.nodes.values() if n.op == "scan"]
    assert len(before) == len(after) == 2

    def const_products(node):
        bg = node.params["body"].graph
        return [m for m in bg.nodes.values() if m.op == "matmul" and m.params["transpose_b"]
                and bg.nodes[m.inputs[1]].is_leaf and bg.nodes[m.inputs[1]].role == "input"
                and bg.nodes[m.inputs[1]].name.startswith("k")]
    assert any(const_products(n) for n in before)
    assert not any(const_products(n) for n in after)
    # ... one of the scan's consts is now that transpose, computed outside the loop
    assert any(after_g.nodes[i].op == "transpose"
               for n in after for i in n.inputs[:n.params["body"].n_consts])
    # same numbers as the interpreter on the graph as differentiated
    v = {k: a.astype(np.float32) for k, a in values(T, 2).items()}
    want = interpret(g, v)[0]
    got = interpret(after_g, v)[0]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("reverse", [False, True])
def test_run_time_step_count_equals_the_exact_length_scan(reverse):
    """A scan with capacity L run for T steps (T read at run time): forward results,
    gradients of the weights and of the first T inputs equal those of the length-T scan;
    the slots past T are zeros (compiled on 2 threads and reference)."""
    L, T = 9, 5
    v = {k: a.astype(np.float32) for k, a in values(L, 3).items()}
    exact = {**v, "x": v["x"][:T]}
    want, _ = interpret(autodiff(rnn_graph(T, reverse, True)), exact)
    g = autodiff(rnn_graph(L, reverse, True, dynamic=True))
    layout = [(n, TensorType(a.shape)) for n, a in v.items()]
    for make in (lambda s: ReferenceExecutable({"f": g}, s),
                 lambda s: NativeExecutable({"f": g}, s, use_cache=False, nthreads=2)):
        st = State(layout)
        for n, a in v.items():
            st.assign(n, a)
        got = make(st).run("f", {"steps": np.int32(T)})
        for k in ("loss", "grad/W", "grad/U", "grad/h0"):
            np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-5, err_msg=k)
        np.testing.assert_allclose(got["ys"][:T], want["ys"], rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(got["grad/x"][:T], want["grad/x"], rtol=2e-5, atol=2e-5)
        assert not got["ys"][T:].any() and not got["grad/x"][T:].any()


def test_a_scan_result_read_twice_is_one_value_compiled():
    """Two scan_result nodes of one index: the pipeline merges them (CSE) and both
    outputs are the reference's; lowered without that merge, a clear error, not a
    buffer left unwritten."""
    from kcompile.codegen.module import Entry, build_module, scratch_bytes
    from kcompile.ir.passes.fuse import fuse
    from kcompile.ir.passes.plan_memory import plan_memory
    T = 4
    g = rnn_graph(T)
    scan = next(v for v, n in g.nodes.items() if n.op == "scan")
    first = next(v for v in g.users(scan) if g.nodes[v].params["index"] == 0)
    p = g.nodes[first].params
    twin = g.add("scan_result", [scan], index=p["index"], shape=p["shape"], dtype=p["dtype"])
    g.outputs["again"] = twin
    g.outputs["first"] = first
    v = {k: a.astype(np.float32) for k, a in values(T, 2).items()}
    layout = [(n, TensorType(a.shape)) for n, a in v.items()]
    res = []
    for make in (lambda s: ReferenceExecutable({"f": g}, s),
                 lambda s: NativeExecutable({"f": g}, s, use_cache=False)):
        st = State(layout)
        for n, a in v.items():
            st.assign(n, a)
        res.append(make(st).run("f", {}))
    np.testing.assert_allclose(res[1]["again"], res[0]["first"], rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(res[1]["again"], res[1]["first"])
    fg = fuse(g)
    st = State(layout)
    plan = plan_memory(fg, st.offsets, lambda k: scratch_bytes(fg.graph, k, 1))
    with pytest.raises(ValueError, match="both read its result 0"):
        build_module([Entry("f", fg, plan)], 1)


def _backward_body(g):
    """The body of the reverse scan autodiff made of g's scan."""
    d = autodiff(g)
    scans = [n for n in d.nodes.values() if n.op == "scan"]
    first = scans[0].params["reverse"]
    forward, backward = sorted(scans, key=lambda n: n.params["reverse"] != first)
    return forward.params["body"], backward.params["body"]


def test_the_backward_step_reads_the_forward_steps_tanh():
    """tanh's VJP reads its value: the forward scan keeps it (one more per-step output)
    and the backward step computes no tanh; the VJP is unchanged (finite differences
    above run on this graph)."""
    forward, backward = _backward_body(rnn_graph(4))
    assert forward.n_ys == 2            # y0 and the kept tanh
    assert not any(n.op == "tanh" for n in backward.graph.nodes.values())


def test_past_the_budget_the_backward_step_recomputes(monkeypatch):
    from kcompile.ir.passes import scan_vjp
    monkeypatch.setattr(scan_vjp, "RESIDUAL_BYTES", 0)
    forward, backward = _backward_body(rnn_graph(4))
    assert forward.n_ys == 1
    assert any(n.op == "tanh" for n in backward.graph.nodes.values())
    test_vjp_matches_finite_differences(False, False)


def linear_rnn_graph(T, units):
    """h' = h U + x_t: a product of the carry whose value the backward step reads
    only if it is kept (no transcendental after it)."""
    g = Graph()
    x = Sym(g, g.leaf("param", TensorType((T, B, units)), "x"))
    Uw = Sym(g, g.leaf("param", TensorType((units, units)), "U"))
    h0 = Sym(g, g.leaf("param", TensorType((B, units)), "h0"))

    def step(k, c, xs):
        hn = c[0] @ k[0] + xs[0]
        return [hn], [hn * hn]
    finals, ys = F.scan(step, [Uw], [h0], [x])
    g.outputs["loss"] = (F.sum(ys[0]) + F.sum(finals[0])).id
    return g


@pytest.mark.parametrize("units,kept", [(16, 1), (4, 0)])
def test_a_product_of_the_carry_is_kept_when_it_sums_enough_terms(units, kept):
    forward, _ = _backward_body(linear_rnn_graph(3, units))
    assert forward.n_ys == 1 + kept
    g = linear_rnn_graph(3, units)
    rng = np.random.default_rng(5)
    v = {"x": rng.normal(size=(3, B, units)), "U": rng.normal(size=(units, units)) * 0.3,
         "h0": rng.normal(size=(B, units))}
    grads, _ = interpret(autodiff(g), v, float64=True)
    for name in ("U", "h0"):
        for idx in list(np.ndindex(v[name].shape))[:12]:
            np.testing.assert_allclose(grads["grad/" + name][idx],
                                       _finite_difference(g, v, name, idx), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{name}{idx}")
