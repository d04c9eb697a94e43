"""Each rank's share of the data: disjoint slices of every epoch.

Arrays: an epoch is cut into global batches of `size * batch_size` samples (shuffled
with a seed every rank shares); rank r takes rows [r*b, (r+1)*b) of each. Every rank
runs ceil(n / (size*b)) steps; a rank whose share of the last global batch is short
or empty pads it (the mask keeps the padding out), so 2 ranks of 32 see exactly the
batches 1 process of 64 would.

Streams (Dataset, generator, iterable, PyDataset): rank r takes the batches whose
index i has i % size == r (a PyDataset is only asked for those). For training and
evaluation all ranks must run the same number of steps: with a known number of
batches an epoch is floor(batches / size) steps (the last batches that do not fill
every rank are left out); with an unknown one, the ranks agree before each step and
stop when any has run out. Predict takes every batch (no step is collective).
"""
from __future__ import annotations

import itertools

import numpy as np

from ..data import ArrayBatch, ArraySource, StreamBatch, StreamSource


class ShardedArrays:
    """An ArraySource's rows split among ranks, batch by batch."""
    fixed_size = True

    def __init__(self, source: ArraySource, rank: int, size: int, seed: int):
        self.source, self.rank, self.size, self.seed = source, rank, size, seed
        self.batch_size = max(1, min(source.batch_size, -(-source.n // size)))
        self.num_batches = -(-source.n // (size * self.batch_size))
        self.y_specs = source.y_specs
        self._epoch = 0

    def __getattr__(self, name):            # xs, ys, sw, n, shuffle: the source's
        return getattr(self.source, name)

    def _order(self):
        n, shuffle = self.source.n, self.source.shuffle
        rng = np.random.RandomState((self.seed + self._epoch) % 2 ** 32)
        if shuffle == "batch":
            step = self.size * self.batch_size
            chunks = [rng.permutation(np.arange(s, min(s + step, n))) for s in range(0, n, step)]
            return np.concatenate([chunks[i] for i in rng.permutation(len(chunks))])
        return rng.permutation(n) if shuffle else np.arange(n)

    def iterator(self):
        order = self._order()
        b, step = self.batch_size, self.size * self.batch_size
        for start in range(0, len(order), step):
            lo = start + self.rank * b
            yield ArrayBatch(self.source, order[lo:min(lo + b, start + step)])

    def on_epoch_end(self):
        self._epoch += 1


class ShardedStream:
    """A StreamSource's batches dealt round-robin to the ranks."""
    fixed_size = False

    def __init__(self, source: StreamSource, world, seed: int, collective: bool):
        self.source, self.world, self.seed = source, world, seed
        self.rank, self.size = world.rank, world.size
        self.collective = collective
        total = source.num_batches
        if total is None:
            self.num_batches = None
        elif collective:
            self.num_batches = -(-total // self.size)
        else:
            self.num_batches = len(range(self.rank, total, self.size))
        self._epoch = 0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def _mine(self):
        s = self.source
        if s._indexed:
            if hasattr(s.data, "on_epoch_begin"):
                s.data.on_epoch_begin()
            order = np.arange(s.num_batches)
            if s.shuffle:
                order = np.random.RandomState((self.seed + self._epoch) % 2 ** 32) \
                    .permutation(order)
            for i in order[self.rank::self.size]:
                yield s.adapt(s.data[int(i)])
            return
        raw = s.data if hasattr(s.data, "__next__") else iter(s.data)
        for element in itertools.islice(raw, self.rank, None, self.size):
            yield s.adapt(element)

    def iterator(self):
        mine, last = self._mine(), None
        for step in itertools.count():
            if self.num_batches is not None and step >= self.num_batches:
                return
            batch = next(mine, None)
            if self.collective and self.num_batches is None:
                # An unknown length: go on while any rank has a batch.
                if self.world.allreduce_min(0.0 if batch is not None else 1.0,
                                            "the end-of-data check") == 1.0:
                    return
            if batch is None:
                if not self.collective:
                    return
                if last is None:
                    raise ValueError(f"{self.source.where}: rank {self.rank} received no "
                                     f"batch from the {type(self.source.data).__name__}, "
                                     f"which has fewer batches than the {self.size} ranks")
                batch = _empty_like(last)
            last = batch
            yield batch

    def on_epoch_end(self):
        self._epoch += 1
        self.source.on_epoch_end()


def _empty_like(batch: StreamBatch) -> StreamBatch:
    """A batch of no samples (all padding) shaped like `batch`: a rank whose share of
    the stream ended runs it so that every rank runs the same steps."""
    return StreamBatch([a[:0] for a in batch.xs], [a[:0] for a in batch.ys],
                       batch.sw[:0] if batch.sw is not None else None)


def shard(source, world, seed: int, collective: bool = True):
    """This rank's share of `source` (an ArraySource or StreamSource)."""
    if source is None:
        return None
    if isinstance(source, ArraySource):
        return ShardedArrays(source, world.rank, world.size, seed)
    return ShardedStream(source, world, seed, collective)
