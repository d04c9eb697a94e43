"""Worker threads for SPMD steps.

Each worker is a Python thread that makes one ctypes call into the native
`kc_worker` loop (ctypes releases the GIL) and stays there until shutdown,
so a step costs one native call on the main thread and no Python at all on
the workers. See codegen/sync.py for the control block they share.
"""
from __future__ import annotations

import ctypes
import os
import threading
import weakref

import numpy as np

from .arena import aligned_bytes

_WORKER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
_RUN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_STOP = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads(flops_per_step: float, scan_steps=(), bytes_per_step: float = 0.0,
                    barriers: int = 0, measure: bool = True,
                    moved_bytes: float = 0.0, seen: dict | None = None) -> int | None:
    """Threads for a step: the CPUs this process may use where the time they save
    exceeds what their barriers cost on this host (choose_threads);
    KCOMPILE_NUM_THREADS overrides.

    Measured (training steps, one core vs two): a 784-32-10 MLP at batch 32
    (3.5 MFLOP) 19.6 vs 14.6 us, a 100-32-10 one (0.5 MFLOP) 5.5 vs 6.0 us; an
    LSTM(32) at batch 32 (0.27 MFLOP per time step) 428 vs 292 us, an LSTM(16)
    at batch 8 (0.02 MFLOP per time step) 25 vs 34 us. A scan runs its body's
    kernels once per time step, so its step size decides (scan_steps: the flops
    of one step of each scan). Steps that stream megabytes of weights (batch-1
    predict of a big MLP: 35 us on one core, 15 us on two) use both cores too.
    A deep narrow model (30 blocks of Dense(64)-BatchNormalization at batch 64,
    492 kernels) took 2.3 ms on one thread and 11.6 ms on two on a shared VM
    (0.53 and 0.69 ms on a quiet one): there the barriers, not the flops, decide.

    measure=False: None where only the host's measured costs can decide.
    moved_bytes: what a step writes that every thread reads in the next (a training
    step's updated weights), charged where the host's costs decide (choose_threads).
    seen: where the host was measured, seen["busy"] tells whether its other cores were
    taken then (a speedup under WORST_SPEEDUP_PER_CPU each): a moment's load, so a
    choice made then is to be made again (runtime/pipeline.py).
    """
    env = os.environ.get("KCOMPILE_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"KCOMPILE_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    if any(f < 1e5 for f in scan_steps):
        return 1
    cpus = available_cpus()
    if cpus == 1 or not (flops_per_step >= 1e6 or bytes_per_step >= 1e6):
        return 1
    # (the updated weights' traffic is charged at measured costs only: W1's 2.1 MB at
    # the worst barrier cost would put a 4 ms step on one thread)
    if choose_threads(flops_per_step, bytes_per_step, barriers, cpus, WORST_BARRIER_S,
                      WORST_WAKE_S, WORST_SPEEDUP_PER_CPU * cpus) == cpus:
        return cpus         # every core wins whatever the probe would measure
    if not measure:
        return None
    from .barrier_probe import measured
    barrier_s, wake_s, speedup = measured(cpus)
    if seen is not None:
        seen["busy"] = speedup < WORST_SPEEDUP_PER_CPU * cpus
    return choose_threads(flops_per_step, bytes_per_step, barriers, cpus, barrier_s, wake_s,
                          speedup, moved_bytes)


# A core's sustained rate on the small kernels of a step and its streaming
# bandwidth (rough: they set the scale of the work a second thread can take over).
CORE_FLOPS = 1.0e11
CORE_BYTES = 1.0e10
# Each kernel's fixed cost (loop set-up, a partial last tile): shared out too.
KERNEL_S = 1e-6

# The costliest host the probe is there to tell apart whose other cores still run
# most of the time: barriers of 20 us and a wake-up of 100 us (a shared VM whose other
# vCPU is busy), the other cores free 3/4 of the time. A step on which every core
# wins even there (W1's training step: 4 ms of GEMMs, ~30 barriers) takes them
# without measuring, which costs 40-60 ms of the first call (the probe's compile and
# runs); the host's own figures decide only where the choice is close. (A host whose
# other cores were taken while the probe ran would have kept such a step on one
# thread: a moment's load, not a property of the host.)
WORST_BARRIER_S = 20e-6
WORST_WAKE_S = 100e-6
WORST_SPEEDUP_PER_CPU = 0.75


# The tensor the probe's threads each write a share of and read another's across its
# barrier (runtime/barrier_probe.py; 16 KiB: a 64 x 64 float32 activation): the
# measured barrier cost over it is a cost per byte moved between cores.
PROBE_EXCHANGE_BYTES = 16384


def choose_threads(flops: float, nbytes: float, barriers: int, cpus: int,
                   barrier_s: float, wake_s: float, speedup: float,
                   moved_bytes: float = 0.0) -> int:
    """1 or `cpus`: whichever has the lower estimated step time. One thread takes
    work = flops/CORE_FLOPS + bytes/CORE_BYTES + barriers*KERNEL_S; `cpus` threads
    take work/speedup plus a wake-up and `barriers` barriers, at the costs and the
    speedup measured on this host (runtime/barrier_probe.py: a barrier's cost there
    includes moving a small kernel's result between the cores' caches). A margin of
    10% keeps a near tie on one thread, which leaves the other cores to others.

    Checked against steps timed on one and two threads of a 2-vCPU Xeon (quiet):
    W2's batch-1 predict (2.1 MB of weights, 5 kernels) 44 vs 20 us: the weights
    stream from L3 on one core but stay in both cores' L2 halves on two; a deep
    narrow training step (281 kernels) 0.53 vs 0.69 ms: barriers of ~2 us decide."""
    work = flops / CORE_FLOPS + nbytes / CORE_BYTES + barriers * KERNEL_S
    # Weights a training step updates, each thread its share, are read whole by every
    # thread in the next step: (cpus-1)/cpus of them cross between the cores' caches
    # each step, at about the probe's cost per byte (W5, 784-32-10 RMSprop: 100 KB of
    # weights, one thread 23 us, two 31 us on a quiet 2-vCPU Xeon, its first product
    # split by rows). Weights read by products split along K are not in moved_bytes:
    # each thread reads the rows it updates (runtime/pipeline.py; W5 so: 24 us on two).
    traffic = moved_bytes * (cpus - 1) / cpus * barrier_s / PROBE_EXCHANGE_BYTES
    shared = work / max(speedup, 1e-3) + wake_s + barriers * barrier_s + traffic
    return cpus if shared < 0.9 * work else 1


class WorkerPool:
    def __init__(self, code, nthreads: int, state_addr: int, work_addr: int):
        addresses = code.addresses
        self.nthreads = nthreads
        self.ctl = aligned_bytes(256)
        self.sync = aligned_bytes(64 * max(nthreads, 2))     # a barrier epoch per thread
        words = self.ctl.view(np.uint64)
        words[17] = state_addr                  # +136
        words[18] = work_addr                   # +144
        words[19] = self.sync.ctypes.data       # +152
        self.ctl_addr = self.ctl.ctypes.data
        self._run = _RUN(addresses["kc_run"])
        stop = _STOP(addresses["kc_stop"])
        worker = _WORKER(addresses["kc_worker"])
        self.threads = [threading.Thread(target=worker, args=(self.ctl_addr, tid), daemon=True,
                                         name=f"kcompile-worker-{tid}")
                        for tid in range(1, nthreads)]
        for t in self.threads:
            t.start()
        # The finalizer holds the code: workers run inside it until they are stopped.
        self._finalizer = weakref.finalize(self, _shutdown, stop, self.ctl, self.threads, code)

    def run(self, entry_addr: int) -> None:
        self._run(self.ctl_addr, entry_addr)

    def close(self):
        self._finalizer()


def _shutdown(stop, ctl, threads, code):
    stop(ctl.ctypes.data)
    for t in threads:
        t.join(timeout=5)
