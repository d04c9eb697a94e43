"""GEMM tilings (codegen/lower/gemm.py Tiling) and their tuning (codegen/tuning.py).

Every tiling the tuner may choose must compute what the reference interpreter
computes, bit for bit the same as every other tiling (the choice changes speed
only): plain products, A^T B, A B^T with panels of B^T packed from B, fused
epilogues with and without k-blocks, edge tiles in both directions, 1 and 2
threads. The tuning cache is keyed by the CPU: another CPU's choice is never read.
"""
import numpy as np
import pytest

from kcompile.codegen import cache, tuning
from kcompile.codegen.lower.gemm import KC_MAX, Tiling, default_tiling, vector_shape
from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State

W, VMAX = vector_shape()


def _tilings(M, N, K):
    """The tuner's candidates for 1 and 2 threads, and tilings that reach the other
    branches: short k-blocks, row blocks that do not divide the rows, odd tile rows,
    packed panels of B with and without k-blocks and row blocks."""
    out = []
    for t in [*tuning.candidates(M, N, K, 1), *tuning.candidates(M, N, K, 2),
              Tiling(5, VMAX, 64, "rows", 10), Tiling(7, max(1, VMAX - 1), 100, "cols", 21),
              Tiling(12, 1, KC_MAX, "rows", 24), Tiling(4, 2, 2 * K, "cols", 8),
              Tiling(5, VMAX, 64, "rows", 10, pack=True), Tiling(6, 2, 100, "cols", pack=True),
              Tiling(8, 3, 2 * K, "rows", pack=True)]:
        if t not in out:
            out.append(t)
    return out


# (M, N, K) with edge tiles: rows not a multiple of any tile height, columns past the
# last full panel ending in a partial vector, K past one k-block.
SHAPES = [(37, 5 * W + 3, 301), (70, 2 * W + 1, 29)]


def _product_graph(M, N, K, kind):
    g = Graph()
    rng = np.random.default_rng(M * N + K)
    if kind == "a_trans":
        a = Sym(g, g.leaf("input", TensorType((K, M)), "a"))
        b = Sym(g, g.leaf("input", TensorType((K, N)), "b"))
        g.outputs["c"] = F.matmul(a, b, transpose_a=True).id
    elif kind in ("b_trans", "b_trans_epilogue"):
        a = Sym(g, g.leaf("input", TensorType((M, K)), "a"))
        b = Sym(g, g.leaf("input", TensorType((N, K)), "b"))
        c = F.matmul(a, b, transpose_b=True)
        if kind == "b_trans_epilogue":      # a relu's derivative, as in a backward pass
            mask = Sym(g, g.leaf("input", TensorType((M, N)), "mask"))
            c = F.relu(mask) * c
        g.outputs["c"] = c.id
    else:
        a = Sym(g, g.leaf("input", TensorType((M, K)), "a"))
        b = Sym(g, g.leaf("input", TensorType((K, N)), "b"))
        if kind == "epilogue":      # bias + relu on the finished product, product not kept
            bias = Sym(g, g.leaf("input", TensorType((N,)), "bias"))
            g.outputs["c"] = F.relu(a @ b + bias).id
        else:
            g.outputs["c"] = (a @ b).id
    feeds = {g.nodes[v].name: rng.standard_normal(g.type(v).shape, dtype=np.float32)
             for v in g.leaves() if g.nodes[v].role == "input"}
    return g, feeds


def _run(g, feeds, nthreads, tiling):
    with tuning.forced(tiling):
        exe = NativeExecutable({"f": g}, State([]), use_cache=False, nthreads=nthreads)
        return exe.run("f", feeds)["c"]


