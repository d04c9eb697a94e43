"""Core ops of `keras.ops`: dtype conversion, shapes, static slices, stop_gradient."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from .dispatch import as_array, graph_dtype, is_symbolic, keras_op, standardize_dtype


@keras_op("x", bool_result=lambda a: standardize_dtype(a["dtype"]) == "bool")
def cast(x, dtype):
    d = standardize_dtype(dtype)
    if d == "bool":
        return F.not_equal(x, 0)
    return F.cast(x, d)


def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    """A symbolic value stays symbolic (cast if `dtype` is given); anything else becomes
    a numpy array of float32, int32 (or bool)."""
    if is_symbolic(x):
        return cast(x, dtype) if dtype is not None else x
    if dtype is not None:
        d = standardize_dtype(dtype)
        return np.asarray(x).astype({"float32": np.float32, "int32": np.int32, "bool": bool}[d])
    arr = np.asarray(x)
    return arr if arr.dtype == bool else as_array(arr)


def convert_to_numpy(x):
    if isinstance(x, Sym) or is_symbolic(x):
        raise TypeError(f"convert_to_numpy: {x!r} is symbolic (a value of the graph being "
                        f"traced); it has no numpy value until the compiled model runs")
    return np.asarray(x)


def is_tensor(x):
    return isinstance(x, (np.ndarray, Sym)) or hasattr(x, "__sym__")


def shape(x):
    """The static shape, a tuple of ints (every dimension is known when traced)."""
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def dtype(x):
    if isinstance(x, Sym):
        return x.dtype
    d = getattr(x, "dtype", None)
    return standardize_dtype(d if d is not None else np.asarray(x).dtype)


@keras_op("variable")
def stop_gradient(variable):
    return F.stop_gradient(variable)


def _static_starts(start_indices, what):
    if any(is_symbolic(s) for s in np.atleast_1d(np.asarray(start_indices, dtype=object))):
        raise ValueError(f"{what}: start_indices must be Python integers: a start read from "
                         f"a symbolic value would give a data-dependent slice")
    return [int(s) for s in start_indices]


@keras_op("inputs")
def slice(inputs, start_indices, shape):
    start = _static_starts(start_indices, "slice")
    size = [inputs.shape[i] - s if d in (None, -1) else int(d)
            for i, (s, d) in enumerate(zip(start, shape))]
    if len(start) != inputs.ndim or len(size) != inputs.ndim:
        raise ValueError(f"slice: start_indices {tuple(start_indices)} and shape {tuple(shape)} "
                         f"must have one entry per axis of inputs.shape={inputs.shape}")
    for s, n, d in zip(start, size, inputs.shape):
        if s < 0 or n < 0 or s + n > d:
            raise ValueError(f"slice: start_indices {tuple(start)} with shape {tuple(size)} are "
                             f"out of bounds for inputs.shape={inputs.shape}")
    return F.slice(inputs, start, size)


@keras_op("inputs", "updates")
def slice_update(inputs, start_indices, updates):
    start = _static_starts(start_indices, "slice_update")
    if not isinstance(updates, Sym):
        updates = F.lift(inputs.g, as_array(updates), graph_dtype(as_array(updates).dtype))
    if len(start) != inputs.ndim or updates.ndim != inputs.ndim or any(
            s < 0 or s + u > d for s, u, d in zip(start, updates.shape, inputs.shape)):
        raise ValueError(f"slice_update: updates.shape={updates.shape} at start_indices "
                         f"{tuple(start)} do not fit in inputs.shape={inputs.shape}")
    hi = [d - s - u for s, u, d in zip(start, updates.shape, inputs.shape)]
    dtype = inputs.dtype
    placed = F.pad(F.cast(updates, "float32"), start, hi)
    inside = np.pad(np.ones(updates.shape, np.float32), list(zip(start, hi)))
    out = F.select(F.lift(inputs.g, inside), placed, F.cast(inputs, "float32"))
    return F.cast(out, dtype)
