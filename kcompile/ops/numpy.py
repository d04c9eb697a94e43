"""The numpy-like ops of `keras.ops`: elementwise math, comparisons, reductions,
linear algebra and array manipulation, with Keras' names, arguments and defaults.

Each op is one function against the graph builder (see dispatch.py): on symbolic
tensors it emits primitives, on arrays it computes now. Integer inputs give integer
results where Keras does (add, sum, max, cumsum, ...) and float32 where Keras
computes in floatx (divide, mean, sqrt, exp, ...).
"""
from __future__ import annotations

import builtins
import math as _math

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from .dispatch import graph_dtype, keras_op, standardize_dtype
from .operation_utils import (canonicalize_axis, check_broadcast, move_axis_last, reduce_axes,
                              to_float, undo_perm)


def _scalar_to_sym(x, like):
    """A Python number as a constant of `like`'s graph (ops that need a tensor)."""
    if isinstance(x, Sym):
        return x
    return F.lift(like.g, np.asarray(x, dtype=F.result_dtype(x)), F.result_dtype(x))


def _binary(fn):
    def op(x1, x2):
        check_broadcast(x1, x2)
        return fn(x1, x2)
    return op


# ------------------------------------------------------------------ arithmetic
@keras_op("x1", "x2")
def add(x1, x2):
    return _binary(F.add)(x1, x2)


@keras_op("x1", "x2")
def subtract(x1, x2):
    return _binary(F.sub)(x1, x2)


@keras_op("x1", "x2")
def multiply(x1, x2):
    return _binary(F.mul)(x1, x2)


@keras_op("x1", "x2")
def divide(x1, x2):
    return _binary(F.true_divide)(x1, x2)


@keras_op("x1", "x2")
def true_divide(x1, x2):
    return _binary(F.true_divide)(x1, x2)


@keras_op("x1", "x2")
def floor_divide(x1, x2):
    return _binary(F.floor_divide)(x1, x2)


@keras_op("x1", "x2")
def mod(x1, x2):
    return _binary(F.mod)(x1, x2)


@keras_op("x1", "x2")
def power(x1, x2):
    return _binary(F.power)(x1, x2)


@keras_op("x1", "x2")
def maximum(x1, x2):
    return _binary(F.maximum)(x1, x2)


@keras_op("x1", "x2")
def minimum(x1, x2):
    return _binary(F.minimum)(x1, x2)


@keras_op("x")
def negative(x):
    return -x


@keras_op("x")
def abs(x):
    return F.abs(x)


absolute = abs


@keras_op("x")
def square(x):
    return x * x


@keras_op("x")
def sqrt(x):
    return F.sqrt(to_float(x))


@keras_op("x")
def reciprocal(x):
    return 1.0 / to_float(x)


@keras_op("x")
def exp(x):
    return F.exp(to_float(x))


@keras_op("x")
def exp2(x):
    return F.exp(to_float(x) * _math.log(2.0))


@keras_op("x")
def log(x):
    return F.log(to_float(x))


@keras_op("x")
def log2(x):
    return F.log(to_float(x)) * (1.0 / _math.log(2.0))


@keras_op("x")
def log10(x):
    return F.log(to_float(x)) * (1.0 / _math.log(10.0))


@keras_op("x")
def log1p(x):
    # log(u) x / (u - 1) with u = 1 + x cancels u's rounding (Goldberg); u == 1: x
    x = to_float(x)
    u = 1.0 + x
    d = u - 1.0
    exact = F.log(u) * x / F.select(F.equal(d, 0.0), 1.0, d)
    big = F.equal(u, float("inf"))
    return F.select(F.equal(d, 0.0), x, F.select(big, u, exact))


@keras_op("x")
def expm1(x):
    # (u - 1) x / log(u) with u = e^x (Kahan): exact near 0 where u - 1 cancels
    x = to_float(x)
    u = F.exp(x)
    d = u - 1.0
    lu = F.log(u)
    ratio = d * x / F.select(F.equal(lu, 0.0), 1.0, lu)
    inner = F.select(F.equal(d, -1.0), d, F.select(F.equal(u, float("inf")), u, ratio))
    return F.select(F.equal(u, 1.0), x, inner)


@keras_op("x")
def sign(x):
    if x.dtype == "int32":
        return F.cast(F.sign(F.cast(x, "float32")), "int32")
    return F.sign(x)


@keras_op("x")
def sin(x):
    return F.sin(to_float(x))


@keras_op("x")
def cos(x):
    return F.cos(to_float(x))


@keras_op("x")
def tan(x):
    x = to_float(x)
    return F.sin(x) / F.cos(x)


@keras_op("x")
def sinh(x):
    x = to_float(x)
    return (F.exp(x) - F.exp(-x)) * 0.5


@keras_op("x")
def cosh(x):
    x = to_float(x)
    return (F.exp(x) + F.exp(-x)) * 0.5


@keras_op("x")
def tanh(x):
    return F.tanh(to_float(x))


@keras_op("x")
def floor(x):
    return F.floor(to_float(x))


