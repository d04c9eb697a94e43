"""Rows kernels: merge_rows (ir/passes/fuse_rows.py) and their lowering (codegen/lower/rows.py).

(1) softmax + cross-entropy models (categorical on probabilities, categorical from
    logits, sparse) trained natively match the reference interpreter for class
    counts W in {1, 7, 10, 16, 17, 33, 1000} (W <= 16: rows unrolled straight-line;
    17+: a loop over the row), batches of 1, 7 and 33 rows, 1 and 2 threads:
    per-step losses and metrics, evaluation, predictions and the updated weights;
(2) 3-D logits (batch, time, classes): rows over (batch, time), through a Dense on
    a (B, T, F) input and through a graph built with ir.builder;
(3) the seed model's train step (784-32-10, RMSprop, batch 32) has exactly one rows
    kernel, holding the softmax, its cross-entropy and the logits' gradient, and no
    gradient of the softmax's max shift (stop_gradient: no `equal` against a max);
(4) the fused kernel list is a valid schedule (inputs written before they are read,
    every op in a kernel, rows stages reading only earlier stages) for an MLP, an
    LSTM model, a BatchNormalization model and a two-branch functional model;
(5) groups of row kernels that interleave through a matmul (merged by rows alone
    they would form a cycle; also a softmax layer feeding a softmax layer): the
    schedule stays acyclic and correct; and reads of a per-row value across rows
    (square shapes, where (n,) fits the row axis too) are never merged;
(6) two threads: bitwise repeatable; equal to one thread within float32 rounding.
"""
from __future__ import annotations

import importlib.util
import itertools
import pathlib
import zlib

import networkx as nx
import numpy as np
import pytest

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.passes import autodiff
from kcompile.ir.passes.fuse import fuse
from kcompile import Model, layers, losses, models, optimizers
from kcompile.inspect import Session
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable

try:
    from tests.model_checks import G, graph_feeds, graph_rng as _rng, graph_state
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    from model_checks import G, graph_feeds, graph_rng as _rng, graph_state

ROOT = pathlib.Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-5, 1e-6


# ------------------------------------------------------------------ schedule checks
def _inlined_constant(g, v) -> bool:
    n = g.nodes[v]
    return n.is_leaf and n.role == "constant" and n.type.size == 1


def _per_row(g, v, rows) -> bool:
    s = g.type(v).shape
    return s == tuple(rows) or s == tuple(rows) + (1,)


def check_rows_kernel(g, k, desc):
    """A rows kernel: two or more elementwise stages over its rows, one a reduction
    or all of them loops (an elementwise group); a stage reads values of earlier
    stages only (stored, or per-row registers)."""
    rows = tuple(k.shape)
    assert len(k.stages) >= 2, f"{desc}: {len(k.stages)} stage"
    assert any(st.kind == "reduce" for st in k.stages) or \
        all(st.kind == "loop" for st in k.stages), \
        f"{desc}: no reduction stage, and not an elementwise group"
    stage_of = {}
    for s, st in enumerate(k.stages):
        assert st.kind in ("loop", "reduce"), f"{desc}: a {st.kind} stage"
        if st.kind == "reduce":
            src = g.nodes[st.reduce].inputs[0]
            assert g.type(src).shape[:-1] == rows, f"{desc}: {st.name} reduces another space"
        else:
            shape = tuple(st.shape)
            assert shape in (rows, rows + (1,)) or shape[:-1] == rows, f"{desc}: {st.name} {shape}"
        for m in st.members:
            stage_of.setdefault(m, s)
    assert set(stage_of) | set(k.views) == set(k.members), desc
    stored = set(k.outputs)
    for s, st in enumerate(k.stages):
        for m in st.members:
            for i in g.nodes[m].inputs:
                if i in st.members:
                    continue
                src = g.nodes[i].inputs[0] if i in k.views else i
                if src not in stage_of:
                    continue
                assert stage_of[src] < s, \
                    f"{desc}: stage {s} ({st.name}) reads %{src} of stage {stage_of[src]}"
                assert src in stored or _per_row(g, src, rows), \
                    f"{desc}: %{src} is read by a later stage but neither stored nor per-row"


