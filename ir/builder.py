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
    __slots__ = ("g", "id")

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

    # arithmetic sugar: each operator is one primitive
    def __add__(self, o): return op("add", self, o)
    def __radd__(self, o): return op("add", o, self)
    def __sub__(self, o): return op("sub", self, o)
    def __rsub__(self, o): return op("sub", o, self)
    def __mul__(self, o): return op("mul", self, o)
    def __rmul__(self, o): return op("mul", o, self)
    def __truediv__(self, o): return op("div", self, o)
    def __rtruediv__(self, o): return op("div", o, self)
    def __pow__(self, o): return op("pow", self, o)
    def __neg__(self): return op("neg", self)
    def __matmul__(self, o): return matmul(self, o)
    def __gt__(self, o): return op("greater", self, o)
    def __ge__(self, o): return op("greater_equal", self, o)
    def __lt__(self, o): return op("less", self, o)
    def __le__(self, o): return op("less_equal", self, o)

    @property
    def T(self):
        return transpose(self)


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


neg, exp, log, sqrt, abs, sign, sigmoid, tanh, stop_gradient = map(
    _unary, ["neg", "exp", "log", "sqrt", "abs", "sign", "sigmoid", "tanh", "stop_gradient"])


def add(a, b): return op("add", a, b)
def sub(a, b): return op("sub", a, b)
def mul(a, b): return op("mul", a, b)
def div(a, b): return op("div", a, b)
def pow(a, b): return op("pow", a, b)
def maximum(a, b): return op("maximum", a, b)
def minimum(a, b): return op("minimum", a, b)
def greater(a, b): return op("greater", a, b)
def greater_equal(a, b): return op("greater_equal", a, b)
def less(a, b): return op("less", a, b)
def less_equal(a, b): return op("less_equal", a, b)
def equal(a, b): return op("equal", a, b)
def not_equal(a, b): return op("not_equal", a, b)
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