@keras_op("x")
def ceil(x):
    return -F.floor(-to_float(x))


@keras_op("x")
def round(x, decimals=0):
    if x.dtype == "int32" and decimals >= 0:
        return x
    x = to_float(x)
    if decimals == 0:
        return F.round(x)
    scale = 10.0 ** decimals
    return F.round(x * scale) / scale


@keras_op("x")
def clip(x, x_min, x_max):
    dtype = F.result_dtype(x, x_min, x_max)
    x = F.cast(x, dtype)
    return F.minimum(F.maximum(x, x_min), x_max)


@keras_op("x")
def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    if x.dtype == "int32":
        return x
    big = float(np.finfo(np.float32).max)
    y = F.select(F.not_equal(x, x), nan, x)
    y = F.select(F.equal(y, float("inf")), big if posinf is None else posinf, y)
    return F.select(F.equal(y, float("-inf")), -big if neginf is None else neginf, y)


# ------------------------------------------------------------------ comparisons
def _comparison(prim):
    @keras_op("x1", "x2", bool_result=True)
    def op(x1, x2):
        return _binary(prim)(x1, x2)
    return op


equal = _comparison(F.equal)
not_equal = _comparison(F.not_equal)
greater = _comparison(F.greater)
greater_equal = _comparison(F.greater_equal)
less = _comparison(F.less)
less_equal = _comparison(F.less_equal)
for _op, _name in [(equal, "equal"), (not_equal, "not_equal"), (greater, "greater"),
                   (greater_equal, "greater_equal"), (less, "less"), (less_equal, "less_equal")]:
    _op.__name__ = _op.__qualname__ = _name


@keras_op("x1", "x2", bool_result=True)
def logical_and(x1, x2):
    return _binary(F.logical_and)(x1, x2)


@keras_op("x1", "x2", bool_result=True)
def logical_or(x1, x2):
    return _binary(F.logical_or)(x1, x2)


@keras_op("x1", "x2", bool_result=True)
def logical_xor(x1, x2):
    return _binary(F.logical_xor)(x1, x2)


@keras_op("x", bool_result=True)
def logical_not(x):
    return F.logical_not(x)


@keras_op("x", bool_result=True)
def isnan(x):
    return F.not_equal(x, x) if x.dtype == "float32" else F.equal(x, x) * 0.0


@keras_op("x", bool_result=True)
def isinf(x):
    return F.equal(F.abs(x), float("inf")) if x.dtype == "float32" else F.equal(x, x) * 0.0


@keras_op("x", bool_result=True)
def isfinite(x):
    return F.less(F.abs(x), float("inf")) if x.dtype == "float32" else F.equal(x, x)


@keras_op("condition", "x1", "x2")
def where(condition, x1=None, x2=None):
    if x1 is None or x2 is None:
        raise ValueError("where(condition) without x1 and x2 returns the indices of the "
                         "nonzero entries, whose count depends on the data: not supported "
                         "in a compiled graph (pass x1 and x2)")
    check_broadcast(condition, x1, x2)
    a, b = F.promote(x1, x2)
    return F.select(condition, a, b)


# ------------------------------------------------------------------ linear algebra
def _matmul_2d(a, b):
    if a.dtype == "int32" and b.dtype == "int32":
        return F.cast(F.matmul(to_float(a), to_float(b)), "int32")
    return F.matmul(to_float(a), to_float(b))


def _batched(a, b):
    """(B, M, K) @ (B, K, N): products broadcast over (B, M, N, K), summed over K
    (one fused reduction kernel)."""
    if a.shape[0] == 1:
        return F.expand_dims(_matmul_2d(F.squeeze(a, 0), F.squeeze(b, 0)), 0)
    ints = a.dtype == "int32" and b.dtype == "int32"
    a, b = to_float(a), to_float(b)
    prod = F.expand_dims(a, 2) * F.expand_dims(F.transpose(b, (0, 2, 1)), 1)
    out = F.sum(prod, axis=-1)
    return F.cast(out, "int32") if ints else out


@keras_op("x1", "x2")
def matmul(x1, x2):
    if x1.ndim == 0 or x2.ndim == 0:
        raise ValueError(f"matmul does not accept scalars: received x1.shape={x1.shape} and "
                         f"x2.shape={x2.shape}; use multiply")
    a = F.expand_dims(x1, 0) if x1.ndim == 1 else x1
    b = F.expand_dims(x2, -1) if x2.ndim == 1 else x2
    if a.shape[-1] != b.shape[-2]:
        raise ValueError("Inner dimensions (`x1.shape[-1]` and `x2.shape[-2]`) must be equal, "
                         f"but received `x1.shape={x1.shape}` and `x2.shape={x2.shape}`.")
    if b.ndim == 2:
        lead = a.shape[:-1]
        out = _matmul_2d(F.reshape(a, (-1, a.shape[-1])), b)
        out = F.reshape(out, lead + (b.shape[-1],))
    else:
        batch = check_broadcast_dims(a.shape[:-2], b.shape[:-2], x1.shape, x2.shape)
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        nb = int(np.prod(batch, dtype=np.int64))
        a3 = F.reshape(F.broadcast_to(a, batch + (m, k)), (nb, m, k))
        b3 = F.reshape(F.broadcast_to(b, batch + (k, n)), (nb, k, n))
        out = F.reshape(_batched(a3, b3), batch + (m, n))
    if x1.ndim == 1:
        out = F.squeeze(out, -2)
    if x2.ndim == 1:
        out = F.squeeze(out, -1)
    return out


