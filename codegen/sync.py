"""Synchronization for SPMD steps, as LLVM IR: a barrier and the worker loop.

A step on N threads is N calls of the same entry function, one per thread id.
Dependent kernels are separated by `kc_barrier`: each thread bumps the epoch in
its own cache line, then waits until every other thread's epoch has caught up.
An arrival is one store to a line nobody else writes, and a waiter reads each
other line once it changes: one cache-line transfer each way, where a shared
arrival counter costs two or three. Waiting threads spin briefly, then yield
the CPU: CI machines and users' laptops are shared, and a spinning thread must
not starve whoever holds the other core.

Between steps, worker threads sit in `kc_worker`: they wait for the control
block's generation to move (spin ~0.1 ms, then yield, then sleep 50 us at a
time for ~10 ms), then call the entry published there. A call back to back with
the last finds them spinning; an idle process must use no CPU, so after the
naps a worker blocks in the kernel (a futex on the generation word: Linux on
x86-64 and AArch64; elsewhere it keeps napping). `kc_run`, called by the main
thread, publishes the entry, wakes blocked workers if any (a system call only
then), and runs thread 0's share itself. (A worker counts itself in `sleepers`
before it checks the generation a last time and the main thread reads
`sleepers` after moving it: one of them sees the other, so no wake-up is lost;
the futex also re-checks the word.)

Control block (64-byte lines): +0 go generation, +64 shutdown flag,
+128 entry pointer, +136 state, +144 work, +152 sync, +192 sleepers. Sync
block: thread t's barrier epoch (i64) at +64*t.
"""
from __future__ import annotations

from llvmlite import ir

from .irutil import I32, I64, PTR

# Spin budgets, in polls of the shared line (a few ns each). Neither `pause` nor
# the cycle counter in the loops: in a VM both can trap to the hypervisor, which
# measured 25 us per barrier with pause (0.85 us without) and worse with rdtsc.
BARRIER_SPINS = 50_000              # ~0.1 ms, then yield the CPU
IDLE_SPINS = 50_000                 # a worker between steps: spin ~0.1 ms,
IDLE_YIELDS = 2_000                 # then yield a while, then sleep 50 us at a time
IDLE_NAPS = 200                     # (about 10 ms), then block until woken

# The futex system call's number where the workers block in it (else they keep napping).
_FUTEX = {"x86_64": 202, "aarch64": 98}
_FUTEX_WAIT, _FUTEX_WAKE = 128, 129         # FUTEX_WAIT/WAKE | FUTEX_PRIVATE_FLAG


def call_barrier(b, sync, nthreads: int, tid):
    """A call of kc_barrier (defined by ir_text) for `nthreads` threads."""
    module = b.module
    f = module.globals.get("kc_barrier") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [PTR, I32, I64]), name="kc_barrier")
    b.call(f, [sync, ir.Constant(I32, nthreads), tid])


def _futex_number():
    from .target import host
    triple = host()[0]
    return _FUTEX.get(triple.split("-")[0]) if "linux" in triple else None


# The step's arguments from the control block: %state, %work, %sync.
STEP_ARGS = "".join(f"""  %{name}p = getelementptr inbounds i8, ptr %ctl, i64 {off}
  %{name} = load ptr, ptr %{name}p, align 8
""" for name, off in (("state", 136), ("work", 144), ("sync", 152)))


def _block(futex) -> str:
    """The worker's last idle phase: block in the kernel until the generation moves."""
    if futex is None:
        return """block:
  call i32 @usleep(i32 50)
  br label %poll
"""
    return f"""block:
  %sleepersp = getelementptr inbounds i8, ptr %ctl, i64 192
  %in = atomicrmw add ptr %sleepersp, i32 1 seq_cst, align 4
  %last = load atomic i32, ptr %ctl seq_cst, align 4
  %still = icmp eq i32 %last, %seen
  br i1 %still, label %wait.futex, label %woken
wait.futex:
  %seen64 = zext i32 %seen to i64
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr %ctl, i64 {_FUTEX_WAIT}, i64 %seen64, ptr null)
  br label %woken
woken:
  %out = atomicrmw sub ptr %sleepersp, i32 1 seq_cst, align 4
  br label %poll
"""


