"""The batches `adapt(data)` reads: an array, or an iterable of arrays / (x, y) tuples
(a Dataset, a PyDataset, a generator, a list of batches)."""
from __future__ import annotations

import numpy as np


def _x(batch):
    return batch[0] if isinstance(batch, tuple) else batch


def adapt_batches(data, layer_name, steps=None):
    """Yield float64 numpy batches of `data`."""
    if isinstance(data, np.ndarray) or hasattr(data, "__array__") and not hasattr(data, "__iter__"):
        yield np.asarray(data, np.float64)
        return
    if isinstance(data, (list, tuple)) and data and not hasattr(data[0], "shape") \
            and not isinstance(data[0], (list, tuple)):
        yield np.asarray(data, np.float64)      # a flat list of numbers
        return
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(
            data, (list, tuple)):                          # a PyDataset
        items = (data[i] for i in range(len(data)))
    elif hasattr(data, "__iter__"):
        items = iter(data)
    else:
        raise TypeError(f"Unsupported data type: {type(data)}. `adapt` of layer "
                        f"{layer_name!r} supports numpy arrays and iterables of batches "
                        f"(e.g. a list, a generator, a Dataset).")
    n = 0
    for batch in items:
        if steps is not None and n >= steps:
            break
        x = _x(batch)
        if not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
            raise TypeError(f"adapt() expects an iterable that yields arrays with a `.shape` "
                            f"attribute. Got an element of type {type(x).__name__}.")
        yield np.asarray(x, np.float64)
        n += 1
    if n == 0:
        raise ValueError("adapt() received an empty iterable (no batches). Expected at least "
                         "one batch.")
