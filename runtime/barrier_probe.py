"""What threads give and cost on this host, measured once per process.

The thread count of a step (runtime/threads.py) weighs the work the other threads
take over against the barriers they add. Both differ by orders of magnitude
between hosts and moments: a barrier costs 0.3 us between two idle cores and tens
of microseconds on a shared VM whose other vCPU is busy, where a second thread
may also get its core only now and then. So they are measured, with the sync code
every step uses (codegen/sync.py), on a worker pool:

  barrier   the median time per barrier of an entry making PROBE_BARRIERS of them;
  wake-up   a step of one barrier after the workers went idle;
  speedup   a fixed chain of arithmetic run by every thread, against the same
            chain run once by the calling thread alone: nthreads when every
            thread has a core of its own, less when they share.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import time

import numpy as np

from ..codegen import cache, sync
from ..codegen.jit import build_object, load_object
from ..codegen.target import fingerprint
from .arena import aligned_bytes
from .threads import WorkerPool

PROBE_BARRIERS = 100
ROUNDS = 5
SPIN_STEPS = 20_000         # dependent multiply-adds: about 30 us on one core

_LOADED: list = []

_STEP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


def _probe_ir(nthreads: int) -> str:
    # (build_object links the sync code in)
    return f"""
declare void @kc_barrier(ptr, i32, i64)

define void @kc_probe(ptr %state, ptr %work, i64 %tid, ptr %sync) nounwind {{
entry:
  br label %loop
loop:
  %i = phi i32 [0, %entry], [%i1, %loop]
  call void @kc_barrier(ptr %sync, i32 {nthreads}, i64 %tid)
  %i1 = add i32 %i, 1
  %more = icmp ult i32 %i1, {PROBE_BARRIERS}
  br i1 %more, label %loop, label %done
done:
  ret void
}}

define void @kc_once(ptr %state, ptr %work, i64 %tid, ptr %sync) nounwind {{
entry:
  call void @kc_barrier(ptr %sync, i32 {nthreads}, i64 %tid)
  ret void
}}

define void @kc_spin_alone(ptr %state, ptr %work, i64 %tid, ptr %sync) nounwind {{
entry:
  br label %loop
loop:
  %i = phi i32 [0, %entry], [%i1, %loop]
  %x = phi double [1.0, %entry], [%x1, %loop]
  %m = fmul double %x, 0x3FEFF7CED916872B
  %x1 = fadd double %m, 1.0
  %i1 = add i32 %i, 1
  %more = icmp ult i32 %i1, {SPIN_STEPS}
  br i1 %more, label %loop, label %done
done:
  %off = mul i64 %tid, 64
  %slot = getelementptr inbounds i8, ptr %work, i64 %off
  store double %x1, ptr %slot, align 8
  ret void
}}

define void @kc_spin(ptr %state, ptr %work, i64 %tid, ptr %sync) nounwind {{
entry:
  call void @kc_spin_alone(ptr %state, ptr %work, i64 %tid, ptr %sync)
  call void @kc_barrier(ptr %sync, i32 {nthreads}, i64 %tid)
  ret void
}}
"""


def _probe_object(nthreads: int) -> bytes:
    """The probe's object code, from the disk cache when it holds it (compiling
    even this small module costs tens of milliseconds)."""
    key = hashlib.sha256(f"thread-probe:{nthreads}:{PROBE_BARRIERS}:{SPIN_STEPS}:"
                         f"{cache.compiler_version()}:{fingerprint()}".encode()).hexdigest()
    hit = cache.load(key)
    if hit is not None:
        return hit[0]
    obj = build_object(_probe_ir(nthreads)).obj
    cache.store(key, obj, {})
    return obj


def _median_seconds(fn, rounds=ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@functools.lru_cache(maxsize=None)
def measured(nthreads: int) -> tuple[float, float, float]:
    """(seconds per barrier, seconds of a wake-up, speedup of `nthreads` threads over
    one on work split evenly) for steps on `nthreads` threads."""
    symbols = ["kc_probe", "kc_once", "kc_spin", "kc_spin_alone", *sync.SYMBOLS]
    code = load_object(_probe_object(nthreads), symbols, name="kcompile-thread-probe")
    # Kept loaded for the life of the process: never unmapped under a worker that
    # is slow to leave it on a loaded machine (the pool waits 5 s at most).
    _LOADED.append(code)
    memory = aligned_bytes(64 * (nthreads + 1))
    sync_block = aligned_bytes(64 * max(nthreads, 2))
    pool = WorkerPool(code, nthreads, memory.ctypes.data, memory.ctypes.data)
    try:
        a = code.addresses
        alone = functools.partial(_STEP(a["kc_spin_alone"]), memory.ctypes.data,
                                  memory.ctypes.data, 0, sync_block.ctypes.data)
        pool.run(a["kc_probe"])                     # the workers are up and spinning
        barrier = _median_seconds(lambda: pool.run(a["kc_probe"])) / PROBE_BARRIERS
        split = _median_seconds(lambda: pool.run(a["kc_spin"]))
        one = _median_seconds(alone)
        time.sleep(0.003)                           # past the workers' spinning
        t0 = time.perf_counter()
        pool.run(a["kc_once"])
        wake = time.perf_counter() - t0
        speedup = min(float(nthreads), nthreads * one / split)
        return barrier, wake, speedup
    finally:
        pool.close()