def _wake(futex, always: bool) -> str:
    """Wake the workers blocked in the kernel (kc_run: only if one is)."""
    if futex is None:
        return ""
    call = (f"  %woke = call i64 (i64, ...) @syscall(i64 {futex}, ptr %ctl, i64 {_FUTEX_WAKE}, "
            f"i64 2147483647)\n")
    if always:
        return call
    return f"""  %sleepersp = getelementptr inbounds i8, ptr %ctl, i64 192
  %sleeping = load atomic i32, ptr %sleepersp seq_cst, align 4
  %anyone = icmp ne i32 %sleeping, 0
  br i1 %anyone, label %wake, label %go
wake:
{call}  br label %go
go:
"""


def ir_text() -> str:
    futex = _futex_number()
    woken = "block" if futex is None else "woken"      # where the last idle phase ends
    return f"""
declare i32 @sched_yield()
declare i32 @usleep(i32)
declare i64 @syscall(i64, ...)

define void @kc_barrier(ptr %sync, i32 %n, i64 %tid) noinline nounwind {{
entry:
  %off = mul i64 %tid, 64
  %mine = getelementptr inbounds i8, ptr %sync, i64 %off
  %e0 = load atomic i64, ptr %mine monotonic, align 8
  %e = add i64 %e0, 1
  store atomic i64 %e, ptr %mine release, align 8
  %n64 = zext i32 %n to i64
  br label %next
next:
  %j = phi i64 [0, %entry], [%j1, %ready]
  %more = icmp ult i64 %j, %n64
  br i1 %more, label %check, label %done
check:
  %self = icmp eq i64 %j, %tid
  br i1 %self, label %ready, label %look
look:
  %joff = mul i64 %j, 64
  %theirs = getelementptr inbounds i8, ptr %sync, i64 %joff
  br label %spin
spin:
  %i = phi i64 [0, %look], [%i1, %wait], [%i1, %yield]
  %i1 = add i64 %i, 1
  %t = load atomic i64, ptr %theirs acquire, align 8
  %d = sub i64 %t, %e
  %arrived = icmp sge i64 %d, 0
  br i1 %arrived, label %ready, label %wait
wait:
  %short = icmp ult i64 %i, {BARRIER_SPINS}
  br i1 %short, label %spin, label %yield
yield:
  call i32 @sched_yield()
  br label %spin
ready:
  %j1 = add i64 %j, 1
  br label %next
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
  %i = phi i64 [0, %wait], [%i1, %idle], [%i1, %yield], [%i1, %sleep], [%i1, %{woken}]
  %i1 = add i64 %i, 1
  %cur = load atomic i32, ptr %ctl acquire, align 4
  %moved = icmp ne i32 %cur, %seen
  br i1 %moved, label %go.on, label %idle
idle:
  %short = icmp ult i64 %i, {IDLE_SPINS}
  br i1 %short, label %poll, label %rest
rest:
  %medium = icmp ult i64 %i, {IDLE_SPINS + IDLE_YIELDS}
  br i1 %medium, label %yield, label %nap
yield:
  call i32 @sched_yield()
  br label %poll
nap:
  %long = icmp ult i64 %i, {IDLE_SPINS + IDLE_YIELDS + IDLE_NAPS}
  br i1 %long, label %sleep, label %block
sleep:
  call i32 @usleep(i32 50)
  br label %poll
{_block(futex)}go.on:
  %stopp = getelementptr inbounds i8, ptr %ctl, i64 64
  %stop = load atomic i32, ptr %stopp acquire, align 4
  %halt = icmp ne i32 %stop, 0
  br i1 %halt, label %exit, label %run
run:
  %fpp = getelementptr inbounds i8, ptr %ctl, i64 128
  %fp = load ptr, ptr %fpp, align 8
{STEP_ARGS}  call void %fp(ptr %state, ptr %work, i64 %tid, ptr %sync)
  br label %wait
exit:
  ret void
}}

define void @kc_run(ptr %ctl, ptr %fp) nounwind {{
entry:
  %fpp = getelementptr inbounds i8, ptr %ctl, i64 128
  store ptr %fp, ptr %fpp, align 8
  %gen = atomicrmw add ptr %ctl, i32 1 seq_cst, align 4
{_wake(futex, False)}{STEP_ARGS}  call void %fp(ptr %state, ptr %work, i64 0, ptr %sync)
  ret void
}}

define void @kc_stop(ptr %ctl) nounwind {{
entry:
  %stopp = getelementptr inbounds i8, ptr %ctl, i64 64
  store atomic i32 1, ptr %stopp release, align 4
  %gen = atomicrmw add ptr %ctl, i32 1 seq_cst, align 4
{_wake(futex, True)}  ret void
}}
"""


SYMBOLS = ("kc_worker", "kc_run", "kc_stop")
