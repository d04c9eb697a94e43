"""timeseries_dataset_from_array (keras.utils.timeseries_dataset_from_array)."""
from __future__ import annotations

import numpy as np


def _check(data, start_index, end_index, sampling_rate, sequence_stride, sequence_length):
    n = len(data)
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: "
                             f"start_index={start_index}")
        if start_index >= n:
            raise ValueError(f"`start_index` must be lower than the length of the data. "
                             f"Received: start_index={start_index}, for data of length {n}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: "
                             f"start_index={start_index}, and end_index={end_index} ")
        if end_index >= n:
            raise ValueError(f"`end_index` must be lower than the length of the data. "
                             f"Received: end_index={end_index}, for data of length {n}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    # Keras' checks and messages: each positive, the first two also below the length.
    for name, value, below_length in (("sampling_rate", sampling_rate, True),
                                      ("sequence_stride", sequence_stride, True),
                                      ("sequence_length", sequence_length, False)):
        if value <= 0:
            raise ValueError(f"`{name}` must be higher than 0. Received: {name}={value}")
        if below_length and value >= n:
            raise ValueError(f"`{name}` must be lower than the length of the data. "
                             f"Received: {name}={value}, for data of length {n}")


class TimeseriesBatches:
    """The windows of a series as a re-iterable of numpy batches: `(x, y)` pairs, or `x`
    alone when there are no targets. `len()` is the number of batches."""

    def __init__(self, data, targets, positions, offsets, batch_size):
        self.data, self.targets = data, targets
        self.positions, self.offsets = positions, offsets
        self.batch_size = batch_size

    def _element(self, pos):
        x = self.data[pos[:, None] + self.offsets] if pos.ndim else self.data[pos + self.offsets]
        return x if self.targets is None else (x, self.targets[pos])

    def __iter__(self):
        if self.batch_size is None:
            for p in self.positions:
                yield self._element(np.asarray(p))
            return
        for i in range(0, len(self.positions), self.batch_size):
            yield self._element(self.positions[i:i + self.batch_size])

    def __len__(self):
        if self.batch_size is None:
            return len(self.positions)
        return -(-len(self.positions) // self.batch_size)

    def cardinality(self):
        return len(self)

    def as_numpy_iterator(self):
        return iter(self)


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False, seed=None,
                                  start_index=None, end_index=None):
    """Sliding windows over a series, batched, as Keras builds them.

    Window i covers data[start + p_i : start + p_i + sequence_length * sampling_rate :
    sampling_rate], with p_i = i * sequence_stride, and its target is
    targets[start + p_i]. Windows that would run past `end_index` (or past the
    targets) are left out. `shuffle` permutes the windows with
    numpy.random.RandomState(seed), as Keras does (Keras then shuffles again inside
    a tf.data buffer; that second shuffle is not reproduced).

    Returns a `kcompile.data.Dataset` of numpy batches `(x, y)` (`x` alone when
    `targets` is None), which `model.fit` takes directly.
    """
    _check(data, start_index, end_index, sampling_rate, sequence_stride, sequence_length)
    data = np.asarray(data)
    start = start_index or 0
    end = end_index if end_index is not None else len(data)
    num_seqs = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)
        num_seqs = min(num_seqs, len(targets) - start)
    positions = np.arange(0, max(num_seqs, 0), sequence_stride, dtype=np.int64)
    if shuffle:
        if seed is None:
            seed = np.random.randint(1e6)
        np.random.RandomState(seed).shuffle(positions)
    offsets = np.arange(0, sequence_length * sampling_rate, sampling_rate, dtype=np.int64)
    window_data = data[start:end]
    window_targets = targets[start:] if targets is not None else None
    batches = TimeseriesBatches(window_data, window_targets, positions, offsets, batch_size)
    try:
        from ..data import Dataset
    except ImportError:
        return batches
    return _as_dataset(Dataset, batches)


def _as_dataset(Dataset, batches):
    """The same windows as a kcompile.data.Dataset (lazy: windows are cut per batch)."""
    ds = Dataset.from_tensor_slices(batches.positions)
    if batches.batch_size is not None:
        ds = ds.batch(batches.batch_size)
    return ds.map(lambda pos: batches._element(np.asarray(pos)))
