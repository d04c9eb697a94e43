"""Code generation: vector code, fused kernels, memory planning, in-place updates.

(a) the host assembly of a matmul kernel and of an elementwise kernel uses
    full-width vector registers (ymm, or zmm on an AVX-512 host) and packed FMAs;
(b) fused graphs compute what the reference interpreter computes: softmax,
    a reduction over axis 0 with a fused prologue, suffix reductions with fused
    epilogues, transposes and broadcasts inside loop kernels, and matmul in its
    four transpose forms with sizes 1, 7, 33, 255 and 1000 in every dimension;
(c) fuse() makes fewer kernels than the MLP forward+backward graph has ops, and
    plan_memory's work arena reuses memory (smaller than all buffers together)
    without overlapping two live buffers;
(d) a 'train' entry updating params and optimizer state in place (graph.updates)
    leaves the State equal to the reference's after 3 calls.

Many graphs share one compiled module (one entry each): an LLVM compile costs
50-300 ms and is never freed.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from kcompile.codegen.target import host
from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import TensorType
from kcompile.ir.passes import GRAD_PREFIX, autodiff, optimizer_step, simplify
from kcompile.ir.passes.fuse import fuse
from kcompile.ir.passes.plan_memory import plan_memory
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State

try:
    from tests.model_checks import G, graph_feeds, graph_state
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from model_checks import G, graph_feeds, graph_state


# ------------------------------------------------------------------ helpers
_state = graph_state
_feeds = graph_feeds


def _kernels(fg, kind=None):
    """fg's kernels of this kind, including the stages merged into rows kernels."""
    flat = [s for k in fg.kernels for s in (k.stages or [k])]
    return [k for k in flat if kind is None or k.kind == kind]


def _ops(fg, k):
    return [fg.graph.nodes[m].op for m in k.members]


# ------------------------------------------------------------------ (a) assembly
def _function_asm(asm: str, prefix: str) -> str:
    """The assembly of every function whose symbol starts with `prefix`."""
    out, cur = [], None
    for line in asm.splitlines():
        m = re.match(r'^"?([^\s:"]+)"?:', line)
        if m and not m.group(1).startswith("."):
            cur = m.group(1).startswith(prefix)
        if cur:
            out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def asm_exe():
    mm = G("mm/")
    mm.out(c=F.matmul(mm.input(mm.rng.standard_normal((64, 128)), "a"),
                      mm.input(mm.rng.standard_normal((128, 96)), "b")))
    ew = G("ew/")
    x, y = ew.input(ew.rng.standard_normal(4096), "x"), ew.input(ew.rng.standard_normal(4096), "y")
    ew.out(o=F.exp(x) * y + F.tanh(x))
    exe = NativeExecutable({"mm": mm.g, "ew": ew.g}, State([]))
    return exe, {"mm": mm, "ew": ew}


@pytest.mark.parametrize("entry,kind", [("mm", "matmul"), ("ew", "loop")])
def test_kernels_are_vectorized_with_fma(asm_exe, entry, kind):
    exe, built = asm_exe
    (k,) = exe.entries[entry].fused.kernels
    assert k.kind == kind
    asm = exe.compiled.assembly()
    body = _function_asm(asm, f"{entry}.{k.name}")
    assert body, f"no function {entry}.{k.name} in the assembly"
    # The target is the host CPU: AVX2 hosts get ymm; AVX-512 hosts (znver4/5,
    # where LLVM prefers 512-bit vectors) get zmm. Either way: not xmm-only code.
    features = host()[2].split(",")
    if "+avx2" not in features or "+fma" not in features:
        pytest.skip("the host has no AVX2/FMA: no 256-bit FMA code to expect")
    assert re.search(r"%[yz]mm\d", body), f"{entry}.{k.name} uses no ymm/zmm register"
    assert re.search(r"vfmadd\d{3}ps\s+[^\n]*%[yz]mm", body), \
        f"{entry}.{k.name} has no packed vfmadd on ymm/zmm"
    # and the code computes the right thing
    g = built[entry]
    got = exe.run(entry, _feeds(g.g, g.values))
    want = ReferenceExecutable({entry: g.g}, State([])).run(entry, _feeds(g.g, g.values))
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=3e-6, atol=1e-6 * np.abs(want[name]).max())


