"""Symbolic tensors: the convenient way to emit ops into a Graph.

Layers, losses, optimizers and VJP rules all write ordinary array code
(`a * b + 1`, `F.exp(x)`, `F.sum(x, axis=-1)`) against `Sym` values; each
call adds one primitive op to the graph the operands live in.
"""
from __future__ import annotations

import builtins

import numpy as np

from .graph import Graph, TensorType


class Sym:
    """A value of the graph being built; Python operators emit ops as on Keras tensors.

    A Sym has a shape and dtype but no value: uses that need one (`float()`,
    `int()`, a Python `if`, iterating) raise a TypeError saying so.
    """
    __slots__ = ("g", "id")
    __array_ufunc__ = None          # numpy arrays defer to Sym's reflected operators

    def __init__(self, g: Graph, vid: int):
        self.g = g
        self.id = vid

    @property
    def type(self) -> TensorType:
        return self.g.nodes[self.id].type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        return f"Sym(%{self.id}: {self.type})"

    # arithmetic sugar: each operator is a primitive or a short composition, with
    # Keras' dtype promotion (int32 with a float computes in float32)
    def __add__(self, o): return add(self, o)
    def __radd__(self, o): return add(o, self)
    def __sub__(self, o): return sub(self, o)
    def __rsub__(self, o): return sub(o, self)
    def __mul__(self, o): return mul(self, o)
    def __rmul__(self, o): return mul(o, self)
    def __truediv__(self, o): return true_divide(self, o)
    def __rtruediv__(self, o): return true_divide(o, self)
    def __floordiv__(self, o): return floor_divide(self, o)
    def __rfloordiv__(self, o): return floor_divide(o, self)
    def __mod__(self, o): return mod(self, o)
    def __rmod__(self, o): return mod(o, self)
    def __pow__(self, o): return power(self, o)
    def __rpow__(self, o): return power(o, self)
    def __neg__(self): return op("neg", self)
    def __pos__(self): return self
    def __abs__(self): return op("abs", self)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)
    def __gt__(self, o): return greater(self, o)
    def __ge__(self, o): return greater_equal(self, o)
    def __lt__(self, o): return less(self, o)
    def __le__(self, o): return less_equal(self, o)
    def __eq__(self, o): return equal(self, o)          # elementwise, as on Keras tensors
    def __ne__(self, o): return not_equal(self, o)
    __hash__ = object.__hash__                          # Syms stay usable as dict keys
    def __and__(self, o): return logical_and(self, o)
    def __rand__(self, o): return logical_and(o, self)
    def __or__(self, o): return logical_or(self, o)
    def __ror__(self, o): return logical_or(o, self)
    def __xor__(self, o): return logical_xor(self, o)
    def __rxor__(self, o): return logical_xor(o, self)
    def __invert__(self): return logical_not(self)
    def __getitem__(self, key): return getitem(self, key)

    @property
    def T(self):
        return transpose(self)

    # a symbolic value has no Python value
    def _no_value(self, what):
        return TypeError(f"{self!r} is symbolic: it stands for a value computed when the "
                         f"compiled model runs, so it has no Python value {what}")

    def __bool__(self):
        raise self._no_value("to test: a Python `if`/`and`/`or`/`not` cannot branch on it "
                             "(use ops.where to choose elementwise)")

    def __float__(self):
        raise self._no_value("to convert with float()")

    def __int__(self):
        raise self._no_value("to convert with int()")

    def __index__(self):
        raise self._no_value("to use as a Python index or size")

    def __len__(self):
        if not self.shape:
            raise TypeError(f"len() of a scalar: {self!r} has no axes")
        return self.shape[0]

    def __iter__(self):
        raise TypeError(f"iterating over {self!r} is not supported: a symbolic value is not "
                        f"a Python sequence (index it, x[i], or use ops.split / ops.unstack)")

    def __array__(self, dtype=None, copy=None):
        raise self._no_value("to convert to a numpy array")


def _graph_of(args) -> Graph:
    for a in args:
        if isinstance(a, Sym):
            return a.g
    for a in args:
        if hasattr(a, "__sym__"):
            return a.__sym__(None).g
    raise TypeError("an op needs at least one symbolic operand")


