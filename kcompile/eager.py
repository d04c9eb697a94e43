"""Arrays as Keras code handles eager tensors: a numpy array that also answers `.numpy()`.

Keras programs written for a tensor backend call `.numpy()` on what a dataset yields
(`for x, y in ds.take(1): x.numpy()`) and on eager results. kcompile's eager values are
numpy arrays; `EagerTensor` is a view of one with that method, so the same code runs.
`np.asarray(t)` gives the plain array back (no copy).
"""
from __future__ import annotations

import numpy as np


class EagerTensor(np.ndarray):
    """A numpy array with the eager-tensor methods Keras code calls."""

    def numpy(self) -> np.ndarray:
        """The values as a plain numpy array (a copy, as a tensor's `.numpy()` is)."""
        return np.array(self)

    def __repr__(self):
        return f"<EagerTensor shape={self.shape}, dtype={self.dtype}, numpy=\n{np.asarray(self)!r}>"


def eager(value):
    """`value` (an array or numpy scalar) as an EagerTensor; other values unchanged."""
    if isinstance(value, EagerTensor) or not isinstance(value, (np.ndarray, np.generic)):
        return value
    return np.asarray(value).view(EagerTensor)


def eager_structure(value):
    """Every array leaf of a tuple / list / dict structure as an EagerTensor."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(eager_structure(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(eager_structure(v) for v in value)
    if isinstance(value, dict):
        return {k: eager_structure(v) for k, v in value.items()}
    return eager(value)