def check_schedule(fg, where=""):
    """Every kernel reads leaves or values written (or viewed) by earlier kernels;
    every op of the graph is computed by some kernel; outputs and updates are written."""
    g = fg.graph
    ops = {v for v, n in g.nodes.items() if not n.is_leaf}
    avail = {v for v, n in g.nodes.items() if n.is_leaf}
    covered = set()
    names = [k.name for k in fg.kernels]
    assert len(set(names)) == len(names), f"{where}: duplicate kernel names {names}"
    for k in fg.kernels:
        desc = f"{where}: {k.describe(g)}"
        members = set(k.members)
        assert members, desc
        assert set(k.outputs) <= members, f"{desc}: writes values it does not compute"
        if k.kind == "view":
            (v,) = k.members
            assert g.nodes[v].op == "reshape", desc
            (src,) = g.nodes[v].inputs
            assert src in avail, f"{desc}: views %{src} before any kernel writes it"
            avail.add(v)
            covered.add(v)
            continue
        for i in k.inputs:
            assert i in avail, f"{desc}: reads %{i} before any kernel writes it"
        pos = {m: j for j, m in enumerate(k.members)}
        for m in k.members:
            for i in g.nodes[m].inputs:
                if i in members:
                    assert pos[i] < pos[m], f"{desc}: %{m} computed before its operand %{i}"
                else:
                    assert i in k.inputs or (_inlined_constant(g, i) and k.kind in
                                             ("loop", "reduce", "rows", "group")), \
                        f"{desc}: %{m} reads %{i}, which is not an input of the kernel"
        if k.kind == "rows":
            check_rows_kernel(g, k, desc)
        avail |= set(k.outputs)
        covered |= members
    assert covered == ops, f"{where}: ops in no kernel: {sorted(ops - covered)}"
    for name, v in g.outputs.items():
        assert v in avail, f"{where}: output {name} (%{v}) is never written"
    for leaf, v in g.updates.items():
        assert v in avail, f"{where}: the update of {g.nodes[leaf].name} (%{v}) is never written"


def _rows(fg):
    return [k for k in fg.kernels if k.kind == "rows"]


# ------------------------------------------------------------------ (1) models, native vs reference
WS = [1, 7, 10, 16, 17, 33, 1000]
LOSSES = ["categorical", "logits", "sparse"]
BATCHES = [7, 1, 33]
# Every W with every loss; each W sees every batch size and both thread counts.
CASES = [(W, loss, BATCHES[(wi + li) % 3], 1 + (3 * wi + li) % 2)
         for (wi, W), (li, loss) in itertools.product(enumerate(WS), enumerate(LOSSES))]
FEATURES = 6


def _classifier(W, loss):
    linear = loss == "logits"
    return models.Sequential([layers.Dense(5, activation="tanh", input_shape=(FEATURES,)),
                              layers.Dense(W, activation=None if linear else "softmax")])


def _loss(loss):
    return {"categorical": "categorical_crossentropy",
            "logits": losses.CategoricalCrossentropy(from_logits=True),
            "sparse": "sparse_categorical_crossentropy"}[loss]


def _seeded(model, seed):
    r = np.random.default_rng(seed)
    return [(r.uniform(-1, 1, w.shape) * (1.0 if w.ndim == 2 else 0.1)).astype(np.float32)
            for w in model.get_weights()]


def _twins(build, compile_kw, seed, nthreads):
    native, ref = build(), build()
    init = _seeded(native, seed)
    native.set_weights(init)
    ref.set_weights(init)
    native.compile(backend="native", nthreads=nthreads, **compile_kw())
    ref.compile(backend="reference", **compile_kw())
    return native, ref, init


