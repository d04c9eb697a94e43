"""Turning user data into validated arrays, and cutting it into batches.

Bad data is rejected here, before any compiled code runs, with the message a
Keras user would look for: the expected and received shapes, the non-numeric
dtype, the mismatched sample counts.

Data comes in two forms, as in Keras:

* arrays (numpy arrays, Python lists, a list of arrays for several inputs, a dict
  keyed by input name): an `ArraySource`, cut into batches of `batch_size`
  (shuffled each epoch unless shuffle=False);
* a stream of batches: a `Dataset`, a Python generator or iterator, any other
  iterable, or a keras-style PyDataset (`__getitem__` + `__len__`), each batch
  being `(x,)`, `(x, y)` or `(x, y, sample_weight)`: a `StreamSource`. Its batches
  may have any size; the trainer pads a short one to the compiled batch size.

An `EpochIterator` runs a source epoch by epoch with Keras' rules for
`steps_per_epoch`: without it an epoch is one pass over the data (a generator
runs until exhausted); with it an epoch is that many batches, continuing where
the previous epoch stopped and starting over when a re-iterable source ends.
"""
from __future__ import annotations

import math
import types
import warnings
from collections.abc import Iterator

import functools

import numpy as np

from .dataset import AUTOTUNE, Dataset  # noqa: F401  (kcompile.data.Dataset)
from .tracing import graph_dtype

__all__ = ["Dataset", "AUTOTUNE", "adapt_inputs", "adapt_targets", "batches",
           "check_cardinality", "unpack_x_y_sample_weight"]


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


def _from_dict(x: dict, names, what: str, where: str):
    """The values of a dict of arrays in the order of the model's input (or output) names."""
    if names is None:
        if len(x) == 1:
            return list(x.values())
        raise ValueError(f"{where}: received a dict of {what}s with keys {list(x)}, but the "
                         f"model's {what}s have no names to match them with")
    missing = [n for n in names if n not in x]
    if missing:
        raise ValueError(f"{where}: missing data for {what} {missing[0]!r}. You passed a data "
                         f"dictionary with keys {list(x)}. Expected the following keys: "
                         f"{list(names)}")
    extra = [k for k in x if k not in names]
    if extra:
        warnings.warn(f"{where}: the data dictionary has keys {extra} that match no model "
                      f"{what} ({list(names)}); they are ignored", stacklevel=4)
    return [x[n] for n in names]


def _structure(x, n_expected: int, what: str, where: str, names=None):
    if isinstance(x, dict):
        x = _from_dict(x, names, what, where)
    if isinstance(x, (list, tuple)) and n_expected > 1:
        if len(x) != n_expected:
            raise ValueError(f"{where}: the model expects {n_expected} {what} arrays, "
                             f"received {len(x)}")
        return list(x)
    if isinstance(x, tuple) and n_expected == 1 and len(x) == 1:
        return list(x)
    return [x]


def input_names(model):
    """The names data dicts are matched against: the keys of a functional model's dict
    of inputs, else its Input names; None for a model without named inputs."""
    struct = getattr(model, "_input_struct", None)
    if isinstance(struct, dict):
        return list(struct.keys())
    inputs = getattr(model, "_inputs", None)
    if inputs:
        return [t.name for t in inputs]
    spec = getattr(model, "_subclass_spec", None)      # a subclassed model called on a dict
    if spec is not None and spec.input_keys:
        return list(spec.input_keys)
    return None


def output_names(model):
    struct = getattr(model, "_output_struct", None)
    if isinstance(struct, dict):
        return list(struct.keys())
    return list(model.output_names)