# ------------------------------------------------------------------ (b) fused graphs
SOFTMAX_SHAPES = [(1, 7), (33, 1000), (7, 33)]
MM_SIZES = [1, 7, 33, 255, 1000]
# every size in every dimension (cyclic shifts, two orders): 10 (m, k, n) x 4 forms
MM_MKN = [(MM_SIZES[i], MM_SIZES[(i + 1) % 5], MM_SIZES[(i + 2) % 5]) for i in range(5)] + \
         [(MM_SIZES[i], MM_SIZES[(i + 2) % 5], MM_SIZES[(i + 1) % 5]) for i in range(5)]
MM_CASES = [(m, k, n, ta, tb) for m, k, n in MM_MKN for ta in (False, True) for tb in (False, True)]


def _softmax(shape):
    b = G(f"softmax{shape}/")
    x = b.input(b.rng.standard_normal(shape) * 4.0, "x")
    e = F.exp(x - F.max(x, axis=-1, keepdims=True))
    return b.out(p=e / F.sum(e, axis=-1, keepdims=True))


def _prologue_reductions():
    """Reductions over leading axes: the elementwise ops producing their input fuse in."""
    b = G("pro/")
    x = b.input(b.rng.standard_normal((33, 1000)), "x")
    w = b.param(b.rng.standard_normal(1000), "w")
    y = b.input(b.rng.standard_normal((7, 5, 33)), "y")
    return b.out(s=F.sum(F.exp(x * 0.5) * w + 1.0, axis=0),
                 m=F.max(F.tanh(y) - y, axis=(0,), keepdims=True),
                 a=F.mean(F.sigmoid(y) * y, axis=(0, 1)))


def _epilogue_reductions():
    """Suffix reductions whose results feed elementwise ops: the ops fuse after."""
    b = G("epi/")
    x = b.input(b.rng.standard_normal((33, 1000)), "x")
    c = b.param(b.rng.standard_normal(33), "c")
    y = b.input(b.rng.standard_normal((7, 5, 33)), "y")
    return b.out(n=F.log(F.sum(x * x, axis=-1)) * 0.5 + c,                       # log-norm
                 lse=F.log(F.sum(F.exp(y), axis=(1, 2), keepdims=True)) - 1.0,  # logsumexp
                 r=F.sqrt(F.mean(y * y, axis=-1)) + F.max(y, axis=-1))


def _layout_loops():
    """Transposes and broadcasts read inside one loop kernel."""
    b = G("lay/")
    x = b.input(b.rng.standard_normal((33, 7)), "x")
    col = b.param(b.rng.standard_normal((7, 1)), "col")
    y = b.input(b.rng.standard_normal((7, 33)), "y")
    z = b.input(b.rng.standard_normal((33, 5, 7)), "z")
    v = b.input(b.rng.standard_normal(33), "v")
    return b.out(t=F.transpose(x) * F.broadcast_to(col, (7, 33)) + y,
                 u=F.exp(F.transpose(z, (2, 0, 1)) * 0.25) - F.reshape(v, (1, 33, 1)),
                 w=F.transpose(F.broadcast_to(v, (7, 33)) * y) + x)


def _matmul(m, k, n, ta, tb):
    b = G(f"mm{m}x{k}x{n}{'T' if ta else 'N'}{'T' if tb else 'N'}/")
    a = b.input(b.rng.standard_normal((k, m) if ta else (m, k)), "a")
    w = b.param(b.rng.standard_normal((n, k) if tb else (k, n)), "w")
    return b.out(c=F.matmul(a, w, transpose_a=ta, transpose_b=tb))


