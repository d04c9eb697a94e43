"""Synchronization for SPMD steps, as LLVM IR: a barrier and the worker loop.

A step on N threads is N calls of the same entry function, one per thread id.
Kernels are separated by `kc_barrier` (a sense-by-generation barrier: the last
thread to arrive resets the count and bumps the generation). Waiting threads
spin with `pause` briefly, then yield the CPU: CI machines and users' laptops
are shared, and a spinning thread must not starve whoever holds the other core.

Between steps, worker threads sit in `kc_worker`: they wait for the control
block's generation to move (spin, then yield, then short sleeps), then call
the entry published there. `kc_run`, called by the main thread, publishes the
entry, releases the workers and runs thread 0's share itself.

Control block (64-byte lines): +0 go generation, +64 shutdown flag,
+128 entry pointer, +136 state, +144 work, +152 sync. Sync block: +0 arrival
count, +64 barrier generation.
"""
from __future__ import annotations

from .target import host


def _pause() -> str:
    triple = host()[0]
    return "call void @llvm.x86.sse2.pause()" if triple.startswith(("x86_64", "i686")) else ""


def ir_text() -> str:
    pause = _pause()
    decl = "declare void @llvm.x86.sse2.pause()" if pause else ""
    return f"""
{decl}
declare i32 @sched_yield()
declare i32 @usleep(i32)

define void @kc_barrier(ptr %sync, i32 %n) noinline nounwind {{
entry:
  %genp = getelementptr inbounds i8, ptr %sync, i64 64
  %gen = load atomic i32, ptr %genp acquire, align 4
  %old = atomicrmw add ptr %sync, i32 1 acq_rel, align 4
  %nm1 = sub i32 %n, 1
  %last = icmp eq i32 %old, %nm1
  br i1 %last, label %release, label %spin
release:
  store atomic i32 0, ptr %sync monotonic, align 4
  %g1 = add i32 %gen, 1
  store atomic i32 %g1, ptr %genp release, align 4
  ret void
spin:
  %i = phi i32 [0, %entry], [%i1, %next]
  %cur = load atomic i32, ptr %genp acquire, align 4
  %moved = icmp ne i32 %cur, %gen
  br i1 %moved, label %done, label %wait
wait:
  %short = icmp ult i32 %i, 2000
  br i1 %short, label %relax, label %yield
relax:
  {pause}
  br label %next
yield:
  call i32 @sched_yield()
  br label %next
next:
  %i1 = add i32 %i, 1
  br label %spin
done:
  ret void
}}

define void @kc_worker(ptr %ctl, i64 %tid) nounwind {{
entry:
  br label %wait
wait:
  ; Generation 0 is the pool's start: a worker that starts late still runs step 1.
  %seen = phi i32 [0, %entry], [%cur, %run]
  br label %poll
poll:
  %i = phi i32 [0, %wait], [%i1, %next]
  %cur = load atomic i32, ptr %ctl acquire, align 4
  %moved = icmp ne i32 %cur, %seen
  br i1 %moved, label %go, label %idle
idle:
  %short = icmp ult i32 %i, 2000
  br i1 %short, label %relax, label %rest
relax:
  {pause}
  br label %next
rest:
  %medium = icmp ult i32 %i, 6000
  br i1 %medium, label %yield, label %sleep
yield:
  call i32 @sched_yield()
  br label %next
sleep:
  call i32 @usleep(i32 50)
  br label %next
next:
  %i1 = add i32 %i, 1
  br label %poll
go:
  %stopp = getelementptr inbounds i8, ptr %ctl, i64 64
  %stop = load atomic i32, ptr %stopp acquire, align 4
  %halt = icmp ne i32 %stop, 0
  br i1 %halt, label %exit, label %run
run:
  %fpp = getelementptr inbounds i8, ptr %ctl, i64 128
  %fp = load ptr, ptr %fpp, align 8
  %sp = getelementptr inbounds i8, ptr %ctl, i64 136
  %state = load ptr, ptr %sp, align 8
  %wp = getelementptr inbounds i8, ptr %ctl, i64 144
  %work = load ptr, ptr %wp, align 8
  %yp = getelementptr inbounds i8, ptr %ctl, i64 152
  %sync = load ptr, ptr %yp, align 8
  call void %fp(ptr %state, ptr %work, i64 %tid, ptr %sync)
  br label %wait
exit:
  ret void
}}

define void @kc_run(ptr %ctl, ptr %fp) nounwind {{
entry:
  %fpp = getelementptr inbounds i8, ptr %ctl, i64 128
  store ptr %fp, ptr %fpp, align 8
  %gen = atomicrmw add ptr %ctl, i32 1 release, align 4
  %sp = getelementptr inbounds i8, ptr %ctl, i64 136
  %state = load ptr, ptr %sp, align 8
  %wp = getelementptr inbounds i8, ptr %ctl, i64 144
  %work = load ptr, ptr %wp, align 8
  %yp = getelementptr inbounds i8, ptr %ctl, i64 152
  %sync = load ptr, ptr %yp, align 8
  call void %fp(ptr %state, ptr %work, i64 0, ptr %sync)
  ret void
}}

define void @kc_stop(ptr %ctl) nounwind {{
entry:
  %stopp = getelementptr inbounds i8, ptr %ctl, i64 64
  store atomic i32 1, ptr %stopp release, align 4
  %gen = atomicrmw add ptr %ctl, i32 1 release, align 4
  ret void
}}
"""


SYMBOLS = ("kc_worker", "kc_run", "kc_stop")