def _close(got, want, what, rtol=RTOL, atol=ATOL):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: {got.shape} vs {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("W,loss,batch,nthreads", CASES,
                         ids=[f"W{W}-{loss}-b{b}-t{t}" for W, loss, b, t in CASES])
def test_softmax_crossentropy_training_native_vs_reference(W, loss, batch, nthreads):
    name = f"W{W}-{loss}-b{batch}"
    rng = _rng(name)
    native, ref, init = _twins(lambda: _classifier(W, loss),
                               lambda: dict(optimizer=optimizers.SGD(0.5), loss=_loss(loss),
                                            metrics=["accuracy"]),
                               seed=zlib.crc32(name.encode()), nthreads=nthreads)

    # The compiled train step really runs a rows kernel over the batch.
    doc = native.compiled_graph("train_step", "fused", batch_size=batch).to_dict()
    assert [k["shape"] for k in doc["kernels"] if k["kind"] == "rows"].count([batch]) >= 1, \
        [(k["name"], k["kind"], k["shape"]) for k in doc["kernels"]]

    def batch_data():
        x = (rng.standard_normal((batch, FEATURES)) * 2.0).astype(np.float32)
        lab = rng.integers(0, W, batch)
        y = lab.astype(np.int32) if loss == "sparse" else np.eye(W, dtype=np.float32)[lab]
        return x, y

    for step in range(3):
        x, y = batch_data()
        # batches of 7: per-sample weights too (a per-row input of the rows kernel)
        kw = {"sample_weight": rng.random(batch).astype(np.float32)} if batch == 7 else {}
        got = native.train_on_batch(x, y, **kw)
        want = ref.train_on_batch(x, y, **kw)
        _close(got, want, f"{name}: [loss, accuracy] of step {step}")
        assert np.isfinite(got[0]) and got[0] >= 0.0
    for i, (a, b) in enumerate(zip(native.get_weights(), ref.get_weights())):
        _close(a, b, f"{name}: weight {i} after 3 steps")
    # the output layer's weights moved (W = 1: a softmax over one class has no gradient)
    if W > 1:
        assert not np.array_equal(native.get_weights()[2], init[2])
    x, y = batch_data()
    _close(native.test_on_batch(x, y), ref.test_on_batch(x, y), f"{name}: evaluation")
    p_native = native.predict(x, batch_size=batch, verbose=0)
    _close(p_native, ref.predict(x, batch_size=batch, verbose=0), f"{name}: predictions")
    if loss != "logits":
        np.testing.assert_allclose(p_native.sum(-1), 1.0, rtol=2e-6)


# ------------------------------------------------------------------ (2) 3-D logits
@pytest.mark.parametrize("B,T,C,loss,nthreads", [(3, 4, 5, "categorical", 2),
                                                 (2, 5, 40, "sparse", 1),
                                                 (4, 3, 17, "logits", 2)])
def test_time_distributed_softmax_native_vs_reference(B, T, C, loss, nthreads):
    name = f"3d-{B}x{T}x{C}-{loss}"
    rng = _rng(name)

    def build():
        return models.Sequential([
            layers.Dense(C, activation=None if loss == "logits" else "softmax",
                         input_shape=(T, 3))])
    native, ref, init = _twins(build, lambda: dict(optimizer=optimizers.SGD(0.5),
                                                   loss=_loss(loss), metrics=["accuracy"]),
                               seed=zlib.crc32(name.encode()), nthreads=nthreads)
    fg = Session(native, B, nthreads).fused("train_step")
    check_schedule(fg, name)
    assert any(tuple(k.shape) == (B, T) for k in _rows(fg)), str(fg)
    for step in range(3):
        x = rng.standard_normal((B, T, 3)).astype(np.float32)
        lab = rng.integers(0, C, (B, T))
        y = lab.astype(np.int32) if loss == "sparse" else np.eye(C, dtype=np.float32)[lab]
        _close(native.train_on_batch(x, y), ref.train_on_batch(x, y), f"{name}: step {step}")
    for i, (a, b) in enumerate(zip(native.get_weights(), ref.get_weights())):
        _close(a, b, f"{name}: weight {i}")
    p = native.predict(x, batch_size=B, verbose=0)
    assert p.shape == (B, T, C)
    _close(p, ref.predict(x, batch_size=B, verbose=0), f"{name}: predictions")


# ------------------------------------------------------------------ graphs built with ir.builder
def _softmax_ce_3d(B, T, C, prefix):
    """log-softmax cross-entropy over the last axis of (B, T, C) logits x @ w; gradients."""
    b = G(prefix)
    x = b.leaf("input", b.rng.standard_normal((B, T, 4)), "x")
    lab = b.leaf("target", b.rng.integers(0, C, (B, T)), "y", dtype="int32")
    w = b.leaf("param", b.rng.standard_normal((4, C)), "w")
    logits = F.reshape(F.reshape(x, (B * T, 4)) @ w, (B, T, C)) * 2.0
    m = F.stop_gradient(F.max(logits, axis=-1, keepdims=True))
    s = logits - m
    logp = s - F.log(F.sum(F.exp(s), axis=-1, keepdims=True))
    ce = -F.sum(F.one_hot(lab, C) * logp, axis=-1)                      # (B, T)
    b.out(loss=F.mean(ce), ce=ce, probs=F.exp(logp))
    b.g = autodiff(b.g, loss="loss")
    return b


def _interleaved(B, W, prefix):
    """Two groups of row kernels over the same rows that interleave:

        A1  m = max(x)                      group A
        M   u = (x - m) @ wm                a matmul reading A1 (no rows stage)
        B1  n = sum(u * u)                  reads A1 through M: cannot join A
        A2  s = sum(exp(x - m) * sqrt(n+1)) reads A1 and B1
        B2  q = max(u - n)
        A3  my = max(y * q)                 reads B2 ...
            t = sum(exp(y - my) * e / s)    ... and A2

    Merging every row stage by rows alone puts A1 and A2 in one kernel that M must
    follow and precede: a cycle. With the gradient (wm is a param) the backward
    stages interleave the same way.
    """
    b = G(prefix)
    x = b.leaf("input", b.rng.standard_normal((B, W)) * 2.0, "x")
    y = b.leaf("input", b.rng.standard_normal((B, W)), "y")
    wm = b.leaf("param", b.rng.standard_normal((W, W)) / np.sqrt(W), "wm")
    m = F.max(x, axis=-1, keepdims=True)
    u = F.matmul(x - m, wm)
    n = F.sum(u * u, axis=-1, keepdims=True)
    e = F.exp(x - m)
    s = F.sum(e * F.sqrt(n + 1.0), axis=-1, keepdims=True)
    p = e / s
    q = F.max(u - n, axis=-1, keepdims=True)
    my = F.max(y * q, axis=-1, keepdims=True)
    t = F.sum(F.exp(y - my) * p, axis=-1)
    lse = F.reshape(F.log(s) + m, (B,))
    b.out(p=p, t=t, lse=lse, loss=F.mean(t + lse))
    b.g = autodiff(b.g, loss="loss")
    return b


def _two_chains(B, W, prefix):
    """Two softmax cross-entropies over the same rows whose stages alternate in
    program order, the second one's logits read through a matmul of the first's
    probabilities (so the second cannot run in the first's kernel before that matmul)."""
    b = G(prefix)
    x = b.leaf("input", b.rng.standard_normal((B, W)) * 3.0, "x")
    lab = b.leaf("target", b.rng.integers(0, W, B), "y", dtype="int32")
    v = b.leaf("param", b.rng.standard_normal((W, W)) / np.sqrt(W), "v")

    def log_softmax(z):
        mz = F.stop_gradient(F.max(z, axis=-1, keepdims=True))
        sz = z - mz
        return sz - F.log(F.sum(F.exp(sz), axis=-1, keepdims=True))
    la = log_softmax(x * 1.0)
    z2 = F.exp(la) @ v + x
    lb = log_softmax(z2)
    oh = F.one_hot(lab, W)
    ce = -F.sum(oh * la, axis=-1) - F.sum(oh * lb, axis=-1) + F.max(lb - la, axis=-1)
    b.out(loss=F.mean(ce), ce=ce)
    b.g = autodiff(b.g, loss="loss")
    return b


def _permuted_loops(n, prefix):
    """Loops of one (n, n) shape, several reading a value of another: an elementwise
    group. A later loop that transposes, slices or pads something computed from
    that value reads it at other indices, so it must not take the register of the
    element being computed (the go_backwards / mask-transpose case)."""
    b = G(prefix)
    x = b.leaf("input", b.rng.standard_normal((n, n)), "x")
    a = F.exp(x * 0.5)                       # read by three loops: materialized, a group seed
    c = F.tanh(a) * x
    d = F.sigmoid(a - x)
    t = F.transpose(F.not_equal(a, 1.0) * a)             # a at (j, i)
    s = F.pad(F.slice(a * 2.0, (1, 0), (n - 1, n)), (0, 0), (1, 0))   # a at (i + 1, j)
    return b.out(c=c + d, t=t + c, s=s * d)


def _misaligned(n, prefix):
    """Square (n, n) rows, so a per-row value of shape (n,) also fits the row axis:
    x + v and broadcast_to(v) read v[j] at column j, not the row's own v[i]; a
    (1, n) reshape of a per-row max lays it along a row. None of these reads may
    take the register of the row being computed."""
    b = G(prefix)
    x = b.leaf("input", b.rng.standard_normal((n, n)), "x")
    v = F.sum(x, axis=-1)                                   # (n,): one per row
    y = F.tanh(x + v)                                       # y[i, j] = tanh(x[i, j] + v[j])
    z = F.log(F.sum(F.exp(y), axis=-1))
    w = F.broadcast_to(v, (n, n)) * x                       # w[i, j] = v[j] x[i, j]
    k = F.max(x, axis=-1, keepdims=True)
    u = x * F.reshape(k, (1, n))                            # u[i, j] = x[i, j] k[j]
    r = F.sum(F.exp(F.tanh(w + u) - k), axis=-1, keepdims=True)
    b.out(z=z, r=r, v=v * 2.0)
    return b


BUILDER_GRAPHS = {
    "permuted_6": lambda: _permuted_loops(6, "permuted_6/"),
    "permuted_33": lambda: _permuted_loops(33, "permuted_33/"),
    "misaligned_5": lambda: _misaligned(5, "misaligned_5/"),
    "misaligned_20": lambda: _misaligned(20, "misaligned_20/"),
    "ce3d_small": lambda: _softmax_ce_3d(2, 3, 5, "ce3d_small/"),
    "ce3d_wide": lambda: _softmax_ce_3d(3, 2, 40, "ce3d_wide/"),
    "inter_5x5": lambda: _interleaved(5, 5, "inter_5x5/"),       # B == W: (B,) and (W,) coincide
    "inter_6x19": lambda: _interleaved(6, 19, "inter_6x19/"),
    "inter_1x7": lambda: _interleaved(1, 7, "inter_1x7/"),
    "chains_7x10": lambda: _two_chains(7, 10, "chains_7x10/"),
    "chains_9x33": lambda: _two_chains(9, 33, "chains_9x33/"),
}


_state = graph_state
_feeds = graph_feeds


@pytest.fixture(scope="module")
def builder_runs():
    """All builder graphs in one module per thread count, run on both backends."""
    built = {e: f() for e, f in BUILDER_GRAPHS.items()}
    graphs = {e: b.g for e, b in built.items()}
    values = {k: v for b in built.values() for k, v in b.values.items()}
    want = {e: ReferenceExecutable({e: g}, _state([g], values)).run(e, _feeds(g, values))
            for e, g in graphs.items()}
    runs = {}
    for nthreads in (1, 2):
        exe = NativeExecutable(graphs, _state(graphs.values(), values), nthreads=nthreads)
        runs[nthreads] = (exe, {e: exe.run(e, _feeds(g, values)) for e, g in graphs.items()})
    return built, want, runs


def _compare_outputs(got, want, what):
    assert set(got) == set(want), what
    for k in want:
        scale = max(1.0, float(np.abs(want[k]).max()))
        _close(got[k], want[k], f"{what}: {k}", rtol=2e-5, atol=2e-6 * scale)


@pytest.mark.parametrize("entry", ["permuted_6", "permuted_33"])
def test_elementwise_groups_with_permuted_reads(builder_runs, entry):
    built, want, runs = builder_runs
    for nthreads, (exe, got) in runs.items():
        fg = exe.entries[entry].fused
        check_schedule(fg, entry)
        assert _rows(fg), str(fg)            # the same-index loops did merge
        _compare_outputs(got[entry], want[entry], f"{entry}, {nthreads} thread(s)")


@pytest.mark.parametrize("entry", ["ce3d_small", "ce3d_wide"])
def test_3d_logits_graph_native_vs_reference(builder_runs, entry):
    built, want, runs = builder_runs
    for nthreads, (exe, got) in runs.items():
        fg = exe.entries[entry].fused
        check_schedule(fg, entry)
        B, T = built[entry].values[built[entry].prefix + "y"].shape
        assert any(tuple(k.shape) == (B, T) for k in _rows(fg)), str(fg)
        _compare_outputs(got[entry], want[entry], f"{entry}, {nthreads} thread(s)")
    # the cross-entropy is right (not only equal to the interpreter's)
    ce = want[entry]["ce"]
    p = want[entry]["probs"]
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    lab = built[entry].values[built[entry].prefix + "y"]
    np.testing.assert_allclose(ce, -np.log(np.take_along_axis(p, lab[..., None], -1)[..., 0]),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("entry", ["misaligned_5", "misaligned_20"])
def test_reads_across_rows_are_not_merged(builder_runs, entry):
    built, want, runs = builder_runs
    for nthreads, (exe, got) in runs.items():
        fg = exe.entries[entry].fused
        g = fg.graph
        check_schedule(fg, entry)
        x_leaf = g.leaf_by_name(built[entry].prefix + "x")
        (v,) = [m for m, node in g.nodes.items()
                if node.op == "reduce_sum" and node.inputs == (x_leaf,)]
        n = g.type(v).shape[0]
        # the ops reading v (shape (n,)) into an (n, n) value: x + v, broadcast_to(v)
        misread = [m for m, node in g.nodes.items() if v in node.inputs and g.type(m).shape == (n, n)]
        assert len(misread) == 2, [g.nodes[m].op for m in misread]
        for k in _rows(fg):
            if v in k.members:
                assert not set(misread) & set(k.members), \
                    f"{entry}: a rows kernel reads %{v} across its rows: {k.describe(g)}"
        _compare_outputs(got[entry], want[entry], f"{entry}, {nthreads} thread(s)")


def _max_rows_where_fma_matters(n, W=5):
    """x (n, W) and p (W,) such that in every row the largest e = (x p)^2 - x rounds
    differently computed as fmul + fsub (two roundings) or as one FMA, with a clear
    gap to the second largest (no tie, no near tie)."""
    rng = np.random.default_rng(2024)
    p = rng.standard_normal(W).astype(np.float32)
    x = rng.standard_normal((4096, W)).astype(np.float32)
    c = x * p
    two = c * c - x
    one = (c.astype(np.float64) ** 2 - x).astype(np.float32)
    top = np.sort(two, -1)
    a = two.argmax(-1)
    r = np.arange(len(x))
    ok = (two[r, a] != one[r, a]) & (top[:, -1] - top[:, -2] > 0.1) & (one.argmax(-1) == a)
    assert ok.sum() >= n
    return x[ok][:n], p


def test_max_gradient_when_its_input_is_recomputed():
    """The VJP of reduce_max is mask = equal(e, max(e)): it needs e bit-identical where
    the max is taken and where the mask is formed. Here e = (x p)^2 - x is a cheap op
    chain that fuse() recomputes in each consumer; merge_rows puts the max and the mask
    count in one rows kernel (next to a tanh stage) and the mask in the gradient's
    reduction over the batch. Compiled with the `contract` fast-math flag, LLVM fuses
    (x p)^2 - x into one FMA in one of those places and not in the other (on an FMA
    host), so equal(e, max(e)) is false in every row and the gradient is silently 0.
    With merge_rows disabled the same graph compiles to a correct gradient.

    LIBRARY BUG (found by this test, not fixed here): this test fails on FMA hosts."""
    B, W = 17, 5
    xv, pv = _max_rows_where_fma_matters(B, W)
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((B, W)), "maxgrad/x"))
    p = Sym(g, g.leaf("param", TensorType((W,)), "maxgrad/p"))
    c = x * p
    f = F.max(c * c - x, axis=-1)
    g.outputs["j"] = F.max(F.tanh(c) * 1.5, axis=-1, keepdims=True).id
    g.outputs["loss"] = F.mean(f * f).id
    g = autodiff(g, loss="loss")
    values = {"maxgrad/x": xv, "maxgrad/p": pv}
    want = ReferenceExecutable({"e": g}, _state([g], values)).run("e", _feeds(g, values))
    # the reference is right: d/dp of mean(max_j((x p)^2 - x)^2), in float64
    x64, p64 = xv.astype(np.float64), pv.astype(np.float64)
    e = (x64 * p64) ** 2 - x64
    a = e.argmax(-1)
    exact = np.zeros(W)
    for r in range(B):
        exact[a[r]] += 2 * e[r, a[r]] / B * 2 * x64[r, a[r]] ** 2 * p64[a[r]]
    np.testing.assert_allclose(want["grad/maxgrad/p"], exact, rtol=1e-5)
    assert np.abs(exact).max() > 1.0
    for nthreads in (1, 2):
        exe = NativeExecutable({"e": g}, _state([g], values), nthreads=nthreads)
        check_schedule(exe.entries["e"].fused, "maxgrad")
        got = exe.run("e", _feeds(g, values))
        _close(got["loss"], want["loss"], f"max gradient, {nthreads} thread(s): loss",
               rtol=2e-5)
        _close(got["grad/maxgrad/p"], want["grad/maxgrad/p"],
               f"max gradient, {nthreads} thread(s): d loss / d p (the native gradient of "
               f"the max is dropped where the max's input is recomputed differently)",
               rtol=2e-5, atol=1e-5)