def _mlp(batch=64, din=20, hidden=32, classes=10, prefix="mlp/"):
    """x -> relu(x W1 + b1) -> W2 + b2 -> softmax cross-entropy; loss and gradients."""
    b = G(prefix)
    x = b.input(b.rng.standard_normal((batch, din)), "x")
    labels = b.leaf("target", b.rng.integers(0, classes, batch), "y", dtype="int32")
    W1 = b.param(b.rng.standard_normal((din, hidden)) / np.sqrt(din), "W1")
    b1 = b.param(b.rng.standard_normal(hidden) * 0.1, "b1")
    W2 = b.param(b.rng.standard_normal((hidden, classes)) / np.sqrt(hidden), "W2")
    b2 = b.param(b.rng.standard_normal(classes) * 0.1, "b2")
    h = F.relu(x @ W1 + b1)
    logits = h @ W2 + b2
    e = F.exp(logits - F.max(logits, axis=-1, keepdims=True))
    p = e / F.sum(e, axis=-1, keepdims=True)
    ce = -F.sum(F.one_hot(labels, classes) * F.log(F.clip(p, 1e-7, 1.0)), axis=-1)
    b.out(loss=F.mean(ce), probs=p)
    b.g = autodiff(b.g, loss="loss")
    return b


@pytest.fixture(scope="module")
def fused():
    """All graphs of (b) and the MLP of (c) in one module, run on both backends."""
    built = {}
    for s in SOFTMAX_SHAPES:
        built[f"softmax_{s[0]}x{s[1]}"] = _softmax(s)
    built["prologue"] = _prologue_reductions()
    built["epilogue"] = _epilogue_reductions()
    built["layout"] = _layout_loops()
    for m, k, n, ta, tb in MM_CASES:
        built[f"mm_{m}x{k}x{n}_{'T' if ta else 'N'}{'T' if tb else 'N'}"] = _matmul(m, k, n, ta, tb)
    built["mlp"] = _mlp()
    graphs = {e: b.g for e, b in built.items()}
    values = {k: v for b in built.values() for k, v in b.values.items()}
    state = _state(graphs.values(), values)
    exe = NativeExecutable(graphs, state)
    ref = ReferenceExecutable(graphs, state)
    results = {}
    for e, g in graphs.items():
        feeds = _feeds(g, values)
        results[e] = (exe.run(e, feeds), ref.run(e, feeds))
    return exe, built, results


def _compare(results, entry, rtol=2e-6, atol=1e-6):
    got, want = results[entry]
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=f"{entry}: {k}")


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_softmax(fused, shape):
    exe, built, results = fused
    e = f"softmax_{shape[0]}x{shape[1]}"
    fg = exe.entries[e].fused
    # max / x - max and exp / sum / divide: exp is read by the sum and the divide,
    # so it is materialized once (fuse never computes a value twice); the
    # subtraction is fused into the exp loop
    ops = [v for v, n in fg.graph.nodes.items() if not n.is_leaf]
    assert len(fg.kernels) < len(ops), str(fg)
    assert any({"sub", "exp"} <= set(_ops(fg, k)) for k in fg.kernels), str(fg)
    # relative: the small probabilities of a 1000-wide row are as exact as the large
    _compare(results, e, rtol=2e-6, atol=0)
    p = results[e][0]["p"]
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=2e-6)
    x = built[e].values[built[e].prefix + "x"].astype(np.float64)
    t = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(p, t / t.sum(-1, keepdims=True), rtol=2e-6)


def test_reduction_over_axis0_with_fused_prologue(fused):
    exe, built, results = fused
    fg = exe.entries["prologue"].fused
    reduce_kernels = _kernels(fg, "reduce")
    assert len(reduce_kernels) == 3, str(fg)
    for k in reduce_kernels:
        ops = _ops(fg, k)
        red = fg.graph.nodes[k.reduce]
        assert red.params["axes"][0] == 0                 # not a suffix reduction
        assert len(ops) >= 3 and set(ops) & {"exp", "tanh", "sigmoid"}, ops
        assert k.prologue, f"{k.name}: no prologue"
    assert not _kernels(fg, "loop"), str(fg)
    # sums: the error scales with the sum of |terms| (33 of them, up to ~10 each)
    _compare(results, "prologue", rtol=2e-6, atol=2e-5)


