"""GEMM tilings chosen by measuring them on the host, as autotuning compilers do.

The first time a product shape is compiled on a CPU, a few tilings (gemm.Tiling:
tile shape, k-block length, thread split) are compiled side by side in one small
module and timed on random operands; the fastest is kept in the compile cache,
keyed by the CPU fingerprint, the compiler version and the shape, so later
compiles (and other models with the same shape) read it instead of measuring.
The hand-chosen constants (gemm.default_tiling) are always a candidate and win
ties: a tuned product is never measured slower than the untuned one.

Every tiling sums each element's terms in the same order (k-blocks continue
from the stored partial sum), so the choice changes speed, never results.

Tuning is skipped, and the constants used, for products under MIN_FLOP (too
short to gain what measuring costs), when the disk cache is off
(KCOMPILE_NO_CACHE: the result could not be kept), for code built for another
CPU (an exported library) and when KCOMPILE_TUNE=0.
On several threads the candidates run on the step's own worker pool, so the
threads' competition for caches and memory bandwidth is in the times.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import threading
import time
from dataclasses import replace

import numpy as np

from . import cache
from .lower.gemm import KC_MAX, Tiling, default_tiling, gemm_rows, vector_shape
from .target import _this_machine, fingerprint, host

ENV = "KCOMPILE_TUNE"
MIN_FLOP = 30e6      # below this a product takes < ~0.1 ms: little to gain
TIE = 0.03           # a candidate must beat the constants by more than this fraction
ROUNDS = 5           # timings per candidate, interleaved; the fastest counts
BUDGET_S = 0.03      # measuring time per shape at most (besides compiling candidates)...
MIN_ROUNDS = 3       # ...but at least this many rounds
CONFIRM = 4          # more rounds of the constants against the leader: a leader that won
                     # by another process taking the CPU from the constants' run loses here

_chosen: dict[tuple, Tiling] = {}
_lock = threading.Lock()
_forced: list[Tiling] = []
last_cost: dict[tuple, float] = {}      # seconds spent tuning each shape (this process)
compile_s: dict[tuple, float] = {}      # of which compiling the candidates


def enabled() -> bool:
    """Tuning on: not turned off, a cache to keep results in, and code for this machine
    (an ahead-of-time build for another CPU cannot be timed here)."""
    return os.environ.get(ENV, "1") not in ("0", "off", "false", "") \
        and cache.cache_dir() is not None and host() == _this_machine()


def key_salt() -> str:
    """What compiled code depends on through this module (for the compile cache key)."""
    return "tune=on" if enabled() else "tune=off"


@contextlib.contextmanager
def forced(tiling: Tiling):
    """Lower every GEMM with `tiling` (tests: each candidate against the reference)."""
    _forced.append(tiling)
    try:
        yield
    finally:
        _forced.pop()


def gemm_tiling(M: int, N: int, K: int, a_trans: bool, nthreads: int, streams=(0, 0),
                b_trans: bool = False) -> Tiling:
    """The tiling to lower C (M x N) = op(A) (M x K) @ op(B) with, on `nthreads` threads
    (op(B) = B^T with b_trans: its panels are packed from B, a cost timed with them).

    streams: (reads, writes) of M x N arrays by a fused epilogue (an optimizer's
    update reads and writes its weights and moments): their traffic is part of the
    kernel's time and changes which tiling is fastest, so candidates are timed with it."""
    if _forced:
        return _forced[-1]
    default = default_tiling(M, N, K, nthreads)
    if 2.0 * M * N * K < MIN_FLOP or not enabled():
        return default
    shape = (M, N, K, bool(a_trans), nthreads, *streams, bool(b_trans))
    key = (fingerprint(), cache.compiler_version(), shape)
    with _lock:     # one measurement at a time (kernels may be lowered on several threads)
        if key not in _chosen:
            _chosen[key] = _stored(key) or _tune(key, shape)
    if b_trans:     # packed either way: one name for what runs
        return replace(_chosen[key], pack=True)
    return _chosen[key]


def _cache_key(key) -> str:
    return hashlib.sha256(f"gemm-tiling:{key!r}".encode()).hexdigest()


def _stored(key) -> Tiling | None:
    hit = cache.load(_cache_key(key))
    if hit is None:
        return None
    try:
        return Tiling(**hit[1]["tiling"])
    except (KeyError, TypeError):
        return None


