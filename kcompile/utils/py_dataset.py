"""`keras.utils.PyDataset` (and its Keras 2 name `Sequence`): batches by index.

A subclass implements `__len__` (the number of batches) and `__getitem__(index)`
(one batch: `x`, `(x, y)` or `(x, y, sample_weight)`); `fit` calls `on_epoch_end`
after every epoch (a PyDataset reshuffles there) and `on_epoch_begin` before it.
`workers`, `use_multiprocessing` and `max_queue_size` are accepted as Keras takes
them; batches are read in the training thread, one at a time, in order.
"""
from __future__ import annotations


class PyDataset:
    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: "
                                 f"{name}={value!r}")
        self._workers = workers
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = max_queue_size

    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = value

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement `__getitem__(index)`, "
                                  f"returning the batch at that index")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `__len__()`, the "
                                  f"number of batches")

    @property
    def num_batches(self):
        """The number of batches (`len(self)`), or None for an endless dataset."""
        try:
            return len(self)
        except NotImplementedError:
            return None

    def on_epoch_begin(self):
        """Called before every epoch."""

    def on_epoch_end(self):
        """Called after every epoch."""


Sequence = PyDataset