def lift(g: Graph, x, dtype: str = "float32") -> Sym:
    if isinstance(x, Sym):
        return x
    if hasattr(x, "__sym__"):       # objects that stand for a graph value (model variables)
        return x.__sym__(g)
    arr = np.asarray(x)
    if dtype == "int32" and arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise TypeError(f"cannot combine the non-integer {x!r} with an int32 value; cast it first")
    return Sym(g, g.constant(arr.astype(dtype), dtype))


def op(name: str, *args, **attrs) -> Sym:
    """Apply primitive `name`; Python numbers become constants of the operands' dtype."""
    g = _graph_of(args)
    args = [a.__sym__(g) if hasattr(a, "__sym__") else a for a in args]
    if any(isinstance(a, Sym) and a.g is not g for a in args):
        raise ValueError(f"{name}: operands come from different graphs")
    dtype = next(a.dtype for a in args if isinstance(a, Sym))
    syms = [lift(g, a, dtype) for a in args]
    return Sym(g, g.add(name, [s.id for s in syms], **attrs))


def _unary(name):
    def f(x):
        return op(name, x)
    f.__name__ = name
    return f


neg, exp, log, sqrt, abs, sign, sigmoid, tanh, stop_gradient, sin, cos, erf, floor, round = map(
    _unary, ["neg", "exp", "log", "sqrt", "abs", "sign", "sigmoid", "tanh", "stop_gradient",
             "sin", "cos", "erf", "floor", "round"])


def dtype_of(x) -> str | None:
    """The dtype of a symbolic or array operand; None for a Python number (weakly typed)."""
    if isinstance(x, Sym):
        return x.dtype
    if hasattr(x, "__sym__"):
        return x.dtype
    if isinstance(x, (bool, int, float)):
        return None
    kind = np.asarray(x).dtype.kind
    return "int32" if kind in "iu" else "float32"


def result_dtype(*xs) -> str:
    """Keras' promotion for our two dtypes: float32 if any operand is float (a Python
    float counts), int32 if all are integers."""
    for x in xs:
        d = dtype_of(x)
        if d == "float32" or (d is None and isinstance(x, float)):
            return "float32"
    return "int32" if any(dtype_of(x) == "int32" for x in xs) else "float32"


def promote(*xs, dtype=None):
    """Operands cast to their common dtype (or `dtype`), ready for one primitive."""
    dtype = dtype or result_dtype(*xs)
    out = []
    for x in xs:
        d = dtype_of(x)
        if d is None:
            out.append(x)
        elif isinstance(x, Sym) or hasattr(x, "__sym__"):
            out.append(cast(x, dtype) if d != dtype else x)
        else:
            out.append(np.asarray(x).astype(dtype))
    return out


def _binary(name):
    def f(a, b):
        return op(name, *promote(a, b))
    f.__name__ = name
    return f