def check_broadcast_dims(s1, s2, full1, full2):
    from .operation_utils import broadcast_shapes
    try:
        return broadcast_shapes(s1, s2)
    except ValueError:
        raise ValueError(f"matmul: the batch dimensions of x1.shape={full1} and "
                         f"x2.shape={full2} do not broadcast") from None


@keras_op("x1", "x2")
def tensordot(x1, x2, axes=2):
    if isinstance(axes, int):
        ax1 = list(range(x1.ndim - axes, x1.ndim))
        ax2 = list(range(axes))
    else:
        ax1, ax2 = axes
        ax1 = [ax1] if isinstance(ax1, int) else list(ax1)
        ax2 = [ax2] if isinstance(ax2, int) else list(ax2)
        ax1 = [canonicalize_axis(a, x1.ndim) for a in ax1]
        ax2 = [canonicalize_axis(a, x2.ndim) for a in ax2]
    if [x1.shape[a] for a in ax1] != [x2.shape[a] for a in ax2]:
        raise ValueError(f"tensordot: the contracted dimensions differ: x1.shape={x1.shape} "
                         f"axes {ax1}, x2.shape={x2.shape} axes {ax2}")
    free1 = [a for a in range(x1.ndim) if a not in ax1]
    free2 = [a for a in range(x2.ndim) if a not in ax2]
    k = int(np.prod([x1.shape[a] for a in ax1], dtype=np.int64))
    a = F.reshape(F.transpose(x1, tuple(free1 + ax1)), (-1, k))
    b = F.reshape(F.transpose(x2, tuple(ax2 + free2)), (k, -1))
    out = _matmul_2d(a, b)
    return F.reshape(out, tuple(x1.shape[i] for i in free1) + tuple(x2.shape[i] for i in free2))


@keras_op("x1", "x2")
def dot(x1, x2):
    if x1.ndim == 0 or x2.ndim == 0:
        return multiply(x1, x2)
    if x2.ndim == 1:
        return tensordot(x1, x2, axes=([-1], [0]))
    return tensordot(x1, x2, axes=([-1], [-2]))


@keras_op("x1", "x2")
def outer(x1, x2):
    return F.mul(*F.promote(F.reshape(x1, (-1, 1)), F.reshape(x2, (1, -1))))


@keras_op("x1", "x2")
def inner(x1, x2):
    if x1.ndim == 0 or x2.ndim == 0:
        return multiply(x1, x2)
    return tensordot(x1, x2, axes=([-1], [-1]))


def _parse_einsum(subscripts, n):
    subscripts = subscripts.replace(" ", "")
    if "..." in subscripts:
        raise ValueError("einsum: ellipsis ('...') subscripts are not supported; name the axes")
    if "->" in subscripts:
        ins, out = subscripts.split("->")
    else:
        ins = subscripts
        letters = ins.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = ins.split(",")
    if len(ins) != n:
        raise ValueError(f"einsum: {subscripts!r} names {len(ins)} operands, {n} were given")
    return ins, out


def _einsum_one(x, sub, keep):
    """Sum the axes of x not in `keep`; a letter repeated in sub (a diagonal) is not
    supported. Returns (x, its subscripts)."""
    if len(set(sub)) != len(sub):
        raise ValueError(f"einsum: repeated subscripts within one operand ({sub!r}) are not "
                         f"supported")
    drop = [i for i, c in enumerate(sub) if c not in keep]
    if drop:
        x = F.sum(x, axis=tuple(drop)) if x.dtype == "float32" else \
            F.cast(F.sum(to_float(x), axis=tuple(drop)), "int32")
        sub = "".join(c for c in sub if c in keep)
    return x, sub


def _einsum_pair(a, sa, b, sb, keep):
    """Contract a and b over their shared letters not in `keep`; the result's letters
    are batch (shared, kept) + a's free + b's free."""
    a, sa = _einsum_one(a, sa, keep | set(sb))
    b, sb = _einsum_one(b, sb, keep | set(sa))
    batch = [c for c in sa if c in sb and c in keep]
    contract = [c for c in sa if c in sb and c not in keep]
    fa = [c for c in sa if c not in sb]
    fb = [c for c in sb if c not in sa]
    dims = {}
    for x, s in ((a, sa), (b, sb)):
        for c, d in zip(s, x.shape):
            if dims.setdefault(c, d) != d:
                raise ValueError(f"einsum: subscript {c!r} has sizes {dims[c]} and {d}")
    size = lambda cs: int(np.prod([dims[c] for c in cs], dtype=np.int64))  # noqa: E731
    a3 = F.reshape(F.transpose(a, tuple(sa.index(c) for c in batch + fa + contract)),
                   (size(batch), size(fa), size(contract)))
    b3 = F.reshape(F.transpose(b, tuple(sb.index(c) for c in batch + contract + fb)),
                   (size(batch), size(contract), size(fb)))
    out = _batched(a3, b3)
    letters = batch + fa + fb
    return F.reshape(out, tuple(dims[c] for c in letters)), "".join(letters)


