"""Data-parallel training across processes and machines, on MPI (Keras 3's
`keras.distribution` names where they fit).

    from kcompile import distribute
    distribute.set_distribution(distribute.DataParallel())
    model.fit(x, y, batch_size=32)           # 32 samples per rank and step

    mpiexec -n 2 python train.py                       # two processes here
    mpiexec -H a,b -n 2 python train.py                # one process on each of two machines

The same script runs unchanged as one plain process (DataParallel is then a
no-op). Under `mpiexec -n N`, every rank holds the model; `fit` gives each rank a
disjoint slice of every epoch, averages the gradients with one allreduce per step
and reports logs averaged over ranks; only rank 0 prints and writes files;
`evaluate` reduces, `predict` gathers. Needs `pip install "kcompile[mpi]"`.
"""
from __future__ import annotations

from .parallel import DataParallel

__all__ = ["DataParallel", "set_distribution", "distribution", "active", "rank",
           "num_processes"]

_current: DataParallel | None = None


def set_distribution(value) -> None:
    """Set the distribution fit/evaluate/predict use from now on (None: one process)."""
    global _current
    if value is not None and not isinstance(value, DataParallel):
        raise ValueError(f"set_distribution expects a DataParallel or None, received "
                         f"{value!r} of type {type(value).__name__}")
    _current = value


def distribution() -> DataParallel | None:
    """The distribution set by set_distribution (None if none)."""
    return _current


def active() -> DataParallel | None:
    """The distribution if it spans more than one process, else None: what the
    trainer checks (one process runs exactly as without a distribution)."""
    return _current if _current is not None and _current.active else None


def rank() -> int:
    """This process's rank (0 without a distribution): guard file writes with
    `if distribute.rank() == 0`."""
    return _current.rank if _current is not None else 0


def num_processes() -> int:
    return _current.num_processes if _current is not None else 1