add, sub, mul, maximum, minimum = map(_binary, ["add", "sub", "mul", "maximum", "minimum"])
greater, greater_equal, less, less_equal, equal, not_equal = map(
    _binary, ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"])


def div(a, b): return op("div", a, b)


def true_divide(a, b):
    """a / b in float32, whatever the operands' dtypes (Keras' divide)."""
    return op("div", *promote(a, b, dtype="float32"))


def _float_then_back(fn, a, b):
    """fn on float32 operands; an int32 result when both operands are integers
    (exact below 2**24, where float32 holds every integer)."""
    dtype = result_dtype(a, b)
    out = fn(*promote(a, b, dtype="float32"))
    return cast(out, "int32") if dtype == "int32" else out


def floor_divide(a, b):
    return _float_then_back(lambda x, y: floor(op("div", x, y)), a, b)


def mod(a, b):
    """a - floor(a / b) * b: the result has the divisor's sign, as Python's and numpy's."""
    return _float_then_back(lambda x, y: x - floor(op("div", x, y)) * y, a, b)


def power(a, b):
    """a ** b; small integral Python exponents multiply (exact, negative bases allowed)."""
    if isinstance(b, (int, float)) and not isinstance(b, bool) and isinstance(a, Sym):
        if b == 1:
            return a
        if b == 2:
            return a * a
        if b == 3:
            return a * a * a
        if b == -1 and a.dtype == "float32":
            return 1.0 / a
        if b == 0.5 and a.dtype == "float32":
            return sqrt(a)
    return _float_then_back(lambda x, y: op("pow", x, y), a, b)


pow = power


def logical_and(a, b): return not_equal(a, 0) * not_equal(b, 0)
def logical_or(a, b): return maximum(not_equal(a, 0), not_equal(b, 0))
def logical_xor(a, b): return not_equal(not_equal(a, 0), not_equal(b, 0))
def logical_not(a): return equal(a, 0)
def square(x): return x * x
def relu(x): return maximum(x, 0.0)
def clip(x, lo, hi): return minimum(maximum(x, lo), hi)


def select(cond, a, b):
    g = _graph_of([cond, a, b])
    dtype = next(s.dtype for s in (a, b) if isinstance(s, Sym)) if any(
        isinstance(s, Sym) for s in (a, b)) else "float32"
    return Sym(g, g.add("select", [lift(g, cond).id, lift(g, a, dtype).id, lift(g, b, dtype).id]))


def _axes(x: Sym, axis):
    if axis is None:
        return tuple(range(x.ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % x.ndim for a in axis))


def sum(x, axis=None, keepdims=False): return op("reduce_sum", x, axes=_axes(x, axis), keepdims=keepdims)
def max(x, axis=None, keepdims=False): return op("reduce_max", x, axes=_axes(x, axis), keepdims=keepdims)
def mean(x, axis=None, keepdims=False): return op("reduce_mean", x, axes=_axes(x, axis), keepdims=keepdims)
def argmax(x, axis=-1): return op("argmax", x, axis=axis % x.ndim)


def matmul(a, b, transpose_a=False, transpose_b=False):
    return op("matmul", a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def reshape(x, shape):
    shape = tuple(int(d) for d in shape)
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1]))
        shape = tuple(x.type.size // known if d == -1 else d for d in shape)
    if shape == x.shape:
        return x
    return op("reshape", x, shape=shape)


def transpose(x, perm=None):
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(p % x.ndim for p in perm)
    if perm == tuple(range(x.ndim)):
        return x
    return op("transpose", x, perm=perm)


def broadcast_to(x, shape):
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return op("broadcast_to", x, shape=shape)


def cast(x, dtype):
    if x.dtype == dtype:
        return x
    return op("cast", x, dtype=dtype)


def expand_dims(x, axis):
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x, axis):
    axis = axis % x.ndim
    return reshape(x, x.shape[:axis] + x.shape[axis + 1:])


def one_hot(labels, depth):
    """Float one-hot of int labels: a comparison against a constant iota (no new primitive)."""
    iota = lift(labels.g, np.arange(depth, dtype=np.int32), "int32")
    return equal(expand_dims(labels, -1), iota)


def sum_to_shape(x: Sym, shape: tuple) -> Sym:
    """Undo numpy broadcasting: sum the dims of x that were broadcast from `shape`."""
    if x.shape == tuple(shape):
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    out = sum(x, axis=axes, keepdims=True) if axes else x
    return reshape(out, shape)


def slice(x, start, size):
    start, size = tuple(int(s) for s in start), tuple(int(s) for s in size)
    if start == (0,) * x.ndim and size == x.shape:
        return x
    return op("slice", x, start=start, size=size)


def slice_axis(x, axis, begin, end):
    """x[..., begin:end, ...] along one axis."""
    axis = axis % x.ndim
    start = [0] * x.ndim
    size = list(x.shape)
    start[axis], size[axis] = begin, end - begin
    return slice(x, start, size)


def pad(x, lo, hi):
    if not any(lo) and not any(hi):
        return x
    return op("pad", x, lo=tuple(lo), hi=tuple(hi))


