"""64-byte aligned memory owned by numpy, and typed views into it."""
from __future__ import annotations

import numpy as np

ALIGN = 64
NP_DTYPE = {"float32": np.float32, "int32": np.int32}


def aligned_bytes(nbytes: int) -> np.ndarray:
    """A zeroed uint8 array of nbytes whose data pointer is 64-byte aligned."""
    raw = np.zeros(nbytes + ALIGN, dtype=np.uint8)
    skip = (-raw.ctypes.data) % ALIGN
    return raw[skip:skip + nbytes]


def view(buf: np.ndarray, offset: int, type) -> np.ndarray:
    dt = NP_DTYPE[type.dtype]
    n = type.size
    return buf[offset:offset + 4 * n].view(dt).reshape(type.shape)
