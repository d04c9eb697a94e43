"""Running one batch on every rank: the data-parallel counterpart of the trainer's
_Runner.

A training batch is grad_step (this rank's count * gradients and count land in the
State's slots; Python adds the batch's log values to the slot before them), one
in-place allreduce of that contiguous range, then apply_update. The logs that come
back are sums over ranks, turned into the same per-batch values a single process
reports for the union of the ranks' batches: every rank's History, progress bar and
callbacks see the global numbers. An evaluation batch reduces its log values only.
A rank with an empty share of a step (the end of the data) runs no forward pass and
adds zeros. Compiled metrics' accumulators are combined over ranks in the same
allreduce (metric_states.py).
"""
from __future__ import annotations

import numpy as np

from ..trainer import _Runner
from .metric_states import MetricStates
from .split import LOG_CAPACITY, slots_for


class DataParallelRunner(_Runner):

    def __init__(self, model, entry, source, parallel):
        super().__init__(model, entry, source)
        self.parallel = parallel
        self.world = parallel.world
        self._buffers = None            # (state, fused view, logs view, count view)
        self._keys = None               # the names of the step's outputs
        self._metrics = None            # the compiled metrics' accumulators

    def run(self, batch):
        if self.size is None or batch.real > self.size:
            self.size = batch.real
        exe = self._get(batch.y_specs if self.targets else None)
        if self.entry == "predict":
            return exe.run("predict", batch.feeds(self.size, False))
        # A rank whose share of the step is empty contributes zeros and runs no forward
        # pass (which would move BatchNormalization's statistics on padding alone).
        empty = batch.real == 0 and self._keys is not None
        fused = self._fused(exe.state) if self.entry == "train_step" else None
        if self._metrics is None:       # made when the step was traced
            self._metrics = MetricStates(self.model, self.world)
        if self._metrics:
            self._metrics.mark()
        if empty:
            out = dict.fromkeys(self._keys, 0.0)
            if fused is not None:
                fused[1].fill(0.0)
        else:
            out = exe.run("grad_step" if fused is not None else "eval_step",
                          batch.feeds(self.size, True))
            self._keys = list(out)
        changes = self._metrics.changes() if self._metrics else np.zeros(0, np.float32)
        out, summed = self._reduce_logs(out, fused, changes)
        if self._metrics:
            self._metrics.combine(summed)
            out = self._metrics.results(out)
        if fused is None:
            return out
        # The update reads no batch: run it on the compiled program itself (a padded
        # variable-length executable wraps it with the batch's padding).
        getattr(exe, "exe", exe).run("apply_update", {})
        if self.parallel.sync_batch_norm:
            self.parallel.average_batch_norm_statistics(self.model)
        return out

    def _fused(self, state):
        if self._buffers is None or self._buffers[0] is not state:
            slots = slots_for(self.model)
            self._buffers = (state, slots.fused_buffer(state), state[slots.logs.path],
                             state[slots.count.path])
        return self._buffers

    def _reduce_logs(self, out, fused, extra):
        """out's log values summed over ranks (the per-sample means weighted by each
        rank's count) and `extra` summed, with `fused` (the gradient range of the
        State) in the same allreduce: (reduced logs, summed extra)."""
        kinds = self.model._log_kinds.values()
        # Losses (means over samples) and per-batch metric sums; not a metric's result
        # from its accumulators (MetricStates combines those).
        keys = sorted({k for kind, *rest in kinds if kind in ("mean", "sum", "ratio")
                       for k in rest if isinstance(k, str)})
        means = {kind[1] for kind in kinds if kind[0] == "mean"}
        count = float(out["count"])
        values = np.concatenate([[float(out[k]) * count if k in means else float(out[k])
                                  for k in keys], extra]).astype(np.float32)
        if fused is None:
            buf = np.concatenate([[count], values]).astype(np.float32)
            self.world.allreduce_sum(buf, "the allreduce of evaluation logs")
            total, values = float(buf[0]), buf[1:]
        else:
            _, buffer, logs, total_view = fused
            head = values[:LOG_CAPACITY]
            logs[:len(head)] = head
            self.world.allreduce_sum(buffer, "the gradient allreduce")
            total = float(total_view)
            rest = values[LOG_CAPACITY:]
            if len(rest):
                self.world.allreduce_sum(rest, "the allreduce of extra logs")
            values = np.concatenate([logs[:len(head)], rest])
        reduced = dict(out, count=np.float32(total))
        for k, v in zip(keys, values):
            reduced[k] = np.float32(v / max(total, 1.0) if k in means else v)
        return reduced, values[len(keys):]