def adapt_inputs(x, model, where: str) -> list[np.ndarray]:
    if x is None:
        raise ValueError(f"{where}: no input data (x is None)")
    if getattr(model, "_is_subclassed", False):
        # A subclassed model is built from the first data it sees, and checks later data.
        model._build_from_data(x)
    elif hasattr(model, "_ensure_input_shape") and getattr(model, "_input_shape", 0) is None:
        # A Sequential model without an input shape takes it from the first data it sees.
        first = next(iter(x.values())) if isinstance(x, dict) and len(x) == 1 else x
        model._ensure_input_shape(_as_array(first, "x", where))
    specs = model.input_specs
    if isinstance(x, list) and len(specs) == 1 and len(x) == 1 and hasattr(x[0], "shape") \
            and np.ndim(x[0]) == len(specs[0][0]) + 1:
        x = x[0]                   # [x]: a list holding the one input array
    xs = _structure(x, len(specs), "input", where, input_names(model))
    out = []
    for i, (a, (shape, dtype)) in enumerate(zip(xs, specs)):
        arr = _as_array(a, f"input {i}", where)
        if arr.ndim != len(shape) + 1 or any(d is not None and d != e
                                             for d, e in zip(shape, arr.shape[1:])):
            names = input_names(model)
            which = f"input {i}" + (f" ({names[i]!r})" if names and i < len(names) else "")
            raise ValueError(f"{where}: {which} of model {model.name!r} is incompatible: "
                             f"expected shape {(None, *shape)}, received shape {arr.shape}")
        out.append(_convert(arr, np.int32 if graph_dtype(dtype) == "int32" else np.float32, i,
                            where))
    # Axes declared None (e.g. LSTM(input_shape=[None, 1])) take this data's sizes: the
    # model is compiled for them (one executable per distinct shape).
    model._data_input_shapes = [a.shape[1:] for a in out]
    return out


def _convert(arr, dtype, i, where):
    """`arr` as `dtype`; integers the conversion would change (int64 ids past the int32
    range, or past 2**24 in float32) are an error naming the value, not silently
    different data."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    if arr.dtype.kind in "iu" and arr.size and arr.dtype.itemsize >= 4 and \
            np.abs(arr).max() >= (2 ** 24 if dtype == np.float32 else 2 ** 31 - 1):
        changed = out.astype(np.int64) != arr
        if changed.any():
            pos = tuple(int(k) for k in np.argwhere(changed)[0])
            raise ValueError(f"{where}: input {i} holds the integer {arr[pos]} (at position "
                             f"{pos}), which {np.dtype(dtype).name} cannot represent: it would "
                             f"become {out[pos]}")
    return out


def _wants_int_labels(loss) -> bool:
    fn = getattr(loss, "fn", None) or getattr(loss, "_fn", None)
    return getattr(fn, "__name__", "") == "sparse_categorical_crossentropy"


def targets_optional(model) -> bool:
    """Compiled with no loss and no metrics: the model trains on its add_loss terms, and
    `fit(x)` needs no targets (as Keras)."""
    return getattr(model, "_loss_spec", None) is None and not getattr(model, "_metric_spec", None) \
        and not getattr(model, "_weighted_metric_spec", None)


def adapt_targets(y, model, where: str) -> list[np.ndarray]:
    if y is None:
        if targets_optional(model):
            return []
        raise ValueError(f"{where}: no target data (y is None)")
    from . import losses
    n = len(model.output_names)
    if isinstance(y, dict):
        names = output_names(model)
        if not all(k in y for k in names) and all(k in y for k in model.output_names):
            names = list(model.output_names)
        y = _from_dict(y, names, "output", where)
    if isinstance(y, list) and n == 1 and len(y) == 1 and isinstance(y[0], np.ndarray):
        y = y[0]                   # [y]: a list holding the one target array
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


def sample_weights(sample_weight, ys, class_weight):
    """Per-sample weights from `sample_weight` and `class_weight` (None if neither)."""
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float32)
        if sw.ndim == 0:
            raise ValueError("`sample_weight` must have one value per sample")
        if sw.ndim != 1:
            sw = sw.reshape(len(sw), -1).mean(axis=1)
    if class_weight is not None and ys:
        y = ys[0]
        labels = y.argmax(axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
        cw = np.array([class_weight.get(int(c), 1.0) for c in labels], np.float32)
        sw = cw if sw is None else sw * cw
    return sw


def batches(n: int, batch_size: int, order=None):
    """(indices, real count) per batch; `order` is a permutation or None."""
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size] if order is not None else \
            np.arange(start, min(start + batch_size, n))
        yield idx, len(idx)


def unpack_x_y_sample_weight(data):
    """(x,), (x, y) or (x, y, sample_weight) -> (x, y, sample_weight), as Keras."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError("Data is expected to be in format `x`, `(x,)`, `(x, y)`, or "
                     f"`(x, y, sample_weight)`, found: {data!r}")


