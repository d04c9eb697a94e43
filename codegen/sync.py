"""Synchronization for SPMD steps, as LLVM IR: a barrier and the worker loop.

A step on N threads is N calls of the same entry function, one per thread id.
Kernels are separated by `kc_barrier` (a sense-by-generation barrier: the last
thread to arrive resets the count and bumps the generation). Waiting threads
spin briefly, then yield the CPU: CI machines and users' laptops are shared,
and a spinning thread must not starve whoever holds the other core.

Between steps, worker threads sit in `kc_worker`: they wait for the control
block's generation to move (spin, then yield, then short sleeps), then call
the entry published there. `kc_run`, called by the main thread, publishes the
entry, releases the workers and runs thread 0's share itself.

Control block (64-byte lines): +0 go generation, +64 shutdown flag,
+128 entry pointer, +136 state, +144 work, +152 sync. Sync block: +0 arrival
count, +64 barrier generation.
"""
from __future__ import annotations

# Spin budgets, in polls of the shared line (a few ns each). Neither `pause` nor
# the cycle counter in the loops: in a VM both can trap to the hypervisor, which
# measured 25 us per barrier with pause (0.85 us without) and worse with rdtsc.
BARRIER_SPINS = 50_000              # ~0.1 ms, then yield the CPU
IDLE_SPINS = 50_000                 # a worker between steps: spin ~0.1 ms,
IDLE_YIELDS = 2_000                 # then yield a while, then sleep 50 us at a time


def ir_text() -> str:
    return f"""
declare i32 @sched_yield()
declare i32 @usleep(i32)

define void @kc_barrier(ptr %sync, i32 %n) noinline nounwind {{
entry:
  %genp = getelementptr inbounds i8, ptr %sync, i64 64
  %gen = load atomic i32, ptr %genp acquire, align 4
  %old = atomicrmw add ptr %sync, i32 1 acq_rel, align 4
  %nm1 = sub i32 %n, 1
  %last = icmp eq i32 %old, %nm1
  br i1 %last, label %release, label %start
release:
  store atomic i32 0, ptr %sync monotonic, align 4
  %g1 = add i32 %gen, 1
  store atomic i32 %g1, ptr %genp release, align 4
  ret void
start:
  br label %spin
spin:
  %i = phi i64 [0, %start], [%i1, %wait], [%i1, %yield]
  %i1 = add i64 %i, 1
  %cur = load atomic i32, ptr %genp acquire, align 4
  %moved = icmp ne i32 %cur, %gen
  br i1 %moved, label %done, label %wait
wait:
  %short = icmp ult i64 %i, {BARRIER_SPINS}
  br i1 %short, label %spin, label %yield
yield:
  call i32 @sched_yield()
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
  %i = phi i64 [0, %wait], [%i1, %idle], [%i1, %yield], [%i1, %sleep]
  %i1 = add i64 %i, 1
  %cur = load atomic i32, ptr %ctl acquire, align 4
  %moved = icmp ne i32 %cur, %seen
  br i1 %moved, label %go, label %idle
idle:
  %short = icmp ult i64 %i, {IDLE_SPINS}
  br i1 %short, label %poll, label %rest
rest:
  %medium = icmp ult i64 %i, {IDLE_SPINS + IDLE_YIELDS}
  br i1 %medium, label %yield, label %sleep
yield:
  call i32 @sched_yield()
  br label %poll
sleep:
  call i32 @usleep(i32 50)
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