@keras_op("*operands")
def einsum(subscripts, *operands, **kwargs):
    ins, out = _parse_einsum(subscripts, len(operands))
    for x, s in zip(operands, ins):
        if x.ndim != len(s):
            raise ValueError(f"einsum: operand of shape {x.shape} has {x.ndim} axes, "
                             f"subscripts {s!r} name {len(s)}")
    x, sx = operands[0], ins[0]
    for i in range(1, len(operands)):
        later = set(out).union(*ins[i + 1:])
        x, sx = _einsum_pair(x, sx, operands[i], ins[i], later)
    x, sx = _einsum_one(x, sx, set(out))
    if set(sx) != set(out):
        raise ValueError(f"einsum: output subscripts {out!r} name axes no operand has")
    return F.transpose(x, tuple(sx.index(c) for c in out))


# ------------------------------------------------------------------ reductions
def _reduce(x, axis, keepdims, prim, int_back=True):
    axes = reduce_axes(x, axis)
    ints = x.dtype == "int32"
    out = prim(to_float(x), axis=axes, keepdims=keepdims) if axes else x
    return F.cast(out, "int32") if ints and int_back else out


@keras_op("x")
def sum(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, F.sum)


@keras_op("x")
def mean(x, axis=None, keepdims=False):
    return _reduce(x, axis, keepdims, F.mean, int_back=False)


def _min(x, axis, keepdims):
    return -F.max(-x, axis=axis, keepdims=keepdims)


@keras_op("x")
def max(x, axis=None, keepdims=False, initial=None):
    out = _reduce(x, axis, keepdims, F.max)
    return out if initial is None else F.maximum(out, initial)


@keras_op("x")
def min(x, axis=None, keepdims=False, initial=None):
    out = _reduce(x, axis, keepdims, _min)
    return out if initial is None else F.minimum(out, initial)


amax, amin = max, min