# ------------------------------------------------------------------------------ batches
def y_specs(ys):
    return [(a.shape[1:], "int32" if a.dtype == np.int32 else "float32") for a in ys]


class ArrayBatch:
    """Rows `idx` of in-memory arrays; fed to a compiled step by one fancy index each."""

    def __init__(self, source, idx):
        self.source, self.idx, self.real = source, idx, len(idx)

    @property
    def y_specs(self):
        return self.source.y_specs

    def feeds(self, size, targets=True):
        s = self.source
        return feeds(s.xs, s.ys if targets else [], s.sw if targets else None, self.idx,
                     self.real, size)


def feeds(xs, ys, sw, idx, real, batch_size):
    """The batch `idx` (padded by repeating row 0 up to batch_size) as entry inputs."""
    if real < batch_size:
        idx = np.concatenate([idx, np.zeros(batch_size - real, dtype=idx.dtype)])
    out = {f"x{i}": a[idx] for i, a in enumerate(xs)}
    out.update({f"y{i}": a[idx] for i, a in enumerate(ys)})
    out["mask"] = row_mask(real, batch_size)
    out["sample_weight"] = sw[idx] if sw is not None else row_mask(batch_size, batch_size)
    return out


@functools.lru_cache(maxsize=64)
def row_mask(real: int, size: int) -> np.ndarray:
    """1.0 for the `real` rows of a batch padded to `size`, 0.0 for the padding. Read-only
    and shared: a step copies it into the arena, so no array is made per step."""
    mask = np.zeros(size, np.float32)
    mask[:real] = 1.0
    mask.setflags(write=False)
    return mask


def _pad(a, size):
    n = len(a)
    if n == size:
        return a
    out = np.empty((size, *a.shape[1:]), a.dtype)
    out[:n] = a
    out[n:] = a[0] if n else 0      # real values: the masked rows must not make NaNs
    return out


class StreamBatch:
    """One batch from a stream, already validated; padded to the compiled size."""

    def __init__(self, xs, ys, sw):
        self.xs, self.ys, self.sw = xs, ys, sw
        self.real = len(xs[0])

    @property
    def y_specs(self):
        return y_specs(self.ys)

    def feeds(self, size, targets=True):
        if self.real > size:
            raise ValueError(f"a batch of {self.real} samples does not fit the compiled batch "
                             f"size {size}")
        out = {f"x{i}": _pad(a, size) for i, a in enumerate(self.xs)}
        if targets:
            out.update({f"y{i}": _pad(a, size) for i, a in enumerate(self.ys)})
        out["mask"] = row_mask(self.real, size)
        sw = self.sw if targets and self.sw is not None else None
        out["sample_weight"] = _pad(sw, size) if sw is not None else row_mask(size, size)
        return out


