"""DataParallel: one model replica per MPI rank, gradients averaged every step.

    from kcompile import distribute
    distribute.set_distribution(distribute.DataParallel())
    model.fit(x, y, batch_size=32)          # under `mpiexec -n 4 python train.py`

What the trainer asks of it (kcompile/trainer.py calls these only while a
DataParallel over more than one rank is set; one process runs as before):
  state_variables(model)   the gradient slots the model's State gains (split.py)
  split(model, traced)     train_step -> grad_step + apply_update
  shard(source)            this rank's share of fit/evaluate/predict data (data.py)
  runner(model, entry, s)  runs a batch: grad_step, one allreduce, apply_update
  start(model)             rank 0's weights and optimizer state to every rank
  callbacks / verbose      only rank 0 prints and writes files
  agree(flag)              stop_training on every rank if on any
  gather(outputs)          predict's batches from every rank, in order
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np

from . import comm, data, split

# Draws between two ranks' random streams (see DataParallel._own_random_streams).
RANK_STREAM_STRIDE = 1 << 24


class DataParallel:
    """Keras' `keras.distribution.DataParallel`, over MPI processes: every rank holds
    the whole model and trains on its own slice of each batch; the gradients are
    summed across ranks by one allreduce per step.

    Args:
        device_mesh, devices: as Keras; the devices here are the MPI ranks, so only
            None (every rank of the `mpiexec` run) or a list of that many entries.
        auto_shard_dataset: split the data of fit/evaluate/predict among ranks (as
            Keras); False when each rank is given its own data already.
        timeout: seconds a rank waits in a collective (the gradient allreduce, ...)
            before the job is aborted with a TimeoutError message naming the ranks
            that never came (None: wait forever).
        predict_on: "all" (predict returns the full result on every rank) or "chief"
            (on rank 0; None on the others).
        sync_batch_norm: False (Keras' default: each rank's BatchNormalization moving
            statistics follow its own batches) or True: after every step they are
            averaged over ranks (one more allreduce), so every rank holds the same.
            The batch statistics a training step normalizes with stay per rank.
    """

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True,
                 timeout=600.0, predict_on="all", sync_batch_norm=False):
        if device_mesh is not None:
            raise ValueError("DataParallel: `device_mesh` is not supported; the devices are "
                             "the MPI ranks of the run (pass devices=None)")
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, (int, float)) or not timeout > 0):
            raise ValueError(f"DataParallel: `timeout` must be a positive number of seconds "
                             f"or None, received {timeout!r}")
        if predict_on not in ("all", "chief"):
            raise ValueError(f"DataParallel: `predict_on` must be 'all' or 'chief', received "
                             f"{predict_on!r}")
        self.world = comm.World(timeout) if comm.launched_size() > 1 else None
        self.rank = self.world.rank if self.world else 0
        self.num_processes = self.world.size if self.world else 1
        if devices is not None and len(devices) != self.num_processes:
            raise ValueError(f"DataParallel: {len(devices)} devices given, but the run has "
                             f"{self.num_processes} MPI rank(s)")
        self.auto_shard_dataset = auto_shard_dataset
        self.predict_on = predict_on
        self.sync_batch_norm = bool(sync_batch_norm)
        self.batch_dim_name = "batch"

    @property
    def active(self) -> bool:
        return self.num_processes > 1

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @contextlib.contextmanager
    def scope(self):
        """`with distribution.scope():` sets this distribution inside the block (as Keras)."""
        from . import distribution, set_distribution
        previous = distribution()
        set_distribution(self)
        try:
            yield self
        finally:
            set_distribution(previous)

    def __repr__(self):
        return f"<DataParallel rank {self.rank} of {self.num_processes}>"

    # -- the trainer's hooks -----------------------------------------------------------
    def state_variables(self, model) -> list:
        return split.slots_for(model).variables if model.optimizer is not None else []

    def split(self, model, traced: dict) -> dict:
        return split.split_entries(model, traced)

    def shard(self, source, collective=True):
        if source is None or not self.auto_shard_dataset:
            return source
        seed = self.world.broadcast_object(int(np.random.randint(2 ** 31)))
        return data.shard(source, self.world, seed, collective)

    def runner(self, model, entry, source):
        from .runner import DataParallelRunner
        return DataParallelRunner(model, entry, source, self)

    def start(self, model) -> None:
        """Every rank starts from rank 0's weights, optimizer state and random state:
        the whole State buffer, broadcast once."""
        if not _has_slots(model):
            model._state_generation = None      # made before the distribution was set
        state = model._ensure_state()
        self.world.broadcast(state.buffer, "the broadcast of rank 0's weights")
        self._own_random_streams(model)

    def _own_random_streams(self, model) -> None:
        """Each rank draws its own Dropout masks and noise (one process of the global
        batch would draw a different mask for every row): rank r's random counters start
        r * RANK_STREAM_STRIDE draws after rank 0's, so streams meet only after that many
        steps. The weights, which every rank must hold alike, are not touched."""
        from ..random import seed_states
        for v in seed_states(model):
            moved = v.value.astype(np.int64) + self.rank * RANK_STREAM_STRIDE
            np.copyto(v.value, ((moved + 2**31) % 2**32 - 2**31).astype(np.int32))

    def average_batch_norm_statistics(self, model) -> None:
        """The moving statistics of the model's BatchNormalization layers, averaged
        over ranks in place (sync_batch_norm=True)."""
        stats = [v for v in model.non_trainable_weights
                 if getattr(v, "name", "") in ("moving_mean", "moving_variance")]
        if not stats:
            return
        buf = np.concatenate([v.value.ravel() for v in stats])
        self.world.allreduce_sum(buf, "the allreduce of BatchNormalization statistics")
        buf /= self.num_processes
        at = 0
        for v in stats:
            np.copyto(v.value, buf[at:at + v.value.size].reshape(v.value.shape))
            at += v.value.size

    def verbose(self, verbose):
        return verbose if self.is_chief else 0

    def callbacks(self, callbacks):
        """The callbacks this rank runs: all on rank 0; elsewhere those that write no
        files (checkpoints, CSV logs, TensorBoard events are rank 0's), and
        BackupAndRestore restoring only."""
        if self.is_chief or callbacks is None:
            return callbacks
        from ..callbacks import CallbackList
        from ..callbacks.core import _flatten
        if isinstance(callbacks, CallbackList):
            return callbacks
        return [_restore_only(cb) if _kind(cb, "BackupAndRestore") else cb
                for cb in _flatten(callbacks) if not _writes_files(cb)]

    def agree(self, flag: bool) -> bool:
        """True on every rank if it is True on any."""
        return self.world.allreduce_min(0.0 if flag else 1.0, "the stop_training check") == 0

    def gather(self, outs):
        """predict's outputs (per output, this rank's per-step arrays; None for no step)
        from every rank, in the data's order: step j of rank r held global batch
        j*size + r. None where nothing was predicted, or with predict_on="chief" on
        the other ranks."""
        steps = [list(s) for s in zip(*outs)] if outs is not None else []
        every = self.world.allgather_object(steps)
        if self.predict_on == "chief" and not self.is_chief:
            return None
        ordered = [s[j] for j in range(max(map(len, every))) for s in every if j < len(s)]
        return [list(o) for o in zip(*ordered)] if ordered else None


def _has_slots(model) -> bool:
    state = model._state
    return state is not None and split.slots_for(model).count.path in state


#: callbacks that write files: run on rank 0 only
_FILE_WRITERS = ("ModelCheckpoint", "CSVLogger", "TensorBoard")


def _kind(cb, *names) -> bool:
    return any(k.__name__ in names for k in type(cb).__mro__)


def _writes_files(cb) -> bool:
    return _kind(cb, *_FILE_WRITERS)


def _restore_only(cb):
    """A BackupAndRestore that restores like rank 0's (every rank resumes at the same
    epoch, from the same weights) but leaves writing and deleting backups to rank 0."""
    reader = copy.copy(cb)
    reader._save_model = lambda: None
    reader.delete_checkpoint = False
    return reader
