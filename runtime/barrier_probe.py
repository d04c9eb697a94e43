"""What threads give and cost on this host, measured once per process.

The thread count of a step (runtime/threads.py) weighs the work the other threads
take over against the barriers they add. Both differ by orders of magnitude
between hosts and moments: a barrier costs 0.3 us between two idle cores and tens
of microseconds on a shared VM whose other vCPU is busy, where a second thread
may also get its core only now and then. So they are measured, with the sync code
every step uses (codegen/sync.py), on a worker pool:

  barrier   what a barrier between two small kernels costs a step: each of
            PROBE_BARRIERS rounds, every thread writes its share of a 16 KiB
            tensor (a 64 x 64 activation), passes a barrier and reads another
            thread's share, against the same rounds on one thread without
            barriers. The barrier alone (0.2 us between two idle cores) is a
            fraction of it: the other thread's lines move between the cores'
            caches after it (1-1.5 us per kernel of a deep narrow model);
  wake-up   a step of one barrier while the workers still spin after the last
            step (codegen/sync.py), as a call back to back with the last finds
            them (training and predict loops); a call after a pause of more than
            ~0.1 ms pays a sleeping thread's wake-up on top (tens of us);
  speedup   a fixed chain of arithmetic run by every thread, against the same
            chain run once by the calling thread alone: nthreads when every
            thread has a core of its own, less when they share.

Each is the median of ROUNDS runs: a single run taken while the other vCPU is
briefly busy can be off by 100x, and one such figure used to flip the choice
between runs of the same program.
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
from .threads import PROBE_EXCHANGE_BYTES, WorkerPool

PROBE_BARRIERS = 100
ROUNDS = 15
EXCHANGE_FLOATS = PROBE_EXCHANGE_BYTES // 4
SPIN_STEPS = 20_000         # dependent multiply-adds: about 30 us on one core

_LOADED: list = []

_STEP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


def _probe_ir(nthreads: int) -> str:
    # (build_object links the sync code in)
    chunk = EXCHANGE_FLOATS // nthreads
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

define void @kc_exchange(ptr %state, ptr %work, i64 %tid, ptr %sync) nounwind {{
entry:
  %lo = mul i64 %tid, {chunk}
  %mine = getelementptr inbounds float, ptr %work, i64 %lo
  %t1 = add i64 %tid, 1
  %nb = urem i64 %t1, {nthreads}
  %nlo = mul i64 %nb, {chunk}
  %theirs = getelementptr inbounds float, ptr %work, i64 %nlo
  br label %round
round:
  %r = phi i32 [0, %entry], [%r1, %read]
  %acc0 = phi float [0.0, %entry], [%acc1, %read]
  %val = uitofp i32 %r to float
  call void @kc_fill(ptr %mine, i64 {chunk}, float %val)
  call void @kc_barrier(ptr %sync, i32 {nthreads}, i64 %tid)
  br label %read
read:
  %s = call float @kc_sum(ptr %theirs, i64 {chunk})
  %acc1 = fadd float %acc0, %s
  %r1 = add i32 %r, 1
  %more = icmp ult i32 %r1, {PROBE_BARRIERS}
  br i1 %more, label %round, label %done
done:
  %off = mul i64 %tid, 64
  %slot = getelementptr inbounds i8, ptr %state, i64 %off
  store float %acc1, ptr %slot, align 4
  ret void
}}

define void @kc_exchange_alone(ptr %state, ptr %work, i64 %tid, ptr %sync) nounwind {{
entry:
  br label %round
round:
  %r = phi i32 [0, %entry], [%r1, %round]
  %acc0 = phi float [0.0, %entry], [%acc1, %round]
  %val = uitofp i32 %r to float
  call void @kc_fill(ptr %work, i64 {EXCHANGE_FLOATS}, float %val)
  %s = call float @kc_sum(ptr %work, i64 {EXCHANGE_FLOATS})
  %acc1 = fadd float %acc0, %s
  %r1 = add i32 %r, 1
  %more = icmp ult i32 %r1, {PROBE_BARRIERS}
  br i1 %more, label %round, label %done
done:
  store float %acc1, ptr %state, align 4
  ret void
}}

define internal void @kc_fill(ptr %p, i64 %n, float %v) noinline nounwind {{
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %q = getelementptr inbounds float, ptr %p, i64 %i
  store float %v, ptr %q, align 4
  %i1 = add i64 %i, 1
  %more = icmp ult i64 %i1, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}}

define internal float @kc_sum(ptr %p, i64 %n) noinline nounwind {{
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %a = phi float [0.0, %entry], [%a1, %loop]
  %q = getelementptr inbounds float, ptr %p, i64 %i
  %x = load float, ptr %q, align 4
  %a1 = fadd reassoc float %a, %x
  %i1 = add i64 %i, 1
  %more = icmp ult i64 %i1, %n
  br i1 %more, label %loop, label %done
done:
  ret float %a1
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
    key = hashlib.sha256(f"thread-probe:{nthreads}:{PROBE_BARRIERS}:{SPIN_STEPS}:{EXCHANGE_FLOATS}:"
                         f"{cache.compiler_version()}:{fingerprint()}".encode()).hexdigest()
    hit = cache.load(key)
    if hit is not None:
        return hit[0]
    obj = build_object(_probe_ir(nthreads)).obj
    cache.store(key, obj, {})
    return obj


def _median_seconds(fn, rounds=ROUNDS, pause=0.0) -> float:
    times = []
    for _ in range(rounds):
        if pause:
            _busy_wait(pause)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _busy_wait(seconds):
    """Stand in for a caller's own work between two steps (a sleep would let the
    workers go to sleep too)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@functools.lru_cache(maxsize=None)
def measured(nthreads: int) -> tuple[float, float, float]:
    """(seconds a barrier between two small kernels adds to a step, seconds of a
    wake-up of spinning workers, speedup of `nthreads` threads over one on work
    split evenly) for steps on `nthreads` threads."""
    symbols = ["kc_probe", "kc_once", "kc_spin", "kc_spin_alone", "kc_exchange",
               "kc_exchange_alone", *sync.SYMBOLS]
    code = load_object(_probe_object(nthreads), symbols, name="kcompile-thread-probe")
    # Kept loaded for the life of the process: never unmapped under a worker that
    # is slow to leave it on a loaded machine (the pool waits 5 s at most).
    _LOADED.append(code)
    results = aligned_bytes(64 * (nthreads + 1))
    tensor = aligned_bytes(4 * EXCHANGE_FLOATS + 64 * (nthreads + 1))
    sync_block = aligned_bytes(64 * max(nthreads, 2))
    pool = WorkerPool(code, nthreads, results.ctypes.data, tensor.ctypes.data)
    try:
        a = code.addresses

        def alone(name):
            return functools.partial(_STEP(a[name]), results.ctypes.data, tensor.ctypes.data, 0,
                                     sync_block.ctypes.data)
        pool.run(a["kc_probe"])                     # the workers are up and spinning
        barrier = _median_seconds(lambda: pool.run(a["kc_probe"])) / PROBE_BARRIERS
        shared = _median_seconds(lambda: pool.run(a["kc_exchange"])) / PROBE_BARRIERS
        single = _median_seconds(alone("kc_exchange_alone")) / PROBE_BARRIERS
        split = _median_seconds(lambda: pool.run(a["kc_spin"]))
        one = _median_seconds(alone("kc_spin_alone"))
        wake = _median_seconds(lambda: pool.run(a["kc_once"]), pause=20e-6)
        speedup = min(float(nthreads), nthreads * one / split)
        return max(barrier, shared - single / nthreads), wake, speedup
    finally:
        pool.close()