class ArraySource:
    """In-memory arrays cut into batches of `batch_size`, reshuffled on each pass."""
    fixed_size = True

    def __init__(self, xs, ys, sw, batch_size, shuffle=False):
        self.xs, self.ys, self.sw = xs, ys or [], sw
        self.n = len(xs[0])
        # A batch larger than the data is the data in one batch (not an arena sized for
        # batch_size=10**9 samples).
        self.batch_size = max(1, min(batch_size, self.n))
        batch_size = self.batch_size
        self.shuffle = shuffle
        self.num_batches = -(-self.n // batch_size)
        self.y_specs = y_specs(self.ys)

    def iterator(self):
        n, bs = self.n, self.batch_size
        order = None
        if self.shuffle == "batch":
            # Keras' shuffle="batch": the order of the batch-sized chunks, and inside each.
            chunks = [np.random.permutation(np.arange(s, min(s + bs, n)))
                      for s in range(0, n, bs)]
            order = np.concatenate([chunks[i] for i in np.random.permutation(len(chunks))])
        elif self.shuffle:
            order = np.random.permutation(n)
        for idx, _ in batches(n, bs, order):
            yield ArrayBatch(self, idx)

    def on_epoch_end(self):
        pass


def is_batch_stream(x) -> bool:
    """Whether `x` is a stream of batches rather than array data."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes, int, float)):
        return False
    if isinstance(x, (Dataset, types.GeneratorType, Iterator)):
        return True
    if hasattr(x, "__array__") or hasattr(x, "__array_interface__") or hasattr(x, "shape"):
        return False
    return hasattr(x, "__iter__") or (hasattr(x, "__getitem__") and hasattr(x, "__len__"))


def _kind(x):
    if isinstance(x, Dataset):
        return "Dataset"
    if isinstance(x, types.GeneratorType):
        return "generator"
    return type(x).__name__


class StreamSource:
    """Batches from a Dataset, generator, iterator, iterable or PyDataset, validated
    against the model one by one."""
    fixed_size = False

    def __init__(self, data, model, where, targets=True, class_weight=None, shuffle=False):
        self.data, self.model, self.where = data, model, where
        self.targets, self.class_weight = targets, class_weight
        self.shuffle = shuffle
        self._indexed = False
        if isinstance(data, Dataset):
            card = int(data.cardinality())
            self.num_batches = card if card >= 0 else None
        elif isinstance(data, Iterator):
            self.num_batches = None           # single use: iterating it continues it
        elif not hasattr(data, "__iter__") or hasattr(data, "__getitem__") and \
                hasattr(data, "__len__") and hasattr(data, "on_epoch_end"):
            self._indexed = True              # a keras PyDataset / Sequence
            nb = getattr(data, "num_batches", None)
            self.num_batches = nb if isinstance(nb, int) else len(data)
        else:
            try:
                self.num_batches = len(data)
            except TypeError:
                self.num_batches = None
        self._y_first = None

    def _raw(self):
        data = self.data
        if self._indexed:
            if hasattr(data, "on_epoch_begin"):
                data.on_epoch_begin()         # a PyDataset's hook
            order = np.arange(self.num_batches)
            if self.shuffle:
                order = np.random.permutation(order)
            for i in order:
                yield data[int(i)]
        elif isinstance(data, Iterator):
            yield from data
        else:
            yield from iter(data)

    def iterator(self):
        for element in self._raw():
            yield self.adapt(element)

    def on_epoch_end(self):
        if self._indexed and hasattr(self.data, "on_epoch_end"):
            self.data.on_epoch_end()          # a PyDataset's hook

    def adapt(self, element):
        where = self.where
        if isinstance(element, StreamBatch):
            return element
        x, y, sw = unpack_x_y_sample_weight(element)
        xs = adapt_inputs(x, self.model, where)
        if not self.targets:
            return StreamBatch(xs, [], None)
        if y is None and not targets_optional(self.model):
            raise ValueError(f"{where}: the {_kind(self.data)} yields batches without targets; "
                             f"expected `(x, y)` or `(x, y, sample_weight)` tuples")
        ys = adapt_targets(y, self.model, where)
        sw = sample_weights(sw, ys, self.class_weight)
        check_cardinality(xs, ys, sw)
        specs = y_specs(ys)
        if self._y_first is None:
            self._y_first = specs
        elif not all(_same_fixed_axes(s, f, v) for (s, _), (f, _), v in
                     zip(specs, self._y_first, _variable_output_axes(self.model, len(specs)))):
            raise ValueError(f"{where}: a batch has targets of shape "
                             f"{[(None, *s) for s, _ in specs]}, the first had "
                             f"{[(None, *s) for s, _ in self._y_first]}")
        return StreamBatch(xs, ys, sw)


def _variable_output_axes(model, n):
    """Per output, the per-sample axes the model declares None (e.g. time steps of a
    sequence output): targets may differ from batch to batch along them."""
    outputs = getattr(model, "_outputs", None)
    if outputs:
        shapes = [t.shape for t in outputs]
    else:
        layers = getattr(model, "layers", None)
        last = getattr(layers[-1], "output_shape", None) if layers else None
        shapes = [last] if isinstance(last, tuple) else []
    axes = [{j for j, d in enumerate(s[1:]) if d is None} for s in shapes]
    return (axes + [set()] * n)[:n]


def _same_fixed_axes(shape, first, variable):
    return len(shape) == len(first) and all(a == b or j in variable
                                            for j, (a, b) in enumerate(zip(shape, first)))


def _interrupted_warning():
    warnings.warn("Your input ran out of data; interrupting training. Make sure that your "
                  "dataset or generator can generate at least `steps_per_epoch * epochs` "
                  "batches. You may need to use the `.repeat()` function when building your "
                  "dataset.", stacklevel=4)


class EpochIterator:
    """Yields (step, batch) for one epoch at a time, with Keras' `steps_per_epoch` rules."""

    def __init__(self, source, steps_per_epoch=None):
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or
                                            not isinstance(steps_per_epoch, (int, np.integer))
                                            or steps_per_epoch < 1):
            raise ValueError(f"`steps_per_epoch`/`steps` must be a positive integer or None, "
                             f"received {steps_per_epoch!r}")
        self.source = source
        self.steps_per_epoch = int(steps_per_epoch) if steps_per_epoch else None
        self._num_batches = source.num_batches
        self._current = None
        self._seen = 0
        self.exhausted = False      # the last epoch found no data at all

    @property
    def num_batches(self):
        return self.steps_per_epoch or self._num_batches

    def epoch(self):
        steps = self.steps_per_epoch or self._num_batches
        count = 0
        self.exhausted = False
        if steps:
            if self._current is None or self.steps_per_epoch is None:
                self._current = iter(self.source.iterator())
                self._seen = 0
            for step in range(steps):
                if self._num_batches and self._seen >= self._num_batches:
                    if self.steps_per_epoch:
                        _interrupted_warning()
                    break
                try:
                    batch = next(self._current)
                except StopIteration:
                    if self._num_batches is None:
                        self._num_batches = self._seen or None
                    _interrupted_warning()
                    self._current = None
                    break
                self._seen += 1
                count += 1
                yield step, batch
            if self._num_batches and self._seen >= self._num_batches:
                self._current = None
        else:
            for step, batch in enumerate(self.source.iterator()):
                count += 1
                yield step, batch
            if count:
                self._num_batches = count
        self.exhausted = count == 0
        self.source.on_epoch_end()