def candidates(M: int, N: int, K: int, nthreads: int) -> list[Tiling]:
    """The constants first, then a few tilings that differ where CPUs differ (cache
    sizes and associativity, load ports): packed panels of B in L1-sized k-blocks; a
    tile with more rows and fewer vectors (fewer loads of B per FMA) with rows of A
    blocked for L2 and split between threads; packed panels with the other thread
    split. Few: compiling them is most of the cost. (Measured and not kept, on a
    Xeon with AVX-512: short k-blocks with row blocks alone, and each row tile
    across all columns in turn before an optimizer's update: never the fastest
    on the worker pool.)"""
    W, vmax = vector_shape()
    base = default_tiling(M, N, K, nthreads)
    out = [base]

    def add(t):
        if t not in out:
            out.append(t)
    other = "rows" if base.split == "cols" else "cols"
    short = KC_MAX // 2
    if N >= W:
        add(replace(base, kc_max=short, pack=True))
    mr, v = (8, 3) if vmax == 4 else (4, 3) if vmax == 2 else (base.mr, base.v)
    v = max(1, min(v, N // W))
    mr = mr if v > 1 else gemm_rows(1)
    add(Tiling(mr, v, base.kc_max, "rows" if nthreads > 1 else base.split, 8 * mr))
    if nthreads > 1:
        add(replace(base, split=other, pack=N >= W))
    return out


def _tune(key, shape) -> Tiling:
    t0 = time.perf_counter()
    M, N, K, a_trans, nthreads, reads, writes, b_trans = shape
    cands = candidates(M, N, K, nthreads)
    times = measure(cands, M, N, K, a_trans, nthreads, (reads, writes), b_trans)
    best = min(range(len(cands)), key=lambda i: times[i])
    if times[best] >= times[0] * (1 - TIE):
        best = 0
    choice = cands[best]
    cost = time.perf_counter() - t0
    last_cost[shape] = cost
    if os.environ.get("KC_DEBUG", "0") not in ("", "0"):
        print(f"[kcompile] tuned {M}x{N}x{K}{' A^T' if a_trans else ''}{' B^T' if b_trans else ''} on {nthreads} threads "
              f"in {cost * 1e3:.0f} ms ({compile_s.get(shape, 0) * 1e3:.0f} compiling): {choice} "
              + ", ".join(f"{c.mr}x{c.v} kc{c.kc_max} {c.split} mc{c.mc}{' pack' if c.pack else ''}: "
                          f"{t * 1e6:.0f} us"
                          for c, t in zip(cands, times)))
    cache.store(_cache_key(key), b"", {"tiling": choice.__dict__, "shape": list(shape),
                                       "times_us": [t * 1e6 for t in times]})
    return choice


def _module(cands, M, N, K, a_trans, nthreads, streams=(0, 0), b_trans=False):
    """One function per candidate: void(ptr A, ptr B, ptr C, ptr scratch, ptr X, i64 tid),
    where scratch holds each thread's packed panel and product tile (_scratch_stride)
    and X the arrays a stand-in epilogue reads and writes (`streams`)."""
    from llvmlite import ir

    from .irutil import F32, I32, PTR, Partition, i64
    from .lower.gemm import _masked, gemm, k_block
    module = ir.Module(name="kcompile-tuning")
    reads, writes = streams
    W, _ = vector_shape()

    def epilogue_fn(X):
        # Straight vector code (no loop for LLVM to vectorize: cheap to compile).
        def run(b, i0, j0, rows, width, tile, ld):
            vec = ir.VectorType(F32, W)
            for r in range(rows):
                at = b.add(b.mul(b.add(i0, i64(r)), i64(N)), j0)
                for c in range(0, width, W):
                    lanes = min(W, width - c)
                    mask = ir.Constant(ir.VectorType(ir.IntType(1), W), [int(x < lanes) for x in range(W)])

                    def load(p):
                        if lanes == W:
                            return b.load(p, typ=vec, align=4)
                        return b.call(_masked(module, "load", vec),
                                      [p, ir.Constant(I32, 4), mask, ir.Constant(vec, [0.0] * W)])
                    x = load(b.gep(tile, [i64(r * ld + c)], inbounds=True, source_etype=F32))
                    ptrs = [b.gep(X, [b.add(at, i64(c + a * M * N))], inbounds=True, source_etype=F32)
                            for a in range(max(reads, writes))]
                    for p in ptrs[:reads]:
                        x = b.fadd(x, load(p))
                    for p in ptrs[:writes]:
                        if lanes == W:
                            b.store(x, p, align=4)
                        else:
                            b.call(_masked(module, "store", vec), [x, p, ir.Constant(I32, 4), mask])
        return run
    stride, pack_floats = _scratch_stride(cands, N, K, b_trans)
    for i, t in enumerate(cands):
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * 5 + [ir.IntType(64)]),
                         name=f"cand{i}")
        A, B, C, P, X, tid = fn.args
        for p in (A, B, C, P, X):
            p.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        part = Partition(tid, nthreads) if nthreads > 1 else None
        mine = b.gep(P, [b.mul(tid, i64(stride))], inbounds=True, source_etype=F32)
        epilogue = None
        if any(streams):
            blocked = k_block(K, t.kc_max) < K     # then the epilogue reads the product in C
            epilogue = (epilogue_fn(X), None if blocked else
                        b.gep(mine, [i64(pack_floats)], inbounds=True, source_etype=F32))
        gemm(b, A, B, C, M, N, K, a_trans=a_trans, part=part, tiling=t, pack=mine,
             epilogue=epilogue, b_trans=b_trans)
        b.ret_void()
        if nthreads > 1:
            _step(module, fn, nthreads, i)
    return module