@keras_op("x")
def prod(x, axis=None, keepdims=False, dtype=None):
    axes = reduce_axes(x, axis)
    ints = x.dtype == "int32"
    x = to_float(x)
    rest = [a for a in range(x.ndim) if a not in axes]
    y = F.transpose(x, tuple(rest + list(axes)))
    y = F.reshape(y, tuple(x.shape[a] for a in rest) + (-1,))
    n = y.shape[-1]
    while n > 1:            # pairwise products: log2(n) multiplies
        if n % 2:
            one = F.lift(y.g, np.ones(y.shape[:-1] + (1,), np.float32))
            y = F.concatenate([y, one], axis=-1)
            n += 1
        y = F.reshape(y, y.shape[:-1] + (n // 2, 2))
        y = F.slice_axis(y, -1, 0, 1) * F.slice_axis(y, -1, 1, 2)
        y = F.reshape(y, y.shape[:-1])
        n //= 2
    if n == 0:
        y = F.lift(y.g, np.ones(y.shape[:-1], np.float32))
    else:
        y = F.reshape(y, y.shape[:-1])
    if keepdims:
        y = F.reshape(y, tuple(1 if a in axes else d for a, d in enumerate(x.shape)))
    out_dtype = graph_dtype(dtype) if dtype is not None else ("int32" if ints else "float32")
    return F.cast(y, out_dtype)


@keras_op("x")
def var(x, axis=None, keepdims=False):
    axes = reduce_axes(x, axis)
    x = to_float(x)
    if not axes:
        return x * 0.0
    d = x - F.mean(x, axis=axes, keepdims=True)
    return F.mean(d * d, axis=axes, keepdims=keepdims)


@keras_op("x")
def std(x, axis=None, keepdims=False):
    return F.sqrt(var(x, axis=axis, keepdims=keepdims))


@keras_op("x", bool_result=True)
def any(x, axis=None, keepdims=False):
    nz = F.not_equal(x, 0)
    axes = reduce_axes(x, axis)
    return F.max(nz, axis=axes, keepdims=keepdims) if axes else nz


@keras_op("x", bool_result=True)
def all(x, axis=None, keepdims=False):
    nz = F.not_equal(x, 0)
    axes = reduce_axes(x, axis)
    return _min(nz, axes, keepdims) if axes else nz


@keras_op("x")
def count_nonzero(x, axis=None):
    return F.cast(F.sum(F.not_equal(x, 0), axis=reduce_axes(x, axis)), "int32")


@keras_op("x", "weights")
def average(x, axis=None, weights=None):
    x = to_float(x)
    if weights is None:
        return mean(x, axis=axis)
    if not isinstance(weights, Sym):
        return mean(x, axis=axis)
    w = to_float(weights)
    if w.ndim == 1 and x.ndim > 1 and axis is not None:
        ax = canonicalize_axis(axis, x.ndim)
        w = F.reshape(w, tuple(-1 if i == ax else 1 for i in range(x.ndim)))
    elif w.shape != x.shape:
        raise ValueError(f"average: weights of shape {weights.shape} do not match x of shape "
                         f"{x.shape} (give them x's shape, or a 1-D shape along `axis`)")
    axes = reduce_axes(x, axis)
    return F.sum(x * w, axis=axes) / F.sum(F.broadcast_to(w, x.shape), axis=axes)


def _arg(x, axis, keepdims, negate):
    x = to_float(x) if negate else x
    src = -x if negate else x
    if axis is None:
        flat = F.reshape(src, (-1,))
        out = F.op("argmax", flat, axis=0)
        return F.reshape(out, (1,) * x.ndim) if keepdims else out
    y, perm = move_axis_last(src, axis)
    out = F.op("argmax", y, axis=y.ndim - 1)
    if keepdims:
        out = F.expand_dims(out, canonicalize_axis(axis, x.ndim))
    return out


@keras_op("x")
def argmax(x, axis=None, keepdims=False):
    return _arg(x, axis, keepdims, negate=False)


@keras_op("x")
def argmin(x, axis=None, keepdims=False):
    return _arg(x, axis, keepdims, negate=True)


def _scan(x, axis, combine, identity):
    """Inclusive prefix combine along `axis`: log2(n) steps of x[i] op x[i - s] (Hillis-Steele)."""
    n = x.shape[axis]
    s = 1
    while s < n:
        lo = [0] * x.ndim
        hi = [0] * x.ndim
        lo[axis] = s
        shifted = F.pad(F.slice_axis(x, axis, 0, n - s), lo, hi)
        if identity != 0:
            fill = np.zeros([n if i == axis else 1 for i in range(x.ndim)], np.float32)
            fill.reshape(-1)[:s] = identity
            shifted = shifted + F.lift(x.g, fill)
        x = combine(x, shifted)
        s *= 2
    return x


def _cumulative(x, axis, dtype, combine, identity):
    ints = x.dtype == "int32"
    x = to_float(x)
    if axis is None:
        x, axis = F.reshape(x, (-1,)), 0
    axis = canonicalize_axis(axis, x.ndim)
    out = _scan(x, axis, combine, identity)
    out_dtype = graph_dtype(dtype) if dtype is not None else ("int32" if ints else "float32")
    return F.cast(out, out_dtype)


@keras_op("x")
def cumsum(x, axis=None, dtype=None):
    return _cumulative(x, axis, dtype, lambda a, b: a + b, 0)


@keras_op("x")
def cumprod(x, axis=None, dtype=None):
    return _cumulative(x, axis, dtype, lambda a, b: a * b, 1.0)


# ------------------------------------------------------------------ shapes and layout
@keras_op("x")
def reshape(x, newshape):
    newshape = (newshape,) if isinstance(newshape, int) else tuple(int(d) for d in newshape)
    if newshape.count(-1) > 1:
        raise ValueError(f"can only specify one unknown dimension (-1): {newshape}")
    known = int(np.prod([d for d in newshape if d != -1], dtype=np.int64))
    size = int(np.prod(x.shape, dtype=np.int64))
    if (-1 in newshape and (known == 0 or size % known)) or (-1 not in newshape and known != size):
        raise ValueError("The total size of the tensor must be unchanged. Received: "
                         f"input_shape={x.shape}, target_shape={newshape}")
    return F.reshape(x, newshape)


@keras_op("x")
def ravel(x):
    return F.reshape(x, (-1,))


@keras_op("x")
def transpose(x, axes=None):
    if axes is not None:
        axes = tuple(axes)
        if sorted(canonicalize_axis(a, x.ndim) for a in axes) != list(range(x.ndim)):
            raise ValueError(f"axes {axes} are not a permutation of the {x.ndim} axes of a "
                             f"tensor of shape {x.shape}")
    return F.transpose(x, axes)


@keras_op("x")
def moveaxis(x, source, destination):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src = [canonicalize_axis(a, x.ndim) for a in src]
    dst = [canonicalize_axis(a, x.ndim) for a in dst]
    order = [a for a in range(x.ndim) if a not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return F.transpose(x, tuple(order))


@keras_op("x")
def swapaxes(x, axis1, axis2):
    perm = list(range(x.ndim))
    a, b = canonicalize_axis(axis1, x.ndim), canonicalize_axis(axis2, x.ndim)
    perm[a], perm[b] = perm[b], perm[a]
    return F.transpose(x, tuple(perm))


@keras_op("x")
def expand_dims(x, axis):
    axes = [axis] if isinstance(axis, int) else list(axis)
    nd = x.ndim + len(axes)
    axes = sorted(canonicalize_axis(a, nd) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return F.reshape(x, tuple(shape))


@keras_op("x")
def squeeze(x, axis=None):
    if axis is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = [canonicalize_axis(a, x.ndim) for a in ([axis] if isinstance(axis, int) else axis)]
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"Cannot squeeze axis {a}, because the dimension is not 1. "
                                 f"Received: x.shape={x.shape}")
    return F.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def _as_syms(xs):
    like = next(x for x in xs if isinstance(x, Sym))
    return [_scalar_to_sym(x, like) for x in xs]


@keras_op("*xs")
def concatenate(xs, axis=0):
    xs = _as_syms(list(xs))
    rank = xs[0].ndim
    if rank == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = canonicalize_axis(axis, rank)
    for x in xs[1:]:
        if x.ndim != rank or builtins.any(d1 != d2 for i, (d1, d2) in enumerate(zip(x.shape, xs[0].shape))
                                 if i != axis):
            raise ValueError(f"'concatenate' expects all inputs to have the same shape except "
                             f"on the concatenation axis {axis}. Received: shapes "
                             f"{[t.shape for t in xs]}")
    dtype = F.result_dtype(*xs)
    xs = [to_float(x) for x in xs]
    out = F.concatenate(xs, axis) if len(xs) > 1 else xs[0]
    return F.cast(out, dtype)


@keras_op("*x")
def stack(x, axis=0):
    xs = _as_syms(list(x))
    shapes = {t.shape for t in xs}
    if len(shapes) > 1:
        raise ValueError(f"all input arrays must have the same shape to be stacked. Received: "
                         f"shapes {[t.shape for t in xs]}")
    axis = canonicalize_axis(axis, xs[0].ndim + 1)
    return concatenate([F.expand_dims(t, axis) for t in xs], axis=axis)


@keras_op("*xs")
def vstack(xs):
    xs = [F.reshape(t, (1, -1)) if t.ndim < 2 else t for t in _as_syms(list(xs))]
    return concatenate(xs, axis=0)


@keras_op("*xs")
def hstack(xs):
    xs = _as_syms(list(xs))
    return concatenate(xs, axis=0 if xs[0].ndim == 1 else 1)


@keras_op("x")
def split(x, indices_or_sections, axis=0):
    axis = canonicalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0 or n % k:
            raise ValueError(f"array split does not result in an equal division: an axis of "
                             f"size {n} into {k} sections")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        bounds = [0] + [builtins.min(builtins.max(int(i) % (n + 1) if int(i) < 0 else int(i), 0), n)
                        for i in indices_or_sections] + [n]
    return [F.slice_axis(x, axis, lo, builtins.max(lo, hi)) for lo, hi in zip(bounds, bounds[1:])]


def _normalize_indices(indices, n):
    """Symbolic int32 indices with negatives counted from the end (as numpy)."""
    if indices.dtype != "int32":
        indices = F.cast(indices, "int32")
    return F.select(F.less(indices, 0), indices + n, indices)


@keras_op("x", "indices")
def take(x, indices, axis=None):
    if axis is None:
        x, axis = F.reshape(x, (-1,)), 0
    axis = canonicalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(indices, Sym):
        indices = _normalize_indices(indices, n)
    else:
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"take: indices must be integers, got {idx.dtype}")
        indices = np.where(idx < 0, idx + n, idx).astype(np.int32)
    return F.take(x, indices, axis)


@keras_op("x", "indices")
def take_along_axis(x, indices, axis=None):
    if axis is None:
        x, axis = F.reshape(x, (-1,)), 0
    if not isinstance(indices, Sym):
        indices = F.lift(x.g, np.asarray(indices, np.int32), "int32")
    axis = canonicalize_axis(axis, x.ndim)
    if indices.ndim != x.ndim:
        raise ValueError(f"take_along_axis: `indices` must have the same rank as `x`. "
                         f"Received: x.shape={x.shape}, indices.shape={indices.shape}")
    shape = []
    for d, (dx, di) in enumerate(zip(x.shape, indices.shape)):
        if d == axis:
            shape.append(di)
        elif dx == di or di == 1 or dx == 1:
            shape.append(builtins.max(dx, di))
        else:
            raise ValueError(f"take_along_axis: x.shape={x.shape} and indices.shape="
                             f"{indices.shape} do not broadcast outside axis {axis}")
    shape = tuple(shape)
    x = F.broadcast_to(x, tuple(x.shape[axis] if d == axis else s for d, s in enumerate(shape)))
    idx = F.broadcast_to(_normalize_indices(indices, x.shape[axis]), shape)
    strides = np.cumprod((x.shape[1:] + (1,))[::-1])[::-1]
    base = np.zeros(shape, np.int64)
    for d in range(x.ndim):
        if d != axis:
            coord = np.arange(shape[d]).reshape([-1 if i == d else 1 for i in range(x.ndim)])
            base = base + coord * strides[d]
    flat = F.lift(x.g, base.astype(np.int32), "int32") + idx * int(strides[axis])
    return F.gather(F.reshape(x, (-1,)), flat)


@keras_op("x")
def tile(x, repeats):
    reps = [repeats] if isinstance(repeats, int) else list(repeats)
    nd = builtins.max(x.ndim, len(reps))
    reps = [1] * (nd - len(reps)) + reps
    x = F.reshape(x, (1,) * (nd - x.ndim) + x.shape)
    inter = tuple(v for d, r in zip(x.shape, reps) for v in (1, d))
    big = tuple(v for d, r in zip(x.shape, reps) for v in (r, d))
    y = F.broadcast_to(F.reshape(x, inter), big)
    return F.reshape(y, tuple(d * r for d, r in zip(x.shape, reps)))


@keras_op("x")
def repeat(x, repeats, axis=None):
    if axis is None:
        x, axis = F.reshape(x, (-1,)), 0
    axis = canonicalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(repeats, int):
        shape = x.shape[:axis + 1] + (1,) + x.shape[axis + 1:]
        big = x.shape[:axis + 1] + (repeats,) + x.shape[axis + 1:]
        y = F.broadcast_to(F.reshape(x, shape), big)
        return F.reshape(y, x.shape[:axis] + (n * repeats,) + x.shape[axis + 1:])
    reps = np.asarray(repeats, np.int64)
    if reps.shape != (n,):
        raise ValueError(f"repeat: {len(reps)} repeats for an axis of size {n}")
    return F.take(x, np.repeat(np.arange(n), reps).astype(np.int32), axis)


@keras_op("x")
def broadcast_to(x, shape):
    shape = tuple(int(d) for d in shape)
    try:
        from .operation_utils import broadcast_shapes
        out = broadcast_shapes(x.shape, shape)
        if out != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"Cannot broadcast a tensor of shape {x.shape} to shape {shape}") from None
    return F.broadcast_to(F.reshape(x, (1,) * (len(shape) - x.ndim) + x.shape), shape)


@keras_op("x")
def flip(x, axis=None):
    axes = reduce_axes(x, axis)
    key = tuple(builtins.slice(None, None, -1) if i in axes else builtins.slice(None)
                for i in range(x.ndim))
    return x[key] if axes else x


@keras_op("x")
def tril(x, k=0):
    n, m = x.shape[-2:]
    mask = np.tril(np.ones((n, m), np.float32), k)
    return F.select(F.lift(x.g, mask), x, 0)


@keras_op("x")
def triu(x, k=0):
    n, m = x.shape[-2:]
    mask = np.triu(np.ones((n, m), np.float32), k)
    return F.select(F.lift(x.g, mask), x, 0)


@keras_op("x")
def diagonal(x, offset=0, axis1=0, axis2=1):
    a1, a2 = canonicalize_axis(axis1, x.ndim), canonicalize_axis(axis2, x.ndim)
    rest = [a for a in range(x.ndim) if a not in (a1, a2)]
    y = F.transpose(x, tuple(rest + [a1, a2]))
    n, m = y.shape[-2:]
    rows = np.arange(builtins.max(0, -offset), builtins.min(n, m - offset))
    flat = F.reshape(y, y.shape[:-2] + (n * m,))
    return F.take(flat, (rows * m + rows + offset).astype(np.int32), flat.ndim - 1)


@keras_op("x")
def trace(x, offset=0, axis1=0, axis2=1):
    d = diagonal(x, offset=offset, axis1=axis1, axis2=axis2)
    return sum(d, axis=-1)


# ------------------------------------------------------------------ creation
def _creation_dtype(dtype, *values):
    if dtype is not None:
        return standardize_dtype(dtype)
    kinds = {np.asarray(v).dtype.kind for v in values if v is not None}
    return "float32" if "f" in kinds or not kinds else "int32"


def _np(dtype):
    return {"float32": np.float32, "int32": np.int32, "bool": bool}[dtype]


def ones(shape, dtype=None):
    return np.ones(_shape_arg(shape), _np(standardize_dtype(dtype)))


def zeros(shape, dtype=None):
    return np.zeros(_shape_arg(shape), _np(standardize_dtype(dtype)))


def full(shape, fill_value, dtype=None):
    return np.full(_shape_arg(shape), fill_value, _np(_creation_dtype(dtype, fill_value)))


def _shape_arg(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)


@keras_op("x")
def full_like(x, fill_value, dtype=None):
    d = x.dtype if dtype is None else graph_dtype(dtype)
    value = F.lift(x.g, np.asarray(fill_value, dtype=_np(d)), d)
    return F.broadcast_to(F.reshape(value, (1,) * x.ndim), x.shape)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype=dtype)


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype=dtype)


