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
(KCOMPILE_NO_CACHE: the result could not be kept) and when KCOMPILE_TUNE=0.
With several threads, a tiling's time is its slowest thread's share, each
share timed alone on one thread (threads of a shared machine may not be free).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import time
from dataclasses import replace

import numpy as np

from . import cache
from .lower.gemm import KC_MAX, Tiling, default_tiling, tile_rows, vector_shape
from .target import fingerprint

ENV = "KCOMPILE_TUNE"
MIN_FLOP = 30e6      # below this a product takes < ~0.1 ms: little to gain
TIE = 0.03           # a candidate must beat the constants by more than this fraction
ROUNDS = 5           # timings per candidate, interleaved; the fastest counts
BUDGET_S = 0.03      # measuring time per shape at most (besides compiling candidates)

_chosen: dict[tuple, Tiling] = {}
_forced: list[Tiling] = []
last_cost: dict[tuple, float] = {}      # seconds spent tuning each shape (this process)


def enabled() -> bool:
    return os.environ.get(ENV, "1") not in ("0", "off", "false", "") and cache.cache_dir() is not None


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


def gemm_tiling(M: int, N: int, K: int, a_trans: bool, nthreads: int) -> Tiling:
    """The tiling to lower C (M x N) = op(A) (M x K) @ B with, on `nthreads` threads."""
    if _forced:
        return _forced[-1]
    default = default_tiling(M, N, K, nthreads)
    if 2.0 * M * N * K < MIN_FLOP or not enabled():
        return default
    shape = (M, N, K, bool(a_trans), nthreads)
    key = (fingerprint(), cache.compiler_version(), shape)
    if key not in _chosen:
        _chosen[key] = _stored(key) or _tune(key, shape)
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
    sizes and associativity, load ports): packed panels of B in L1-sized k-blocks;
    short k-blocks with rows of A blocked for L2; a tile with more rows and fewer
    vectors (fewer loads of B per FMA) with the rows split between threads; packed
    panels with the other thread split. Few, so compiling them stays cheap."""
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
    add(replace(base, kc_max=short, mc=8 * base.mr))
    mr, v = (8, 3) if vmax == 4 else (4, 3) if vmax == 2 else (base.mr, base.v)
    v = max(1, min(v, N // W))
    mr = mr if v > 1 else tile_rows(1)
    add(Tiling(mr, v, base.kc_max, "rows" if nthreads > 1 else base.split, 8 * mr))
    if nthreads > 1:
        add(replace(base, split=other, pack=N >= W))
    return out


def _tune(key, shape) -> Tiling:
    t0 = time.perf_counter()
    M, N, K, a_trans, nthreads = shape
    cands = candidates(M, N, K, nthreads)
    times = measure(cands, M, N, K, a_trans, nthreads)
    best = min(range(len(cands)), key=lambda i: times[i])
    if times[best] >= times[0] * (1 - TIE):
        best = 0
    choice = cands[best]
    cost = time.perf_counter() - t0
    last_cost[shape] = cost
    if os.environ.get("KC_DEBUG", "0") not in ("", "0"):
        print(f"[kcompile] tuned {M}x{N}x{K}{' A^T' if a_trans else ''} on {nthreads} threads "
              f"in {cost * 1e3:.0f} ms: {choice} "
              + ", ".join(f"{c.mr}x{c.v} kc{c.kc_max} {c.split}: {t * 1e6:.0f} us"
                          for c, t in zip(cands, times)))
    cache.store(_cache_key(key), b"", {"tiling": choice.__dict__,
                                       "times_us": [t * 1e6 for t in times]})
    return choice


def _module(cands, M, N, K, a_trans, nthreads):
    """One function per candidate: void(ptr A, ptr B, ptr C, ptr pack, i64 tid), where
    pack holds each thread's packed panel (pack_bytes)."""
    from llvmlite import ir

    from .irutil import F32, I64, PTR, Partition
    from .lower.gemm import gemm
    module = ir.Module(name="kcompile-tuning")
    for i, t in enumerate(cands):
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, PTR, I64]),
                         name=f"cand{i}")
        A, B, C, P, tid = fn.args
        for p in (A, B, C, P):
            p.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        part = Partition(tid, nthreads) if nthreads > 1 else None
        pack = b.gep(P, [b.mul(tid, ir.Constant(I64, _pack_stride(cands, N, K)))], inbounds=True,
                     source_etype=F32)
        gemm(b, A, B, C, M, N, K, a_trans=a_trans, part=part, tiling=t, pack=pack)
        b.ret_void()
    return module


def _pack_stride(cands, N, K) -> int:
    """Floats between two threads' packed panels: the largest any candidate needs."""
    W, _ = vector_shape()
    return max([16] + [-(-t.pack_floats(N, K, W) // 16) * 16 for t in cands])


def _aligned(n):
    raw = np.zeros(n + 16, np.float32)
    skip = (-raw.ctypes.data) % 64 // 4
    return raw[skip:skip + n]


def measure(cands, M, N, K, a_trans, nthreads) -> list[float]:
    """Seconds per product for each tiling: its slowest thread's share, best of ROUNDS."""
    from .jit import build_object, load_object
    names = [f"cand{i}" for i in range(len(cands))]
    code = load_object(build_object(str(_module(cands, M, N, K, a_trans, nthreads))).obj, names,
                       name="kcompile-tuning")
    rng = np.random.default_rng(0)
    A, B, C = _aligned(M * K), _aligned(K * N), _aligned(M * N)
    A[:] = rng.standard_normal(M * K, dtype=np.float32)
    B[:] = rng.standard_normal(K * N, dtype=np.float32)
    P = _aligned(_pack_stride(cands, N, K) * nthreads)
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_int64)
    fns = [proto(code.addresses[n]) for n in names]
    args = (A.ctypes.data, B.ctypes.data, C.ctypes.data, P.ctypes.data)

    def once(fn):
        worst = 0.0
        for tid in range(nthreads):
            t0 = time.perf_counter()
            fn(*args, tid)
            worst = max(worst, time.perf_counter() - t0)
        return worst
    for fn in fns:          # warm: code, operands and C in cache
        once(fn)
    best = [float("inf")] * len(fns)
    deadline = time.perf_counter() + BUDGET_S
    for r in range(ROUNDS):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], once(fn))
        if r >= 1 and time.perf_counter() > deadline:
            break
    del code
    return best