@pytest.mark.parametrize("kind", ["plain", "a_trans", "b_trans", "epilogue"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_tiling_matches_the_reference_bit_for_bit_alike(shape, kind):
    M, N, K = shape
    g, feeds = _product_graph(M, N, K, kind)
    ref = ReferenceExecutable({"f": g}, State([])).run("f", feeds)["c"]
    first = None
    for nthreads in (1, 2):
        for t in _tilings(M, N, K):
            got = _run(g, feeds, nthreads, t)
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.sqrt(K),
                                       err_msg=f"{t} on {nthreads} threads")
            if first is None:
                first = got
            assert np.array_equal(got, first), f"{t} on {nthreads} threads differs in bits"


# A B^T on the GEMM (M >= 16 or K < 64), B^T packed panel by panel from B: whole
# W x W blocks transposed in registers, k and column remainders, a panel narrower
# than one vector, k-blocks; and as dot products of rows (few long rows: 9 x 70).
B_TRANS_SHAPES = [(70, 5 * W + 3, 301), (65, W - 3, 40), (64, 2 * W, 2 * W), (9, 3 * W + 5, 19),
                  (9, 3 * W + 5, 70)]


@pytest.mark.parametrize("kind", ["b_trans", "b_trans_epilogue"])
@pytest.mark.parametrize("shape", B_TRANS_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_b_transposed_on_the_gemm_matches_the_reference_for_every_tiling(shape, kind):
    test_every_tiling_matches_the_reference_bit_for_bit_alike(shape, kind)


@pytest.mark.parametrize("cpu,features", [("haswell", "+avx,+avx2,+fma,+sse4.2"), ("x86-64", "")],
                         ids=["8-wide", "4-wide"])
def test_b_transposed_in_narrower_vectors_matches_the_reference(cpu, features):
    """The in-register transpose for 8- and 4-float vectors (code for those CPUs runs
    here too): whole blocks, remainders in k and columns, k-blocks, 1 and 2 threads."""
    from kcompile.codegen.target import compiling_for
    with compiling_for(cpu, features):
        w = vector_shape()[0]
        for kind in ("b_trans", "b_trans_epilogue"):
            g, feeds = _product_graph(70, 5 * w + 3, 4 * w + 5, kind)
            ref = ReferenceExecutable({"f": g}, State([])).run("f", feeds)["c"]
            for t in (default_tiling(70, 5 * w + 3, 4 * w + 5), Tiling(6, 2, 2 * w, "rows", pack=True)):
                for nthreads in (1, 2):
                    np.testing.assert_allclose(_run(g, feeds, nthreads, t), ref, rtol=1e-4,
                                               atol=1e-3, err_msg=f"{t} on {nthreads} threads")


def test_candidates_start_with_the_constants_and_are_distinct():
    for M, N, K in [(128, 512, 784), (784, 512, 128), (1024, 10, 256), (33, 7, 5)]:
        for n in (1, 2):
            cands = tuning.candidates(M, N, K, n)
            assert cands[0] == default_tiling(M, N, K, n)
            assert len(set(cands)) == len(cands) >= 2
            assert all(t.mc % t.mr == 0 and t.split in ("rows", "cols") for t in cands)


def test_default_row_tiles_are_shared_evenly_between_two_threads():
    """Narrow products take taller tiles, but not so tall that two threads splitting the
    row tiles get unequal shares of rows (M=32, N=2W: 4 tiles of 8 rows, not 3 of 12)."""
    for M in (24, 32, 40, 50, 96, 784):
        for N in (W, 2 * W, 3 * W, 2 * W + 3, W - 3):
            t = default_tiling(M, N, 64, 2)
            assert t.mr * t.vectors(N, W) <= (24 if W == 16 else 12), (M, N, t)
            if t.split != "rows":       # threads split column panels
                continue
            tiles = [min(t.mr, M - i) for i in range(0, M, t.mr)]
            half = -(-len(tiles) // 2)
            first, second = sum(tiles[:half]), sum(tiles[half:])
            # As even as 6-row tiles would share them, within 10%.
            six = [min(6, M - i) for i in range(0, M, 6)]
            assert max(first, second) <= 1.1 * sum(six[:-(-len(six) // 2)]), (M, N, t)


def test_two_threads_split_the_way_that_shares_the_work_more_evenly():
    """Threads take column panels unless those split unevenly and row tiles split
    better (an LSTM(100): N=400 in 7 panels, N=100 in 64 + 36 columns): the busiest
    thread's part of the columns or rows, over an even half, for the split taken is
    never worse than the other's by more than 5%; products with many panels (W1, W2)
    keep the column split, where each thread reads only its part of B."""
    def busiest(n, block):
        blocks = [min(block, n - i) for i in range(0, n, block)]
        half = -(-len(blocks) // 2)
        return max(sum(blocks[:half]), sum(blocks[half:])) / (n / 2)
    for M in (1, 32, 64, 100, 128, 1024):
        for N in (W * VMAX * 8, 400, 100, 3 * W + 5):
            t = default_tiling(M, N, 128, 2)
            NR = W * t.vectors(N, W)
            if -(-N // NR) < 2:
                continue            # one panel: rows whatever their balance
            cols = busiest(N, NR)
            mr = default_tiling(M, N, 128, 1).mr if t.split == "cols" else t.mr
            rows = busiest(M, mr) if M > 1 else 2.0
            chosen, other = (cols, rows) if t.split == "cols" else (rows, cols)
            assert chosen <= other + 0.05 or (t.split == "cols" and rows > cols - 0.05), \
                (M, N, t, cols, rows)
    assert default_tiling(64, 400, 100, 2).split == "rows" if W * VMAX == 64 else True
    for M, N, K in ((128, 512, 784), (1024, 512, 784), (128, 256, 512), (1, 512, 784)):
        assert default_tiling(M, N, K, 2).split == "cols"


# ------------------------------------------------------------------ the tuning cache
SHAPE = (256, 256, 512, False, 2)      # over MIN_FLOP: tuned when enabled


@pytest.fixture
def tuning_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KCOMPILE_NO_CACHE", raising=False)
    monkeypatch.delenv(tuning.ENV, raising=False)
    monkeypatch.setattr(tuning, "_chosen", {})
    calls = []

    def fake_measure(winner):
        def measure(cands, *shape):
            calls.append(shape)
            return [1.0 if i != winner else 0.5 for i in range(len(cands))]
        monkeypatch.setattr(tuning, "measure", measure)
    return calls, fake_measure, monkeypatch


def test_a_tuned_choice_is_kept_and_read_back_without_measuring(tuning_cache):
    calls, fake_measure, _ = tuning_cache
    cands = tuning.candidates(*SHAPE[:3], SHAPE[4])
    fake_measure(2)
    assert tuning.gemm_tiling(*SHAPE) == cands[2]
    assert len(calls) == 1
    tuning._chosen.clear()          # a new process: only the disk cache remembers
    fake_measure(1)
    assert tuning.gemm_tiling(*SHAPE) == cands[2]
    assert len(calls) == 1


def test_another_cpu_does_not_read_this_cpus_choice(tuning_cache):
    calls, fake_measure, monkeypatch = tuning_cache
    cands = tuning.candidates(*SHAPE[:3], SHAPE[4])
    fake_measure(2)
    assert tuning.gemm_tiling(*SHAPE) == cands[2]
    tuning._chosen.clear()
    monkeypatch.setattr(tuning, "fingerprint", lambda: "x86_64-unknown-linux-gnu|znver3|+avx2")
    fake_measure(1)
    assert tuning.gemm_tiling(*SHAPE) == cands[1]
    assert len(calls) == 2


def test_ties_keep_the_constants(tuning_cache, monkeypatch):
    monkeypatch.setattr(tuning, "measure",
                        lambda cands, *s: [1.0] + [1.0 - tuning.TIE / 2] * (len(cands) - 1))
    assert tuning.gemm_tiling(*SHAPE) == default_tiling(*SHAPE[:3], SHAPE[4])


@pytest.mark.parametrize("env", [{tuning.ENV: "0"}, {"KCOMPILE_NO_CACHE": "1"}])
def test_disabled_tuning_uses_the_constants_without_measuring(tuning_cache, env):
    calls, fake_measure, monkeypatch = tuning_cache
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fake_measure(1)
    assert tuning.gemm_tiling(*SHAPE) == default_tiling(*SHAPE[:3], SHAPE[4])
    assert calls == [] and tuning.key_salt() == "tune=off"


def test_code_for_another_cpu_is_not_tuned_here(tuning_cache):
    """An ahead-of-time build for another CPU keeps the constants: its code cannot be
    timed on this machine."""
    from kcompile.codegen.target import compiling_for
    calls, fake_measure, _ = tuning_cache
    fake_measure(1)
    with compiling_for("x86-64", ""):
        assert tuning.gemm_tiling(*SHAPE) == default_tiling(*SHAPE[:3], SHAPE[4])
    assert calls == []


def test_small_products_are_not_tuned(tuning_cache):
    calls, fake_measure, _ = tuning_cache
    fake_measure(1)
    assert tuning.gemm_tiling(32, 64, 64, False, 2) == default_tiling(32, 64, 64, 2)
    assert calls == []


@pytest.mark.parametrize("nthreads,streams,b_trans",
                         [(1, (0, 0), False), (2, (3, 3), False), (2, (0, 0), True)])
def test_measuring_times_every_candidate(tmp_path, monkeypatch, nthreads, streams, b_trans):
    """The real measurement (no timing asserted), alone and on the worker pool with a
    stand-in epilogue, and with B^T packed from B: one finite time per candidate, and
    the stored choice is one of them."""
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    M, N, K = 64, 3 * W + 5, 40
    cands = tuning.candidates(M, N, K, nthreads)
    times = tuning.measure(cands, M, N, K, True, nthreads, streams, b_trans)
    assert len(times) == len(cands) and all(0 < t < 1 for t in times)
    key = ("cpu", "version", (M, N, K, True, nthreads, *streams, b_trans))
    monkeypatch.setattr(tuning, "measure", lambda c, *s: times)
    assert tuning._tune(key, key[2]) in cands
    assert tuning._stored(key) in cands
    assert cache.load(tuning._cache_key(key)) is not None


def test_an_optimizer_update_fused_into_the_weight_gradient_is_tuned_with_its_streams(monkeypatch):
    """The Adam update of a Dense kernel, fused after dW = X^T dZ, reads and writes the
    weights and both moments: the tiling is asked for with those 3 + 3 streams."""
    from kcompile import layers, models
    from kcompile.codegen.lower import matmul
    asked = []

    def record(M, N, K, a_trans, nthreads, streams=(0, 0), b_trans=False):
        asked.append((M, N, K, a_trans, streams))
        return default_tiling(M, N, K, nthreads)
    monkeypatch.setattr(matmul, "gemm_tiling", record)
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    m = models.Sequential([layers.Dense(48, activation="relu", input_shape=(40,)), layers.Dense(3)])
    m.compile(optimizer="adam", loss="mse", nthreads=1)
    m.train_on_batch(np.ones((16, 40), np.float32), np.ones((16, 3), np.float32))
    assert (40, 48, 16, True, (3, 3)) in asked


# ------------------------------------------------- epilogues interleaved with the product
def _optimizer_graph(M, N, K, a_trans=True):
    """dW = X^T dY fused with an RMSprop-like update of W and its velocity (a sqrt and
    a division per weight: the epilogue runs interleaved with the next tile's FMAs)."""
    g = Graph()
    rng = np.random.default_rng(M + N * K)
    x = Sym(g, g.leaf("input", TensorType((K, M) if a_trans else (M, K)), "x"))
    dy = Sym(g, g.leaf("input", TensorType((K, N)), "dy"))
    w = Sym(g, g.leaf("input", TensorType((M, N)), "w"))
    vel = Sym(g, g.leaf("input", TensorType((M, N)), "vel"))
    grad = F.matmul(x, dy, transpose_a=a_trans)
    new_vel = vel * 0.9 + grad * grad * 0.1
    g.outputs["w"] = (w - grad * 0.01 / F.sqrt(new_vel + 1e-7)).id
    g.outputs["vel"] = new_vel.id
    feeds = {g.nodes[v].name: rng.standard_normal(g.type(v).shape, dtype=np.float32)
             for v in g.leaves() if g.nodes[v].role == "input"}
    feeds["vel"] = np.abs(feeds["vel"])
    return g, feeds


# Several full row tiles and an edge tile, columns ending in a partial vector, one and
# several column panels; K within one k-block and past it (interleaved only without k-blocks).
OPTIMIZER_SHAPES = [(40, 2 * W, 32, True), (37, 5 * W + 3, 29, True), (29, W - 5, 17, False),
                    (64, 3 * W, 301, True)]


@pytest.mark.parametrize("shape", OPTIMIZER_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_an_epilogue_interleaved_with_the_next_tile_matches_the_reference(shape, monkeypatch):
    from kcompile.codegen.lower import gemm
    M, N, K, a_trans = shape
    g, feeds = _optimizer_graph(M, N, K, a_trans)
    ref = ReferenceExecutable({"f": g}, State([])).run("f", feeds)
    calls = []
    inner = gemm._pipelined_tiles
    monkeypatch.setattr(gemm, "_pipelined_tiles", lambda *a: calls.append(1) or inner(*a))
    first = None
    for nthreads in (1, 2):
        for t in _tilings(M, N, K):
            with tuning.forced(t):
                exe = NativeExecutable({"f": g}, State([]), use_cache=False, nthreads=nthreads)
                got = exe.run("f", feeds)
            for name in ("w", "vel"):
                np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4,
                                           err_msg=f"{name}: {t} on {nthreads} threads")
            if first is None:
                first = got
            assert all(np.array_equal(got[n], first[n]) for n in ("w", "vel")), \
                f"{t} on {nthreads} threads differs in bits"
    # With AVX-512 (32 registers) the tilings without k-blocks interleave; with fewer
    # registers none does.
    assert bool(calls) == (W == 16), "the sqrt and division epilogue runs interleaved"


@pytest.mark.parametrize("cpu,features", [("haswell", "+avx,+avx2,+fma,+sse4.2"), ("x86-64", "")],
                         ids=["8-wide", "4-wide"])
def test_an_optimizer_epilogue_in_narrower_vectors_matches_the_reference(cpu, features,
                                                                         monkeypatch):
    """With 16 vector registers the epilogue keeps the plain order (not interleaved):
    the same graph, tall and wide tiles, 1 and 2 threads."""
    from kcompile.codegen.lower import gemm
    from kcompile.codegen.target import compiling_for
    calls = []
    inner = gemm._pipelined_tiles
    monkeypatch.setattr(gemm, "_pipelined_tiles", lambda *a: calls.append(1) or inner(*a))
    with compiling_for(cpu, features):
        w = vector_shape()[0]
        g, feeds = _optimizer_graph(45, 3 * w + 2, 24)
        ref = ReferenceExecutable({"f": g}, State([])).run("f", feeds)
        for t in (default_tiling(45, 3 * w + 2, 24), Tiling(8, 3, KC_MAX, "rows"),
                  Tiling(12, 1, KC_MAX, "cols")):
            for nthreads in (1, 2):
                with tuning.forced(t):
                    got = NativeExecutable({"f": g}, State([]), use_cache=False,
                                           nthreads=nthreads).run("f", feeds)
                for name in ("w", "vel"):
                    np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4,
                                               err_msg=f"{name}: {t} on {nthreads} threads")
    assert not calls