def _step(module, cand, nthreads, i):
    """step{i}(ptr table, ptr work, i64 tid, ptr sync): cand{i} on the operands whose
    addresses `table` lists, then a barrier (the worker pool's entry signature)."""
    from llvmlite import ir

    from .irutil import I32, I64, PTR, i64
    barrier = module.globals.get("kc_barrier") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [PTR, I32, I64]), name="kc_barrier")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, PTR]), name=f"step{i}")
    table, _, tid, sync = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ptrs = [b.load(b.gep(table, [i64(n)], inbounds=True, source_etype=PTR), typ=PTR)
            for n in range(5)]
    b.call(cand, [*ptrs, tid])
    b.call(barrier, [sync, ir.Constant(I32, nthreads), tid])
    b.ret_void()


def _object(text: str) -> bytes:
    """Object code for the candidates without LLVM's IR passes: they are explicit
    vector code whose speed the code generator makes (at -O3 all the same); the IR
    passes changed their times by under 1% and cost half the compile (measured,
    784x512x128 A^T with an epilogue: 149 -> 66 ms for three candidates)."""
    import llvmlite.binding as llvm

    from .jit import parse
    from .target import target_machine
    mod = parse(text)
    tm = target_machine()
    mod.triple = llvm.get_process_triple()
    mod.data_layout = str(tm.target_data)
    return tm.emit_object(mod)


def _scratch_stride(cands, N, K, b_trans=False) -> tuple[int, int]:
    """(floats of scratch per thread, floats of it before the product tile): the
    largest packed panel and tile any candidate needs."""
    W, _ = vector_shape()
    pack = max([16] + [-(-t.pack_floats(N, K, W, b_trans) // 16) * 16 for t in cands])
    return pack + max(t.tile_floats(N, W) for t in cands), pack


def _aligned(n):
    from ..runtime.arena import aligned_bytes      # (runtime builds on codegen)
    return aligned_bytes(4 * n).view(np.float32)


def measure(cands, M, N, K, a_trans, nthreads, streams=(0, 0), b_trans=False) -> list[float]:
    """Seconds per product for each tiling, best of ROUNDS; on several threads, run
    by the step's own worker pool (threads share caches and memory bandwidth)."""
    from . import sync
    from .jit import load_object
    prefix = "step" if nthreads > 1 else "cand"
    names = [f"{prefix}{i}" for i in range(len(cands))]
    module = _module(cands, M, N, K, a_trans, nthreads, tuple(streams), b_trans)
    t0 = time.perf_counter()
    code = load_object(_object(str(module)), names + (list(sync.SYMBOLS) if nthreads > 1 else []),
                       name="kcompile-tuning")
    compile_s[(M, N, K, a_trans, nthreads, *streams, b_trans)] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    A, B, C = _aligned(M * K), _aligned(K * N), _aligned(M * N)
    A[:] = rng.standard_normal(M * K, dtype=np.float32)
    B[:] = rng.standard_normal(K * N, dtype=np.float32)
    P = _aligned(_scratch_stride(cands, N, K, b_trans)[0] * nthreads)
    X = _aligned(max(16, max(streams) * M * N))
    args = (A.ctypes.data, B.ctypes.data, C.ctypes.data, P.ctypes.data, X.ctypes.data)
    pool = None
    if nthreads > 1:
        # the step's own worker pool: each candidate's step{i} runs as an entry does,
        # its `state` argument the table of operand addresses
        from ..runtime.threads import WorkerPool      # (runtime builds on codegen)
        table = np.array(args, np.uint64)
        pool = WorkerPool(code, nthreads, table.ctypes.data, 0)
        fns = [functools.partial(pool.run, code.addresses[n]) for n in names]
    else:
        proto = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 5, ctypes.c_int64)
        fns = [functools.partial(proto(code.addresses[n]), *args, 0) for n in names]
    try:
        return _rounds(fns)
    finally:
        if pool is not None:
            pool.close()


def _rounds(fns) -> list[float]:
    """Best time of each call: interleaved rounds, then the constants against the leader."""

    def once(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    for fn in fns:          # warm: code, operands and C in cache
        once(fn)
    best = [float("inf")] * len(fns)
    deadline = time.perf_counter() + BUDGET_S
    for r in range(ROUNDS):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], once(fn))
        if r + 1 >= MIN_ROUNDS and time.perf_counter() > deadline:
            break
    leader = min(range(len(fns)), key=lambda i: best[i])
    for _ in range(CONFIRM if leader else 0):
        for i in (0, leader):
            best[i] = min(best[i], once(fns[i]))
    return best