def arange(start, stop=None, step=None, dtype=None):
    if stop is None:
        start, stop = 0, start
    step = 1 if step is None else step
    d = _creation_dtype(dtype, start, stop, step)
    return np.arange(start, stop, step).astype(_np(d))


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    out = np.linspace(start, stop, num, endpoint=endpoint, retstep=retstep, axis=axis)
    d = standardize_dtype(dtype) if dtype is not None else "float32"
    if retstep:
        return out[0].astype(_np(d)), out[1]
    return out.astype(_np(d))


def eye(N, M=None, k=0, dtype=None):
    return np.eye(N, M, k, dtype=_np(standardize_dtype(dtype)))


def identity(n, dtype=None):
    return eye(n, dtype=dtype)


def tri(N, M=None, k=0, dtype=None):
    return np.tri(N, M, k, dtype=_np(standardize_dtype(dtype)))


# ------------------------------------------------------------------ shape queries
def size(x):
    return int(np.prod(getattr(x, "shape", np.shape(x)), dtype=np.int64))


def ndim(x):
    return len(getattr(x, "shape", np.shape(x)))


# ------------------------------------------------------------------ norms and sorting
@keras_op("x")
def norm(x, ord=None, axis=None, keepdims=False):
    x = to_float(x)
    if axis is None:
        axes = tuple(range(x.ndim))
        matrix = x.ndim == 2 and ord is not None
    else:
        axes = reduce_axes(x, axis)
        matrix = len(axes) == 2
    if len(axes) > 2 or (ord is not None and axis is None and x.ndim > 2):
        raise ValueError(f"Improper number of dimensions to norm: ord={ord!r} over axes {axes} "
                         f"of a tensor of shape {x.shape}")
    a = F.abs(x)
    if matrix:
        r, c = axes
        if ord in (None, "fro"):
            return F.sqrt(F.sum(x * x, axis=axes, keepdims=keepdims))
        if ord in (1, -1, np.inf, -np.inf):
            over, then = (r, c) if ord in (1, -1) else (c, r)
            s = F.sum(a, axis=over, keepdims=True)
            red = F.max if ord in (1, np.inf) else _min
            out = red(s, axis=then, keepdims=True)
            return out if keepdims else F.reshape(out, tuple(d for i, d in enumerate(x.shape)
                                                             if i not in axes))
        raise ValueError(f"Invalid `ord` argument for matrix norm: {ord!r} (2, -2 and 'nuc' "
                         f"need a singular value decomposition, which kcompile does not have)")
    if ord is None or ord == 2:
        return F.sqrt(F.sum(x * x, axis=axes, keepdims=keepdims))
    if ord == np.inf:
        return F.max(a, axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return _min(a, axes, keepdims)
    if ord == 0:
        return F.sum(F.not_equal(x, 0), axis=axes, keepdims=keepdims)
    if ord == 1:
        return F.sum(a, axis=axes, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid `ord` argument for vector norm: {ord!r}")
    return F.power(F.sum(F.power(a, float(ord)), axis=axes, keepdims=keepdims), 1.0 / ord)


def _ranks(x):
    """Stable ascending rank of every entry along the last axis: the count of smaller
    entries plus equal entries before it ((..., n, n) comparisons: meant for small n)."""
    n = x.shape[-1]
    xi = F.expand_dims(x, -1)           # (..., n, 1): entry i
    xj = F.expand_dims(x, -2)           # (..., 1, n): entry j
    before = F.lift(x.g, np.tril(np.ones((n, n), np.float32), -1))     # j < i
    count = F.less(xj, xi) + F.equal(xj, xi) * before
    return F.sum(count, axis=-1)        # (..., n)


def _permutation(x):
    """P[..., k, i] = 1 where entry i has rank k."""
    n = x.shape[-1]
    iota = F.lift(x.g, np.arange(n, dtype=np.float32).reshape(n, 1))
    return F.equal(F.expand_dims(_ranks(x), -2), iota)


def _sorted_last(x):
    return F.sum(_permutation(x) * F.expand_dims(x, -2), axis=-1)


def _argsorted_last(x):
    n = x.shape[-1]
    pos = F.lift(x.g, np.arange(n, dtype=np.float32))
    return F.cast(F.sum(_permutation(x) * pos, axis=-1), "int32")


@keras_op("x")
def sort(x, axis=-1):
    if x.ndim == 0:
        return x
    ints = x.dtype == "int32"
    y, perm = move_axis_last(to_float(x), axis)
    out = undo_perm(_sorted_last(y), perm)
    return F.cast(out, "int32") if ints else out


@keras_op("x")
def argsort(x, axis=-1):
    if x.ndim == 0:
        return F.cast(x * 0, "int32")
    y, perm = move_axis_last(to_float(x), axis)
    return undo_perm(_argsorted_last(y), perm)


def top_k_impl(x, k, sorted=True):
    ints = x.dtype == "int32"
    if not 0 <= k <= x.shape[-1]:
        raise ValueError(f"top_k: k={k} is out of range for a last axis of size {x.shape[-1]}")
    neg = -to_float(x)
    values = -F.slice_axis(_sorted_last(neg), -1, 0, k)
    indices = F.slice_axis(_argsorted_last(neg), -1, 0, k)
    return (F.cast(values, "int32") if ints else values), indices


__all__ = [n for n in list(globals()) if not n.startswith("_") and n not in (
    "annotations", "builtins", "np", "F", "Sym", "graph_dtype", "keras_op",
    "standardize_dtype", "canonicalize_axis", "check_broadcast", "move_axis_last",
    "reduce_axes", "to_float", "undo_perm", "check_broadcast_dims", "top_k_impl")]