def make_source(x, y, sample_weight, class_weight, batch_size, shuffle, model, where,
                targets=True, steps=None):
    """An ArraySource or StreamSource for fit/evaluate/predict's data arguments."""
    if is_batch_stream(x):
        kind = _kind(x)
        if y is not None:
            raise ValueError(f"When providing `x` as a {kind}, `y` should not be passed. "
                             f"Instead, the targets should be included as part of the {kind}.")
        if sample_weight is not None:
            raise ValueError(f"When providing `x` as a {kind}, `sample_weights` should not be "
                             f"passed. Instead, the sample weights should be included as part "
                             f"of the {kind}.")
        return StreamSource(x, model, where, targets, class_weight, shuffle)
    batch_size = check_batch_size(batch_size)
    xs = adapt_inputs(x, model, where)
    if targets:
        ys = adapt_targets(y, model, where)
        sw = sample_weights(sample_weight, ys, class_weight)
        check_cardinality(xs, ys, sw)
    else:
        ys, sw = [], None
        check_cardinality(xs, [])
    if batch_size is None:
        batch_size = int(math.ceil(len(xs[0]) / steps)) if steps else 32
    return ArraySource(xs, ys, sw, batch_size, shuffle)


def check_batch_size(batch_size):
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
            batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, received {batch_size!r}")
    return int(batch_size)


def split_arrays(xs, ys, sw, validation_split):
    """Keras' train_validation_split on adapted arrays: the last `validation_split` of
    the samples become the validation data."""
    if not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1), received {validation_split}")
    n = len(xs[0])
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to split "
                         f"it into a validation and training set as specified by "
                         f"`validation_split={validation_split}`. Either provide more data, or a "
                         f"different value for the `validation_split` argument.")
    cut = lambda arrays, lo, hi: [a[lo:hi] for a in arrays]     # noqa: E731
    return ((cut(xs, 0, split_at), cut(ys, 0, split_at), sw[:split_at] if sw is not None else None),
            (cut(xs, split_at, n), cut(ys, split_at, n), sw[split_at:] if sw is not None else None))
