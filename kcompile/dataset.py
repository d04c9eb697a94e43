"""`kcompile.data.Dataset`: the part of tf.data's Dataset that Keras input pipelines use,
over numpy arrays.

A Dataset is a re-iterable, lazy sequence of elements; an element is a numpy array
(or numpy scalar), or a tuple / dict of them. Transformations return new datasets
and run when the dataset is iterated, with tf.data's semantics:

    ds = Dataset.from_tensor_slices((X, y))                 # elements (X[i], y[i])
    ds = ds.window(11, shift=1, drop_remainder=True)        # elements (Dataset, Dataset)
    ds = ds.flat_map(lambda x, y: Dataset.zip((x.batch(11), y.batch(11))))
    ds = ds.map(lambda x, y: (x[:-1], y[-1]))
    ds = ds.shuffle(1000).batch(32).prefetch(1)
    model.fit(ds, epochs=10)

A function given to map/filter/flat_map is called with the element's components as
arguments when the element is a tuple (`lambda x, y: ...`), with the element
otherwise. `window` yields, for each window, the element structure with a Dataset
in place of each component: `.batch(size)` on it gives the window as one array.

Differences from tf.data: nothing runs in parallel (num_parallel_calls and
prefetch's buffer are accepted and ignored), `cache(filename)` caches in memory,
values are numpy arrays rather than tensors (`as_numpy_iterator()` yields the
same), and `cardinality()` returns an int (with a `.numpy()`).
"""
from __future__ import annotations

import collections
import itertools
import os

import numpy as np

from .eager import eager_structure

AUTOTUNE = -1
INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2

__all__ = ["Dataset", "AUTOTUNE", "INFINITE_CARDINALITY", "UNKNOWN_CARDINALITY"]


class _Cardinality(int):
    """An int that also answers `.numpy()`, as tf's cardinality tensor does."""

    def numpy(self):
        return np.int64(self)


# --------------------------------------------------------------------------- structures
def _is_namedtuple(s):
    return isinstance(s, tuple) and hasattr(s, "_fields")


def _map_structure(fn, s):
    if _is_namedtuple(s):
        return type(s)(*(_map_structure(fn, v) for v in s))
    if isinstance(s, tuple):
        return tuple(_map_structure(fn, v) for v in s)
    if isinstance(s, dict):
        return {k: _map_structure(fn, v) for k, v in s.items()}
    return fn(s)


def _flatten(s):
    if isinstance(s, tuple):
        return [leaf for v in s for leaf in _flatten(v)]
    if isinstance(s, dict):
        return [leaf for v in s.values() for leaf in _flatten(v)]
    return [s]


def _pack_like(template, leaves):
    it = iter(leaves)
    out = _map_structure(lambda _: next(it), template)
    return out


def _leaf(v):
    """A component value as tf would hold it: Datasets as they are, else numpy."""
    if isinstance(v, (Dataset, np.ndarray, np.generic)):
        return v
    return np.asarray(v)


def _normalize(value):
    """A function's result as an element: lists become tuples (as tf.data does),
    leaves become numpy values."""
    if isinstance(value, list):
        value = tuple(value)
    return _map_structure(_leaf, value)


def _call(fn, element):
    return fn(*element) if isinstance(element, tuple) and not _is_namedtuple(element) \
        else fn(element)


def _stack(elements, what="batch"):
    template = elements[0]
    columns = zip(*(_flatten(e) for e in elements))
    leaves = []
    for c, column in enumerate(columns):
        if isinstance(column[0], Dataset):
            raise TypeError(f"Cannot {what} an element holding a Dataset (a window): map it "
                            f"to arrays first, e.g. with flat_map(lambda w: w.batch(size))")
        first = np.shape(column[0])
        for j, v in enumerate(column):
            if np.shape(v) != first:
                raise ValueError(f"Cannot batch tensors with different shapes in component "
                                 f"{c}. First element had shape {list(first)} and element {j} "
                                 f"had shape {list(np.shape(v))}.")
        leaves.append(np.stack(column))
    return _pack_like(template, leaves)


def _card_min(cards):
    if any(c == UNKNOWN_CARDINALITY for c in cards):
        return UNKNOWN_CARDINALITY
    finite = [c for c in cards if c >= 0]
    return min(finite) if finite else INFINITE_CARDINALITY


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, received {value!r}")
    return int(value)