def test_suffix_reductions_with_fused_epilogue(fused):
    exe, built, results = fused
    fg = exe.entries["epilogue"].fused
    epilogue_ops = set()
    for k in _kernels(fg, "reduce"):
        epi = [fg.graph.nodes[m].op for m in k.members
               if m not in k.prologue and m != k.reduce]
        epilogue_ops.update(epi)
    assert {"log", "sqrt"} <= epilogue_ops, str(fg)
    # the log-norm: x*x, sum, log, *0.5, +c: one kernel
    assert any({"mul", "reduce_sum", "log", "add"} <= set(_ops(fg, k)) for k in fg.kernels), str(fg)
    _compare(results, "epilogue", rtol=2e-6, atol=1e-6)


def test_transpose_and_broadcast_inside_loop_kernels(fused):
    exe, built, results = fused
    fg = exe.entries["layout"].fused
    loops = _kernels(fg, "loop")
    ops = [op for k in loops for op in _ops(fg, k)]
    assert "transpose" in ops and "broadcast_to" in ops, str(fg)
    # each output is one loop nest: the layout ops are read in place, not materialized
    for name in ("t", "u", "w"):
        v = fg.graph.outputs[name]
        (k,) = [k for k in _kernels(fg) if v in k.members and k.kind != "rows"]
        assert k.kind == "loop" and {"transpose"} <= set(_ops(fg, k)), k.describe(fg.graph)
    # w's transpose reads a (7, 33) product inside a (33, 7) loop: that product is
    # a kernel of its own (fuse joins producers of the group's shape only)
    assert len(_kernels(fg, "loop")) <= 4, str(fg)
    _compare(results, "layout", rtol=3e-6, atol=1e-6)


@pytest.mark.parametrize("m,k,n,ta,tb", MM_CASES,
                         ids=[f"{m}x{k}x{n}-{'T' if ta else 'N'}{'T' if tb else 'N'}"
                              for m, k, n, ta, tb in MM_CASES])
def test_matmul_forms_and_sizes(fused, m, k, n, ta, tb):
    exe, built, results = fused
    e = f"mm_{m}x{k}x{n}_{'T' if ta else 'N'}{'T' if tb else 'N'}"
    b = built[e]
    a = b.values[b.prefix + "a"].astype(np.float64)
    w = b.values[b.prefix + "w"].astype(np.float64)
    a, w = (a.T if ta else a), (w.T if tb else w)
    got = results[e][0]["c"]
    assert got.shape == (m, n) and got.dtype == np.float32
    # float32 sums of k products: within a few ulp of the sum of their magnitudes
    # (measured: at most 3.0e-7 of it)
    mag = np.abs(a) @ np.abs(w)
    err = np.abs(got - a @ w)
    assert np.all(err <= 1e-6 * mag + 1e-30), float(np.max(err / (mag + 1e-30)))
    _compare(results, e, rtol=2e-6, atol=1e-6 * float(mag.max()))


# ------------------------------------------------------------------ (c) fusion, memory
def test_mlp_forward_backward_fuses_and_matches(fused):
    exe, built, results = fused
    entry = exe.entries["mlp"]
    fg, plan = entry.fused, entry.plan
    g = fg.graph
    # the pipeline the executable ran, by hand
    assert len(fuse(simplify(built["mlp"].g)).kernels) == len(fg.kernels)
    ops = [v for v, n in g.nodes.items() if not n.is_leaf]
    assert len(fg.kernels) < len(ops), f"{len(fg.kernels)} kernels for {len(ops)} ops"
    # a real saving: kernels fuse several ops on average
    assert len(fg.kernels) <= 0.6 * len(ops), f"{len(fg.kernels)} kernels for {len(ops)} ops"
    assert sum(k.kind == "matmul" for k in fg.kernels) == 5      # 2 forward + 3 backward
    got, want = results["mlp"]
    assert set(got) == {"loss", "probs", *(GRAD_PREFIX + "mlp/" + p for p in ("W1", "b1", "W2", "b2"))}
    for k in want:
        scale = max(1.0, float(np.abs(want[k]).max()))
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6 * scale, err_msg=k)


