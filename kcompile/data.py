"""Turning user data into validated arrays, and cutting it into batches.

Bad data is rejected here, before any compiled code runs, with the message a
Keras user would look for: the expected and received shapes, the non-numeric
dtype, the mismatched sample counts.
"""
from __future__ import annotations

import numpy as np


def _as_array(a, what: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as e:     # ragged lists and the like
        raise ValueError(f"{where}: could not convert {what} to an array: {e}") from None
    if arr.dtype == object or arr.dtype.kind in "USVMmO":
        raise TypeError(f"{where}: {what} must be numeric, received an array of dtype "
                        f"{arr.dtype}" + (f" (e.g. {arr.flat[0]!r})" if arr.size else ""))
    if arr.dtype.kind == "c":
        raise TypeError(f"{where}: {what} must be real-valued, received dtype {arr.dtype}")
    return arr


def _structure(x, n_expected: int, what: str, where: str):
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)) and n_expected > 1:
        if len(x) != n_expected:
            raise ValueError(f"{where}: the model expects {n_expected} {what} arrays, "
                             f"received {len(x)}")
        return list(x)
    if isinstance(x, tuple) and n_expected == 1 and len(x) == 1:
        return list(x)
    return [x]


def adapt_inputs(x, model, where: str) -> list[np.ndarray]:
    if x is None:
        raise ValueError(f"{where}: no input data (x is None)")
    if hasattr(model, "_ensure_input_shape") and getattr(model, "_input_shape", 0) is None:
        # A Sequential model without an input shape takes it from the first data it sees.
        model._ensure_input_shape(_as_array(x, "x", where))
    specs = model.input_specs
    xs = _structure(x, len(specs), "input", where)
    out = []
    for i, (a, (shape, dtype)) in enumerate(zip(xs, specs)):
        arr = _as_array(a, f"input {i}", where)
        if arr.shape[1:] != tuple(shape) or arr.ndim != len(shape) + 1:
            raise ValueError(f"{where}: input {i} of model {model.name!r} is incompatible: "
                             f"expected shape {(None, *shape)}, received shape {arr.shape}")
        out.append(np.ascontiguousarray(arr, dtype=np.int32 if dtype == "int32" else np.float32))
    return out


def _wants_int_labels(loss) -> bool:
    fn = getattr(loss, "fn", None) or getattr(loss, "_fn", None)
    return getattr(fn, "__name__", "") == "sparse_categorical_crossentropy"


def adapt_targets(y, model, where: str) -> list[np.ndarray]:
    if y is None:
        raise ValueError(f"{where}: no target data (y is None)")
    from . import losses
    n = len(model.output_names)
    ys = _structure(y, n, "target", where)
    specs = model._per_output(model._loss_spec, n, "loss")
    out = []
    for i, a in enumerate(ys):
        arr = _as_array(a, f"target {i}", where)
        if arr.ndim == 0:
            raise ValueError(f"{where}: targets must have a batch axis, received a scalar")
        loss = losses.get(specs[i]) if specs[i] is not None else None
        if loss is not None and _wants_int_labels(loss):
            if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
                raise ValueError(f"{where}: sparse categorical labels must be integers")
            out.append(np.ascontiguousarray(arr, dtype=np.int32))
        else:
            out.append(np.ascontiguousarray(arr, dtype=np.float32))
    return out


def check_cardinality(xs, ys, sw=None) -> None:
    sizes = {len(a) for a in xs} | {len(a) for a in ys}
    if sw is not None:
        sizes.add(len(sw))
    if len(sizes) > 1:
        raise ValueError("Data cardinality is ambiguous: "
                         f"x sizes: {', '.join(str(len(a)) for a in xs)}; "
                         f"y sizes: {', '.join(str(len(a)) for a in ys)}"
                         + (f"; sample_weight size: {len(sw)}" if sw is not None else "")
                         + ". Make sure all arrays contain the same number of samples.")
    if 0 in sizes:
        raise ValueError("The data contains no samples")


def batches(n: int, batch_size: int, order=None):
    """(indices, real count) per batch; `order` is a permutation or None."""
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size] if order is not None else \
            np.arange(start, min(start + batch_size, n))
        yield idx, len(idx)