# ------------------------------------------------------------------------------ Dataset
class Dataset:
    """A re-iterable, lazily transformed sequence of elements (tf.data.Dataset's API)."""

    def __init__(self, make_iterator, cardinality=UNKNOWN_CARDINALITY):
        self._make_iterator = make_iterator
        self._cardinality = int(cardinality)

    # -- iteration ----------------------------------------------------------------------
    def __iter__(self):
        # Elements come out as eager tensors (numpy arrays with `.numpy()`), as tf's do.
        return map(eager_structure, self._make_iterator())

    def as_numpy_iterator(self):
        """An iterator over the elements as plain numpy values."""
        def gen():
            for element in self._make_iterator():
                for leaf in _flatten(element):
                    if isinstance(leaf, Dataset):
                        raise TypeError("Dataset.as_numpy_iterator() is not supported for "
                                        "datasets that produce values of type Dataset")
                yield _map_structure(lambda v: np.asarray(v) if isinstance(v, np.ndarray)
                                     else v, element)
        return gen()

    def cardinality(self):
        """The number of elements; INFINITE_CARDINALITY (-1) or UNKNOWN_CARDINALITY (-2)."""
        return _Cardinality(self._cardinality)

    def __len__(self):
        if self._cardinality == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if self._cardinality == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return self._cardinality

    def __bool__(self):
        return True

    def __repr__(self):
        card = {INFINITE_CARDINALITY: "infinite", UNKNOWN_CARDINALITY: "unknown"}.get(
            self._cardinality, self._cardinality)
        return f"<{type(self).__name__} cardinality={card}>"

    # -- sources ------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors, name=None):
        """One element per slice along the first axis of every component (a tuple or
        dict of arrays gives tuple or dict elements; a list is one array, as in tf)."""
        struct = _map_structure(lambda v: v if isinstance(v, np.ndarray) else np.asarray(v),
                                tuple(tensors) if _is_namedtuple(tensors) else tensors)
        if isinstance(struct, list):
            struct = np.asarray(struct)
        leaves = _flatten(struct)
        if not leaves:
            raise ValueError("from_tensor_slices() needs at least one component")
        for leaf in leaves:
            if leaf.ndim == 0:
                raise ValueError("Unbatching a tensor is only supported for rank >= 1")
        sizes = {len(leaf) for leaf in leaves}
        if len(sizes) > 1:
            raise ValueError(f"Dimensions {sorted(sizes)} in the components of "
                             f"from_tensor_slices() must be equal: every component needs the "
                             f"same number of slices")
        return _Slices(struct)

    @staticmethod
    def from_tensors(tensors, name=None):
        """A dataset of one element: `tensors`."""
        element = _normalize(tensors)
        return Dataset(lambda: iter([element]), 1)

    @staticmethod
    def range(*args, dtype=np.int64, name=None):
        """Like Python's range: Dataset.range(5), Dataset.range(2, 10, 2)."""
        r = range(*(int(a) for a in args))
        dt = np.dtype(dtype)
        return Dataset(lambda: (dt.type(i) for i in r), len(r))

    @staticmethod
    def zip(*args, datasets=None, name=None):
        """Elements of several datasets side by side: zip((a, b)), zip(a, b) or
        zip({"x": a, "y": b}); stops at the shortest."""
        if datasets is None:
            datasets = args[0] if len(args) == 1 and not isinstance(args[0], Dataset) else args
        elif args:
            raise TypeError("Both `*args` and `datasets` were given to Dataset.zip()")
        if isinstance(datasets, list):
            datasets = tuple(datasets)
        flat = _flatten(datasets)
        for d in flat:
            if not isinstance(d, Dataset):
                raise TypeError(f"Dataset.zip() expects datasets, received {type(d).__name__}")

        def gen():
            for values in zip(*flat):
                yield _pack_like(datasets, values)
        return Dataset(gen, _card_min([d._cardinality for d in flat]))

    @staticmethod
    def from_generator(generator, output_types=None, output_shapes=None, args=None,
                       output_signature=None, name=None):
        """Elements from `generator()` (a callable returning an iterator), called anew on
        each iteration."""
        if not callable(generator):
            raise TypeError("`generator` must be a Python callable.")

        def gen():
            for element in generator(*(args or ())):
                yield _normalize(element)
        return Dataset(gen, UNKNOWN_CARDINALITY)

    # -- transformations ------------------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None, name=None):
        """`map_func` applied to each element (its components as arguments for a tuple)."""
        src = self

        def gen():
            for element in src:
                yield _normalize(_call(map_func, element))
        return Dataset(gen, self._cardinality)

    def filter(self, predicate, name=None):
        src = self

        def gen():
            for element in src:
                if bool(np.asarray(_call(predicate, element))):
                    yield element
        return Dataset(gen, UNKNOWN_CARDINALITY)

    def flat_map(self, map_func, name=None):
        """`map_func` maps each element to a Dataset; their elements in sequence."""
        src = self

        def gen():
            for element in src:
                ds = _call(map_func, element)
                if not isinstance(ds, Dataset):
                    raise TypeError(f"The function given to flat_map() must return a Dataset, "
                                    f"it returned {type(ds).__name__}")
                yield from ds
        return Dataset(gen, UNKNOWN_CARDINALITY)

    def interleave(self, map_func, cycle_length=None, block_length=None,
                   num_parallel_calls=None, deterministic=None, name=None):
        """flat_map over `cycle_length` datasets at a time, `block_length` elements from
        each in turn."""
        cycle = (os.cpu_count() or 1) if cycle_length in (None, AUTOTUNE) else \
            _check_int(cycle_length, "cycle_length")
        block = 1 if block_length is None else _check_int(block_length, "block_length")
        src = self

        def gen():
            # tf's InterleaveDataset: slots opened as the cycle reaches them; an exhausted
            # one is closed and the cycle moves on.
            inputs = iter(src)
            slots = [None] * cycle
            idx = block_i = num_open = 0
            end_of_input = False
            while not end_of_input or num_open > 0:
                it = slots[idx]
                if it is not None:
                    try:
                        value = next(it)
                    except StopIteration:
                        slots[idx] = None
                        num_open -= 1
                        block_i, idx = 0, (idx + 1) % cycle
                        continue
                    yield value
                    block_i += 1
                    if block_i == block:
                        block_i, idx = 0, (idx + 1) % cycle
                elif not end_of_input:
                    try:
                        element = next(inputs)
                    except StopIteration:
                        end_of_input = True
                        continue
                    slots[idx] = iter(_call(map_func, element))
                    num_open += 1
                else:
                    block_i, idx = 0, (idx + 1) % cycle
        return Dataset(gen, UNKNOWN_CARDINALITY)

    def batch(self, batch_size, drop_remainder=False, num_parallel_calls=None,
              deterministic=None, name=None):
        """Consecutive elements stacked into batches (the last one smaller unless
        drop_remainder=True)."""
        bs = _check_int(batch_size, "batch_size")
        src = self

        def gen():
            buf = []
            for element in src:
                buf.append(element)
                if len(buf) == bs:
                    yield _stack(buf)
                    buf = []
            if buf and not drop_remainder:
                yield _stack(buf)
        return Dataset(gen, self._batched_cardinality(bs, drop_remainder))

    def _batched_cardinality(self, bs, drop_remainder):
        c = self._cardinality
        if c < 0:
            return c
        return c // bs if drop_remainder else -(-c // bs)

    def padded_batch(self, batch_size, padded_shapes=None, padding_values=None,
                     drop_remainder=False, name=None):
        """Like batch, padding each component to the largest shape in the batch (or to
        `padded_shapes`, None entries meaning the largest) with `padding_values` (0)."""
        bs = _check_int(batch_size, "batch_size")
        src = self

        def pad_stack(buf):
            template = buf[0]
            columns = list(zip(*(_flatten(e) for e in buf)))
            shapes = _flatten(padded_shapes) if padded_shapes is not None and \
                not _is_shape(padded_shapes) else [padded_shapes] * len(columns)
            values = _flatten(padding_values) if isinstance(padding_values, (tuple, dict)) \
                else [padding_values] * len(columns)
            leaves = []
            for column, shape, value in zip(columns, shapes, values):
                arrs = [np.asarray(v) for v in column]
                ndim = arrs[0].ndim
                longest = [max(a.shape[d] for a in arrs) for d in range(ndim)]
                if shape is not None:
                    shape = list(shape)
                    longest = [m if s is None or s == -1 else int(s)
                               for s, m in zip(shape, longest)]
                out = np.full((len(arrs), *longest), 0 if value is None else value,
                              dtype=arrs[0].dtype)
                for j, a in enumerate(arrs):
                    if any(a.shape[d] > longest[d] for d in range(ndim)):
                        raise ValueError(f"padded_batch: an element of shape {a.shape} is "
                                         f"larger than the padded shape {tuple(longest)}")
                    out[(j, *(slice(0, n) for n in a.shape))] = a
                leaves.append(out)
            return _pack_like(template, leaves)

        def gen():
            buf = []
            for element in src:
                buf.append(element)
                if len(buf) == bs:
                    yield pad_stack(buf)
                    buf = []
            if buf and not drop_remainder:
                yield pad_stack(buf)
        return Dataset(gen, self._batched_cardinality(bs, drop_remainder))

    def unbatch(self, name=None):
        """The inverse of batch: one element per row of each batch."""
        src = self

        def gen():
            for element in src:
                leaves = _flatten(element)
                n = len(leaves[0])
                for i in range(n):
                    yield _pack_like(element, [leaf[i] for leaf in leaves])
        return Dataset(gen, UNKNOWN_CARDINALITY)

    def window(self, size, shift=None, stride=1, drop_remainder=False, name=None):
        """A dataset of windows: each window holds `size` elements (taken `stride` apart),
        windows start `shift` (default `size`) elements apart. A window is the element
        structure with a Dataset for each component; with drop_remainder=False the last
        windows may be shorter."""
        size = _check_int(size, "size")
        shift = size if shift is None else _check_int(shift, "shift")
        stride = _check_int(stride, "stride")
        span = (size - 1) * stride + 1
        src = self

        def gen():
            it = iter(src)
            buf = collections.deque()
            base = start = 0
            done = False
            while True:
                while not done and base + len(buf) < start + span:
                    try:
                        buf.append(next(it))
                    except StopIteration:
                        done = True
                while buf and base < start:
                    buf.popleft()
                    base += 1
                if base < start:
                    return
                members = list(itertools.islice(buf, 0, span, stride))
                if not members or (len(members) < size and drop_remainder):
                    return
                columns = zip(*(_flatten(m) for m in members))
                yield _pack_like(members[0], [_List(list(col)) for col in columns])
                start += shift
        return Dataset(gen, _window_cardinality(self._cardinality, size, shift, stride,
                                                drop_remainder))

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True, name=None):
        """Randomly shuffles the elements through a buffer of `buffer_size` (tf's
        algorithm: a random buffer entry is emitted and replaced by the next element)."""
        buffer_size = _check_int(buffer_size, "buffer_size") if buffer_size != AUTOTUNE else 1000
        src = self
        fixed = seed if seed is not None else int(np.random.randint(0, 2 ** 31 - 1))
        state = {"iteration": 0}

        def rng():
            state["iteration"] += 1
            if not reshuffle_each_iteration:
                return np.random.default_rng(fixed)
            if seed is None:
                return np.random.default_rng(np.random.randint(0, 2 ** 31 - 1))
            return np.random.default_rng([seed, state["iteration"]])

        def gen():
            r = rng()
            it = iter(src)
            buf = list(itertools.islice(it, buffer_size))
            for element in it:
                j = int(r.integers(len(buf)))
                yield buf[j]
                buf[j] = element
            while buf:
                j = int(r.integers(len(buf)))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield buf.pop()
        return Dataset(gen, self._cardinality)

    def repeat(self, count=None, name=None):
        """The dataset `count` times (forever if None or -1)."""
        src = self
        forever = count is None or count == -1
        if not forever:
            count = _check_int(count, "count", minimum=0)

        def gen():
            n = 0
            while forever or n < count:
                any_element = False
                for element in src:
                    any_element = True
                    yield element
                n += 1
                if not any_element:        # an empty dataset repeated is empty
                    return
        c = self._cardinality
        if forever:
            card = 0 if c == 0 else (INFINITE_CARDINALITY if c != UNKNOWN_CARDINALITY
                                     else UNKNOWN_CARDINALITY)
        else:
            card = c * count if c >= 0 else c
        return Dataset(gen, card)

    def take(self, count, name=None):
        """The first `count` elements (all if -1)."""
        if count == -1:
            return Dataset(self._make_iterator, self._cardinality)
        count = _check_int(count, "count", minimum=0)
        src = self
        c = self._cardinality
        card = count if c == INFINITE_CARDINALITY else (min(c, count) if c >= 0 else c)
        return Dataset(lambda: itertools.islice(iter(src), count), card)

    def skip(self, count, name=None):
        """All but the first `count` elements (none if -1)."""
        src = self
        if count == -1:
            return Dataset(lambda: iter(()), 0)
        count = _check_int(count, "count", minimum=0)
        c = self._cardinality
        card = max(c - count, 0) if c >= 0 else c
        return Dataset(lambda: itertools.islice(iter(src), count, None), card)

    def take_while(self, predicate, name=None):
        src = self
        return Dataset(lambda: itertools.takewhile(lambda e: bool(np.asarray(_call(predicate, e))),
                                                   iter(src)), UNKNOWN_CARDINALITY)

    def shard(self, num_shards, index, name=None):
        """Every `num_shards`-th element, starting at `index`."""
        num_shards = _check_int(num_shards, "num_shards")
        index = _check_int(index, "index", minimum=0)
        if index >= num_shards:
            raise ValueError("`index` must be smaller than `num_shards`")
        src = self
        c = self._cardinality
        card = max(0, -(-(c - index) // num_shards)) if c >= 0 else c
        return Dataset(lambda: itertools.islice(iter(src), index, None, num_shards), card)

    def cache(self, filename="", name=None):
        """Elements kept (in memory) after the first complete iteration, replayed after."""
        src = self
        store = {}

        def gen():
            if "elements" in store:
                yield from store["elements"]
                return
            buf = []
            for element in src:
                buf.append(element)
                yield element
            store["elements"] = buf
        return Dataset(gen, self._cardinality)

    def prefetch(self, buffer_size, name=None):
        """Accepted for tf.data compatibility; elements are produced on demand."""
        return Dataset(self._make_iterator, self._cardinality)

    def enumerate(self, start=0, name=None):
        """(index, element) pairs."""
        src = self
        return Dataset(lambda: ((np.int64(i), e) for i, e in enumerate(src, start)),
                       self._cardinality)

    def concatenate(self, dataset, name=None):
        src = self
        a, b = self._cardinality, dataset._cardinality
        if INFINITE_CARDINALITY in (a, b):
            card = INFINITE_CARDINALITY
        elif a < 0 or b < 0:
            card = UNKNOWN_CARDINALITY
        else:
            card = a + b
        return Dataset(lambda: itertools.chain(iter(src), iter(dataset)), card)

    def apply(self, transformation_func):
        return transformation_func(self)

    def reduce(self, initial_state, reduce_func, name=None):
        state = _normalize(initial_state)
        for element in self:
            state = _normalize(reduce_func(state, element))
        return state

    def get_single_element(self, name=None):
        it = iter(self)
        try:
            element = next(it)
        except StopIteration:
            raise ValueError("Dataset was empty.") from None
        if next(it, _END) is not _END:
            raise ValueError("Dataset had more than one element.")
        return element

    def with_options(self, options, name=None):
        return self

    def options(self):
        return None


_END = object()


def _is_shape(s):
    return isinstance(s, (list, tuple)) and all(v is None or isinstance(v, (int, np.integer))
                                                for v in s)


def _window_cardinality(c, size, shift, stride, drop_remainder):
    if c < 0:
        return c
    if drop_remainder:
        span = (size - 1) * stride + 1
        return max(0, (c - span) // shift + 1) if c >= span else 0
    return -(-c // shift)


class _Slices(Dataset):
    """from_tensor_slices: the rows of a structure of arrays, batched by slicing."""

    def __init__(self, struct):
        self._struct = struct
        self._leaves = _flatten(struct)
        n = len(self._leaves[0])
        super().__init__(self._rows, n)

    def _rows(self):
        leaves, struct = self._leaves, self._struct
        for i in range(self._cardinality):
            yield _pack_like(struct, [_row(a, i) for a in leaves])

    def batch(self, batch_size, drop_remainder=False, num_parallel_calls=None,
              deterministic=None, name=None):
        bs = _check_int(batch_size, "batch_size")
        n, leaves, struct = self._cardinality, self._leaves, self._struct

        def gen():
            for s in range(0, n, bs):
                if s + bs > n and drop_remainder:
                    return
                yield _pack_like(struct, [a[s:s + bs].copy() for a in leaves])
        return Dataset(gen, self._batched_cardinality(bs, drop_remainder))

    def window(self, size, shift=None, stride=1, drop_remainder=False, name=None):
        size = _check_int(size, "size")
        shift = size if shift is None else _check_int(shift, "shift")
        stride = _check_int(stride, "stride")
        span = (size - 1) * stride + 1
        n, leaves, struct = self._cardinality, self._leaves, self._struct

        def gen():
            for s in range(0, n, shift):
                stop = min(s + span, n)
                if drop_remainder and len(range(s, stop, stride)) < size:
                    return
                yield _pack_like(struct, [_Slices(a[s:stop:stride]) for a in leaves])
        return Dataset(gen, _window_cardinality(n, size, shift, stride, drop_remainder))


def _row(a, i):
    v = a[i]
    return v.copy() if isinstance(v, np.ndarray) else v


class _List(Dataset):
    """A dataset over a list of component values (a window of a streamed dataset)."""

    def __init__(self, values):
        self._values = values
        super().__init__(lambda: iter(self._values), len(values))