def test_memory_plan_reuses_the_work_arena(fused):
    exe, built, results = fused
    from kcompile.codegen.module import scratch_bytes
    entry = exe.entries["mlp"]
    fg, plan = entry.fused, entry.plan
    g = fg.graph
    # plan_memory on the fused graph, with the scratch sizes of one thread
    alone = plan_memory(fg, exe.state.offsets, lambda k: scratch_bytes(g, k))
    assert alone.work_bytes <= plan.work_bytes
    align = lambda n: (max(n, 4) + 63) // 64 * 64   # noqa: E731
    work = {v: loc for v, loc in plan.locations.items() if loc.region == "work"}
    # every buffer once (a reshape is a view of its operand's buffer: not counted)
    buffers = [v for v in work if g.nodes[v].op != "reshape"]
    intermediate = [v for v in buffers if not g.nodes[v].is_leaf]
    total = sum(align(g.type(v).nbytes) for v in buffers) + \
        sum(align(scratch_bytes(g, k)) for k in fg.kernels if scratch_bytes(g, k))
    assert len(intermediate) >= 10
    assert plan.work_bytes < total, (plan.work_bytes, total)

    # and no two buffers live at the same time share a byte
    live = []
    for r, (s, e) in plan.lifetimes.items():
        loc = plan.locations[r]
        assert loc.region == "work"
        live.append((s, e, loc.offset, loc.offset + g.type(r).nbytes, f"%{r}"))
    for n, k in enumerate(fg.kernels):
        nbytes = scratch_bytes(g, k)
        if nbytes:
            off = plan.scratch[k.name]
            live.append((n, n, off, off + nbytes, f"scratch of {k.name}"))
    for i, (s1, e1, lo1, hi1, w1) in enumerate(live):
        for s2, e2, lo2, hi2, w2 in live[i + 1:]:
            if s1 <= e2 and s2 <= e1:
                assert hi1 <= lo2 or hi2 <= lo1, f"{w1} [{lo1},{hi1}) and {w2} [{lo2},{hi2}) overlap"
    assert max(hi for _, _, _, hi, _ in live) <= plan.work_bytes


# ------------------------------------------------------------------ (d) in-place updates
def _train_graph():
    """An MLP step with momentum SGD: params and velocities are updated in place."""
    b = _mlp(batch=33, din=7, hidden=16, classes=5, prefix="train/")
    g = b.g
    lr = g.leaf("state", TensorType(()), "train/lr")
    b.values["train/lr"] = np.float32(0.1)
    vel = {}
    for v in g.leaves("param"):
        name = g.nodes[v].name
        vel[name] = g.leaf("state", g.type(v), name + "/velocity")
        b.values[name + "/velocity"] = (b.rng.standard_normal(g.type(v).shape) * 0.01
                                        ).astype(np.float32)

    # Two state updates that must NOT be written in place: S is read transposed by
    # the kernel computing its new value, and xmean comes out of a reduction.
    S = g.leaf("state", TensorType((5, 5)), "train/S")
    b.values["train/S"] = b.rng.standard_normal((5, 5)).astype(np.float32)
    xmean = g.leaf("state", TensorType((7,)), "train/xmean")
    b.values["train/xmean"] = np.zeros(7, np.float32)

    def momentum(g, pairs):     # g: optimizer_step's copy (same value ids)
        new = {}
        for p, grad in pairs:
            v = Sym(g, vel[g.nodes[p.id].name])
            v_new = v * 0.9 - Sym(g, lr) * grad
            new[v] = v_new
            new[p] = p + v_new
        s = Sym(g, S)
        new[s] = F.transpose(s) * 0.5 + s * 0.25 + 1.0
        x = Sym(g, g.leaf_by_name("train/x"))
        new[Sym(g, xmean)] = F.mean(x, axis=0) * 0.5 + F.max(x, axis=0) * 0.5
        return new

    b.g = optimizer_step(g, momentum)
    return b