def conv(x, w, strides, padding, lhs_dilation=None, rhs_dilation=None, groups=1):
    """A convolution, channels-last: the semantics of lax.conv_general_dilated with
    dimension numbers ("NHWC", "HWIO", "NHWC").

    x: (N, *spatial, Cin), spatial rank 1 or 2; w: (*kernel, Cin // groups, Cout);
    strides, lhs_dilation, rhs_dilation: one int per spatial axis (None: all 1);
    padding: one (lo, hi) pair per spatial axis, lo, hi >= 0. Output spatial size
    per axis: (in_d + lo + hi - k_d) // stride + 1 with in_d = (in - 1) * lhs_dilation
    + 1 and k_d = (k - 1) * rhs_dilation + 1. Group g maps input channels
    [g*Cin/groups, (g+1)*Cin/groups) to output channels [g*Cout/groups, ...).
    """
    if not isinstance(x, Sym):
        x = lift(_graph_of([w]), x)
    if x.ndim not in (3, 4):
        raise ValueError(f"conv: the input needs shape (batch, *spatial, channels) with 1 or 2 "
                         f"spatial axes, got {x.shape}")
    rank = x.ndim - 2
    padding = tuple(tuple(p) for p in padding)
    if len(padding) != rank or any(len(p) != 2 or builtins.min(p) < 0 for p in padding):
        raise ValueError(f"conv: padding needs one (lo, hi) pair of non-negative ints per "
                         f"spatial axis ({rank}), got {padding}")
    return op("conv", x, w, strides=strides, padding=padding, lhs_dilation=lhs_dilation,
              rhs_dilation=rhs_dilation, groups=groups)


def concatenate(xs, axis=-1):
    """Concatenation as a sum of zero-padded operands (fuses into one loop)."""
    axis = axis % xs[0].ndim
    total = builtins.sum(x.shape[axis] for x in xs)
    out, offset = None, 0
    for x in xs:
        lo = [0] * x.ndim
        hi = [0] * x.ndim
        lo[axis], hi[axis] = offset, total - offset - x.shape[axis]
        part = pad(x, lo, hi)
        out = part if out is None else out + part
        offset += x.shape[axis]
    return out


def gather(table, indices):
    return op("gather", table, indices)


def scatter_add(indices, updates, num):
    return op("scatter_add", indices, updates, num=num)


def random_uniform(key, shape, salt):
    return op("random_uniform", key, shape=tuple(shape), salt=int(salt))


def scan(step, consts, init, xs, length=None, reverse=False, steps=None):
    """A loop over the leading axis of `xs`, whose body is traced once.

    step(consts, carry, x) -> (new_carry, ys): lists of Syms of a fresh body graph.
    Returns (final carries, stacked ys) as Syms of the outer graph. `steps`, an int32
    scalar Sym, makes the trip count a run-time value (at most `length`).
    """
    from .ops import Body, scan_result_types
    g = _graph_of([*consts, *init, *xs])
    length = length if length is not None else xs[0].shape[0]
    bg = Graph()
    k = [Sym(bg, bg.leaf("input", c.type, f"k{i}")) for i, c in enumerate(consts)]
    c = [Sym(bg, bg.leaf("state", s.type, f"c{i}")) for i, s in enumerate(init)]
    x = [Sym(bg, bg.leaf("input", TensorType(s.shape[1:], s.dtype), f"x{j}"))
         for j, s in enumerate(xs)]
    new_c, ys = step(k, c, x)
    for old, new in zip(c, new_c):
        if new.g is not bg:
            raise ValueError("a scan body may only use its own arguments (pass outer values as consts)")
        if new.id != old.id:
            bg.updates[old.id] = new.id
    for j, y in enumerate(ys):
        bg.outputs[f"y{j}"] = y.id
    body = Body(bg, len(consts), len(init), len(xs), len(ys))
    extra = [steps] if steps is not None else []
    s = op("scan", *consts, *init, *xs, *extra, body=body, length=length, reverse=reverse,
           dynamic=steps is not None)
    types = scan_result_types(body, length)

    def result(i):
        return Sym(g, g.add("scan_result", [s.id], index=i, shape=types[i].shape, dtype=types[i].dtype))
    return [result(i) for i in range(len(init))], [result(len(init) + j) for j in range(len(ys))]


