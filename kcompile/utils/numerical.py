"""to_categorical and normalize (keras.utils)."""
from __future__ import annotations

import numpy as np


def to_categorical(x, num_classes=None):
    """Class vector (integers) -> one-hot float32 matrix, as keras.utils.to_categorical."""
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or (x.dtype.kind == "f" and np.any(x != np.round(x))):
        raise ValueError("to_categorical expects integer class labels")
    x = x.astype(np.int64)
    shape = x.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    x = x.reshape(-1)
    if x.size and x.min() < 0:
        raise ValueError(f"to_categorical: negative class label {int(x.min())}")
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    elif x.size and x.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(x.max())} is out of range for "
                         f"num_classes={num_classes}")
    out = np.zeros((x.size, num_classes), dtype=np.float32)
    out[np.arange(x.size), x] = 1.0
    return out.reshape(*shape, num_classes)


def normalize(x, axis=-1, order=2):
    """`x` divided by its `order`-norm along `axis` (zero norms left as 1), as
    keras.utils.normalize."""
    x = np.asarray(x)
    if x.dtype.kind not in "fc":
        x = x.astype(np.float32)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis, keepdims=True))
    norm[norm == 0] = 1
    return x / norm