def test_in_place_update_matches_reference_after_3_steps():
    b = _train_graph()
    g = b.g
    assert len(g.updates) == 10
    native_state = _state([g], b.values)
    ref_state = _state([g], b.values)
    exe = NativeExecutable({"train": g}, native_state)
    ref = ReferenceExecutable({"train": g}, ref_state)

    # at least the velocities and params computed elementwise are written in place
    plan = exe.entries["train"].plan
    sg = exe.entries["train"].fused.graph
    in_place = [leaf for leaf, upd in sg.updates.items()
                if plan.locations[upd] == plan.locations[leaf]]
    assert in_place, "no update was written in place"
    names = {sg.nodes[leaf].name for leaf in in_place}
    assert {"train/W1", "train/W1/velocity"} <= names, names
    assert "train/S" not in names      # reading S transposed while writing it would race
    assert sum(1 for leaf in sg.updates if leaf not in in_place) >= 1

    for step in range(3):
        feeds = {"train/x": b.rng.standard_normal((33, 7)).astype(np.float32),
                 "train/y": b.rng.integers(0, 5, 33).astype(np.int32)}
        got = exe.run("train", feeds)
        want = ref.run("train", feeds)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5, err_msg=f"step {step}")
        for name in ref_state.views:
            np.testing.assert_allclose(native_state[name], ref_state[name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} after step {step + 1}")
    # the state really moved
    for name in ref_state.views:
        if name != "train/lr":
            assert not np.array_equal(native_state[name], b.values[name]), name
    np.testing.assert_array_equal(native_state["train/lr"], np.float32(0.1))


# ------------------------------------------------- backward GEMM epilogues (A B^T)
def _relu_backward(m, k, n, keep_product):
    """dX = relu'(z) * (dZ W^T): the derivative runs in the product's epilogue, on
    the dot-product path (k >= 64) or on the GEMM with B transposed (k < 64)."""
    b = G(f"bwd{m}x{k}x{n}{'p' if keep_product else ''}/")
    dz = b.input(b.rng.standard_normal((m, k)), "dz")
    w = b.param(b.rng.standard_normal((n, k)), "w")
    z = b.input(b.rng.standard_normal((m, n)), "z")
    prod = F.matmul(dz, w, transpose_b=True)
    outs = {"dx": F.select(F.greater(z, 0.0), prod, 0.0) * 0.5}
    if keep_product:
        outs["prod"] = prod
    return b.out(**outs)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_backward_products_run_the_activation_derivative_as_epilogue(nthreads):
    cases = [(33, 255, 7, False), (255, 64, 33, False), (7, 1000, 255, False),
             (33, 7, 255, False), (17, 255, 40, True)]
    built = {f"e{i}": _relu_backward(*case) for i, case in enumerate(cases)}
    graphs = {e: b.g for e, b in built.items()}
    values = {k: v for b in built.values() for k, v in b.values.items()}
    state = _state(graphs.values(), values)
    exe = NativeExecutable(graphs, state, nthreads=nthreads, use_cache=False)
    ref = ReferenceExecutable(graphs, state)
    for e, g in graphs.items():
        fg = exe.entries[e].fused
        selects = [k for k in fg.kernels if "select" in _ops(fg, k)]
        assert len(selects) == 1 and selects[0].kind == "matmul", str(fg)
        got, want = exe.run(e, _feeds(g, values)), ref.run(e, _feeds(g, values))
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=2e-5,
                                       atol=2e-5 * np.abs(want[name]).max(), err_msg=f"{e} {name}")