# ------------------------------------------------------------------ (3) the seed model's train step
def _quickstart():
    spec = importlib.util.spec_from_file_location("kc_quickstart", ROOT / "examples" / "quickstart.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seed_model_train_step_has_one_rows_kernel():
    model = _quickstart().build()          # 784-32-10, RMSprop, categorical_crossentropy, accuracy
    doc = model.compiled_graph("train_step", "fused", batch_size=32).to_dict()
    values = {v["id"]: v for v in doc["graph"]["values"]}
    kernels = doc["kernels"]
    rows = [k for k in kernels if k["kind"] == "rows"]
    assert len(rows) == 1, [(k["name"], k["kind"], k["shape"]) for k in kernels]
    (k,) = rows
    assert k["shape"] == [32]
    ops = [values[m]["op"] for m in k["members"]]
    assert {"reduce_max", "exp", "reduce_sum", "log"} <= set(ops), ops
    # The softmax's max, exp and log are nowhere else.
    for other in kernels:
        if other is not k:
            assert not {"reduce_max", "exp", "log"} & {values[m]["op"] for m in other["members"]}, \
                other["name"]
    # The gradient with respect to the logits is computed in it, and read from it by the
    # backward product (grad h = g W2^T), the kernel's gradient (h^T g, fused with the
    # RMSprop update) and the bias gradient (a sum over the batch).
    grads = [o for o in k["outputs"] if values[o]["shape"] == [32, 10]
             and "grad" in values[o]["scope"]]
    assert len(grads) == 1, [(o, values[o]["op"], values[o]["shape"], values[o]["scope"])
                             for o in k["outputs"]]
    (grad,) = grads
    readers = [r for r in kernels if grad in r["inputs"]]
    matmuls = [values[m]["attrs"] for r in readers if r["kind"] == "matmul"
               for m in r["members"] if values[m]["op"] == "matmul" and grad in values[m]["inputs"]]
    assert {(a["transpose_a"], a["transpose_b"]) for a in matmuls} == {(True, False), (False, True)}, \
        [r["name"] for r in readers]
    assert any(r["kind"] == "reduce" for r in readers), [r["name"] for r in readers]

    # No gradient of the max shift: the max is read only by stop_gradient, and the only
    # `equal` ops are the accuracy's (argmax == argmax), not a max's VJP mask.
    for stage in ("grad", "update", "optimized"):
        vals = {v["id"]: v for v in model.compiled_graph("train_step", stage).to_dict()["graph"]["values"]}
        users = {}
        for v in vals.values():
            for i in v["inputs"]:
                users.setdefault(i, []).append(v["op"])
        maxes = [v for v in vals.values() if v["op"] == "reduce_max"]
        assert len(maxes) == 1, stage
        assert users[maxes[0]["id"]] == ["stop_gradient"], (stage, users[maxes[0]["id"]])
        for v in vals.values():
            if v["op"] == "equal":
                assert [vals[i]["op"] for i in v["inputs"]] == ["argmax", "argmax"], (stage, v)

    # Without the accuracy metric there is no `equal` at all.
    bare = _quickstart().build()
    bare.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    for stage in ("grad", "update", "optimized", "fused"):
        ops = {v["op"] for v in bare.compiled_graph("train_step", stage).to_dict()["graph"]["values"]}
        assert "equal" not in ops and "reduce_max" in ops, (stage, sorted(ops))


# ------------------------------------------------------------------ (4) valid schedules
def _mlp():
    return _quickstart().build(), 16


def _lstm():
    m = models.Sequential([layers.Embedding(50, 8, input_length=6), layers.LSTM(7),
                           layers.Dense(4, activation="softmax")])
    m.build((None, 6))
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m, 5


def _batchnorm():
    m = models.Sequential([layers.Dense(12, input_shape=(9,)), layers.BatchNormalization(),
                           layers.Activation("relu"), layers.Dense(6, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    return m, 7


def _two_branch():
    inp = layers.Input(shape=(10,))
    a = layers.Dense(8, activation="relu")(inp)
    b = layers.Dense(5, activation="tanh")(inp)
    c = layers.Concatenate()([a, b])
    out = layers.Dense(3, activation="softmax")(c)
    m = Model(inp, out)
    m.compile(optimizer=optimizers.Adam(0.01), loss=losses.CategoricalCrossentropy(from_logits=False),
              metrics=["accuracy"])
    return m, 1


SCHEDULE_MODELS = {"mlp": _mlp, "lstm": _lstm, "batchnorm": _batchnorm, "two_branch": _two_branch}


@pytest.mark.parametrize("which", list(SCHEDULE_MODELS))
def test_fused_kernels_are_a_valid_schedule(which):
    model, batch = SCHEDULE_MODELS[which]()
    session = Session(model, batch, 1)
    for entry in ("train_step", "eval_step", "predict"):
        fg = session.fused(entry)
        check_schedule(fg, f"{which} {entry}")
        if entry == "train_step":
            # the softmax and its cross-entropy over the batch rows form a rows kernel
            assert any(tuple(k.shape) == (batch,) for k in _rows(fg)), str(fg)
        # fuse() on the same graph is deterministic
        assert str(fuse(session.optimized(entry))) == str(fg)


# ------------------------------------------------------------------ (5) interleaved groups
@pytest.mark.parametrize("entry", ["inter_5x5", "inter_6x19", "inter_1x7",
                                   "chains_7x10", "chains_9x33"])
def test_interleaved_row_groups_stay_acyclic_and_correct(builder_runs, entry):
    built, want, runs = builder_runs
    for nthreads, (exe, got) in runs.items():
        fg = exe.entries[entry].fused
        g = fg.graph
        check_schedule(fg, entry)
        rows = _rows(fg)
        assert len(rows) >= 2, str(fg)       # the groups were not (wrongly) merged into one
        # The kernel graph (a kernel -> the kernels reading what it writes) is acyclic and
        # the kernel order is one of its topological orders.
        writer = {}
        for k in fg.kernels:
            for o in k.outputs:
                writer[o] = k.name
            if k.kind == "view":
                writer[k.members[0]] = k.name
        dag = nx.DiGraph()
        dag.add_nodes_from(k.name for k in fg.kernels)
        for k in fg.kernels:
            reads = g.nodes[k.members[0]].inputs if k.kind == "view" else k.inputs
            dag.add_edges_from((writer[i], k.name) for i in reads if i in writer and writer[i] != k.name)
        assert nx.is_directed_acyclic_graph(dag)
        index = {k.name: n for n, k in enumerate(fg.kernels)}
        assert all(index[a] < index[b] for a, b in dag.edges), str(fg)
        if entry.startswith("inter"):
            # A1 (the max of x) runs before the matmul reading it, A2 (the sum with
            # sqrt(n + 1)) after it: they are not one kernel.
            def kernel_of(pred):
                (k,) = [k for k in fg.kernels if k.kind != "view" and
                        any(pred(g.nodes[m]) for m in k.members)]
                return index[k.name]
            x_leaf = g.leaf_by_name(built[entry].prefix + "x")
            a1 = kernel_of(lambda n: n.op == "reduce_max" and n.inputs == (x_leaf,))
            mm = kernel_of(lambda n: n.op == "matmul" and not n.params["transpose_a"]
                           and not n.params["transpose_b"])
            a2 = kernel_of(lambda n: n.op == "sqrt")
            assert a1 < mm < a2, str(fg)
        _compare_outputs(got[entry], want[entry], f"{entry}, {nthreads} thread(s)")
    # and the two thread counts agree
    _compare_outputs(runs[2][1][entry], runs[1][1][entry], f"{entry}: 2 threads vs 1")


def test_stacked_softmax_model_interleaves_row_groups():
    """Dense-softmax -> Dense-softmax: the first softmax's backward stages read the
    second's gradient through a matmul, so they cannot join its forward kernel."""
    def build():
        return models.Sequential([layers.Dense(8, activation="softmax", input_shape=(FEATURES,)),
                                  layers.Dense(5, activation="softmax")])
    native, ref, _ = _twins(build, lambda: dict(optimizer=optimizers.SGD(0.5),
                                                loss="categorical_crossentropy",
                                                metrics=["accuracy"]), seed=5, nthreads=2)
    fg = Session(native, 7, 2).fused("train_step")
    check_schedule(fg, "stacked softmax")
    g = fg.graph
    index = {k.name: n for n, k in enumerate(fg.kernels)}
    rows = _rows(fg)
    assert len(rows) >= 3, str(fg)
    # the hidden softmax's forward kernel, then the backward product dX = dZ W^T, then
    # a rows kernel after it (the hidden softmax's gradient)
    backward_mm = [k for k in fg.kernels if k.kind == "matmul" and
                   any(g.nodes[m].op == "matmul" and g.nodes[m].params["transpose_b"] for m in k.members)]
    assert backward_mm, str(fg)
    assert index[rows[0].name] < index[backward_mm[0].name] < index[rows[-1].name], str(fg)
    rng = _rng("stacked")
    for step in range(3):
        x = rng.standard_normal((7, FEATURES)).astype(np.float32)
        y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 7)]
        _close(native.train_on_batch(x, y), ref.train_on_batch(x, y), f"stacked: step {step}")
    for i, (a, b) in enumerate(zip(native.get_weights(), ref.get_weights())):
        _close(a, b, f"stacked: weight {i}")


# ------------------------------------------------------------------ (6) threads
def _two_heads():
    """One softmax head of 10 classes (unrolled rows) and one of 33 logits (looped rows)."""
    inp = layers.Input(shape=(FEATURES,))
    h = layers.Dense(8, activation="tanh")(inp)
    return Model(inp, [layers.Dense(10, activation="softmax")(h), layers.Dense(33)(h)])


def test_two_threads_bitwise_repeatable_and_close_to_one():
    rng = _rng("threads")
    xs = [(rng.standard_normal((64, FEATURES)) * 2).astype(np.float32) for _ in range(3)]
    ys = [[np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)],
           np.eye(33, dtype=np.float32)[rng.integers(0, 33, 64)]] for _ in range(3)]
    init = _seeded(_two_heads(), 6)
    results = {}
    for nthreads in (2, 1):
        model = _two_heads()
        model.compile(optimizer=optimizers.SGD(0.5),
                      loss=["categorical_crossentropy", losses.CategoricalCrossentropy(from_logits=True)],
                      metrics=["accuracy"], nthreads=nthreads)
        runs = []
        for _ in range(2 if nthreads == 2 else 1):
            model.set_weights(init)          # plain SGD: no optimizer state but the counter
            logs = [model.train_on_batch(x, y) for x, y in zip(xs, ys)]
            runs.append((np.array(logs), model.get_weights(),
                         model.predict(xs[0], batch_size=64, verbose=0)))
        results[nthreads] = runs
    (l1, w1, p1), (l2, w2, p2) = results[2]
    assert l1.shape == (3, 5)               # loss, two head losses, two accuracies
    np.testing.assert_array_equal(l1, l2)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)
    ((l0, w0, p0),) = results[1]
    _close(l1, l0, "2 threads vs 1: logs")
    for i, (a, b) in enumerate(zip(w1, w0)):
        _close(a, b, f"2 threads vs 1: weight {i}")
    for i, (a, b) in enumerate(zip(p1, p0)):
        _close(a, b, f"2 threads vs 1: predictions of head {i}")
    assert not np.array_equal(w1[2], init[2])