# ------------------------------------------------------------------ indexing
def take(x, indices, axis=0):
    """x's entries at `indices` (int32, in range) along `axis`: a gather of the axis
    moved first; the result has the indices' axes in place of `axis`."""
    axis = axis % x.ndim
    if not isinstance(indices, Sym):
        indices = lift(x.g, np.asarray(indices, dtype=np.int32), "int32")
    moved = transpose(x, (axis,) + tuple(i for i in range(x.ndim) if i != axis))
    out = gather(moved, indices)
    k = indices.ndim
    perm = tuple(k + j for j in range(axis)) + tuple(range(k)) + \
        tuple(k + j for j in range(axis, x.ndim - 1))
    return transpose(out, perm)


def getitem(x: Sym, key):
    """x[key] for ints, slices (any step), None, Ellipsis and one integer index array,
    as numpy's basic indexing (and `take` for the array)."""
    key = key if isinstance(key, tuple) else (key,)
    n_ell = builtins.sum(k is Ellipsis for k in key)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_axes = builtins.sum(k is not None and k is not Ellipsis for k in key)
    if n_axes > x.ndim:
        raise IndexError(f"too many indices for a value of shape {x.shape}: {n_axes} were indexed")
    if n_ell:
        i = key.index(Ellipsis)
        key = key[:i] + (builtins.slice(None),) * (x.ndim - n_axes) + key[i + 1:]
    else:
        key = key + (builtins.slice(None),) * (x.ndim - n_axes)
    start, size, strided, arrays = [], [], [], []
    out_shape = []                   # None marks an axis a None index inserts
    axis = 0
    for k in key:
        if k is None:
            out_shape.append(None)
            continue
        n = x.shape[axis]
        if isinstance(k, builtins.slice):
            lo, hi, step = k.indices(n)
            idx = builtins.range(lo, hi, step)
            if step == 1:
                start.append(lo)
                size.append(len(idx))
            else:
                start.append(0)
                size.append(n)
                strided.append((axis, np.array(idx, dtype=np.int32)))
            out_shape.append(("axis", len(idx)))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
            start.append(int(k) % n)
            size.append(1)
        elif isinstance(k, Sym) or (hasattr(k, "__len__") and not isinstance(k, str)):
            if arrays:
                raise IndexError("indexing with more than one index array is not supported")
            start.append(0)
            size.append(n)
            arrays.append((axis, k, len(out_shape)))
            out_shape.append(("array", None))
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and integer "
                             f"index arrays are valid indices, got {k!r}")
        axis += 1
    y = slice(x, start, size)
    for ax, idx in strided:
        y = take(y, idx, ax)
    dims = [d for d in out_shape]
    if arrays:
        ax, idx, pos = arrays[0]
        if isinstance(idx, Sym):
            if idx.dtype != "int32":
                raise IndexError(f"index arrays must be integers, got {idx.dtype}")
        else:
            arr = np.asarray(idx)
            if arr.dtype.kind not in "iu":
                raise IndexError(f"index arrays must be integers (boolean masks give data-dependent "
                                 f"shapes and are not supported), got {arr.dtype}")
            n = x.shape[ax]
            if arr.size and (arr.min() < -n or arr.max() >= n):
                raise IndexError(f"index array out of bounds for axis {ax} with size {n}")
            idx = arr % n if n else arr
        y = take(y, idx, ax)
        idx_shape = idx.shape
        # the index array's axes replace the indexed axis
        shape = []
        it = iter(y.shape)
        for j, d in enumerate(dims):
            if d is None:
                shape.append(1)
            elif d[0] == "array":
                for _ in idx_shape:
                    shape.append(next(it))
            else:
                shape.append(next(it))
        kept = list(it)
        assert not kept, kept
        return reshape(y, tuple(shape)) if tuple(shape) != y.shape else y
    shape = tuple(1 if d is None else d[1] for d in dims)
    return reshape(y, shape)
