"""The MPI side of data parallelism: the world communicator and the few collectives
training needs, with a timeout that names the rank that did not come.

mpi4py is an optional dependency (`pip install "kcompile[mpi]"`, which also installs
Open MPI from PyPI). A script run as one plain process never imports it; a script
started by `mpiexec -n N` (N > 1) without mpi4py is an ImportError naming the extra.

An exception on any rank aborts every rank (MPI_Abort from `sys.excepthook`), so a
failure is an error everywhere, never a rank waiting forever in an allreduce.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

import numpy as np

#: environment variables the MPI launchers set for every process they start
_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                       "I_MPI_NUMRANKS")
#: the message tag of the "I am here" notes exchanged when an allreduce times out
_PRESENT_TAG = 7207
#: how long the ranks that reached a timed-out allreduce wait for each other's notes
_GRACE_SECONDS = 2.0


def launched_size() -> int:
    """The number of processes the MPI launcher started (1 when run as a plain process)."""
    for var in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


def import_mpi():
    """mpi4py's MPI module, or an ImportError naming the extra that installs it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("kcompile.distribute.DataParallel across processes needs mpi4py and "
                          "an MPI implementation: pip install \"kcompile[mpi]\"") from e
    return MPI


class World:
    """The processes of one `mpiexec` run (one rank each): allreduce, broadcast and
    gather over numpy buffers, every wait bounded by `timeout` seconds.

    The collectives are MPI's blocking ones (Open MPI's blocking allreduce was 2-3x
    faster here than its non-blocking one polled to completion); a watchdog thread
    bounds them: past the timeout it finds which ranks never reached the collective,
    prints that and aborts the job."""

    def __init__(self, timeout: float | None = 600.0):
        self.MPI = import_mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = timeout
        self.seconds_in_allreduce = 0.0      # wall time spent in gradient allreduces
        self.bytes_reduced = 0
        self._armed = None                   # (deadline, what) while in a collective
        _abort_on_exception(self.comm)
        if timeout is not None:
            threading.Thread(target=self._watch, name="kcompile-mpi-watchdog",
                             daemon=True).start()

    # -- collectives -------------------------------------------------------------------
    def allreduce_sum(self, buf: np.ndarray, what: str = "allreduce") -> None:
        """buf <- the elementwise sum of every rank's buf, in place."""
        t0 = time.perf_counter()
        with self._bounded(what):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        self.seconds_in_allreduce += time.perf_counter() - t0
        self.bytes_reduced += buf.nbytes

    def allreduce_min(self, value: float, what: str) -> float:
        buf = np.array([value], np.float64)
        with self._bounded(what):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.MIN)
        return float(buf[0])

    def broadcast(self, buf: np.ndarray, what: str = "broadcast") -> None:
        """buf <- rank 0's buf, in place."""
        with self._bounded(what):
            self.comm.Bcast(buf, root=0)

    def broadcast_object(self, obj, what: str = "broadcast"):
        with self._bounded(what):
            return self.comm.bcast(obj, root=0)

    def allgather_object(self, obj, what: str = "allgather") -> list:
        with self._bounded(what):
            return self.comm.allgather(obj)

    # -- the timeout -------------------------------------------------------------------
    @contextlib.contextmanager
    def _bounded(self, what: str):
        if self.timeout is None:
            yield
            return
        self._armed = (time.monotonic() + self.timeout, what)
        try:
            yield
        finally:
            self._armed = None

    def _watch(self) -> None:
        """The watchdog: abort the job when a collective outlives the timeout, naming
        the ranks that never reached it."""
        while True:
            time.sleep(min(0.5, self.timeout / 4))
            armed = self._armed
            if armed is None or time.monotonic() < armed[0]:
                continue
            missing = self._missing_ranks()
            sys.stderr.write(
                f"TimeoutError: kcompile.distribute: rank {self.rank}: {armed[1]} did not "
                f"complete within {self.timeout:g} s; rank(s) "
                f"{', '.join(map(str, missing)) or '(unknown)'} of {self.size} never reached "
                f"it (stuck, or died without an error); aborting all {self.size} ranks\n")
            sys.stderr.flush()
            self.comm.Abort(1)

    def _missing_ranks(self) -> list[int]:
        """The ranks that send no "present" note within a grace period: every rank
        that timed out in the same collective sends one to every other."""
        if self.MPI.Query_thread() != self.MPI.THREAD_MULTIPLE:
            return []       # no MPI calls from this thread while the main one waits
        note = np.array([self.rank], np.int64)
        sends = [self.comm.Isend(note, dest=r, tag=_PRESENT_TAG)
                 for r in range(self.size) if r != self.rank]
        heard = {self.rank}
        deadline = time.monotonic() + _GRACE_SECONDS
        while time.monotonic() < deadline and len(heard) < self.size:
            for r in range(self.size):
                if r not in heard and self.comm.Iprobe(source=r, tag=_PRESENT_TAG):
                    got = np.empty(1, np.int64)
                    self.comm.Recv(got, source=r, tag=_PRESENT_TAG)
                    heard.add(r)
            time.sleep(1e-3)
        del sends       # never waited for: the job is about to abort
        return [r for r in range(self.size) if r not in heard]


def _abort_on_exception(comm) -> None:
    """Make an uncaught exception on this rank print its traceback and abort the job:
    the other ranks would otherwise wait in their next collective forever."""
    previous = sys.excepthook
    if getattr(previous, "_kcompile_aborts", False):
        return

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.write(f"kcompile.distribute: rank {comm.Get_rank()} failed with "
                         f"{kind.__name__}; aborting all {comm.Get_size()} ranks\n")
        sys.stderr.flush()
        comm.Abort(1)
    hook._kcompile_aborts = True
    sys.excepthook = hook
