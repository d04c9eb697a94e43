"""Shape and axis rules shared by the ops, with Keras' error wording."""
from __future__ import annotations

from kcompile.ir import builder as F


def broadcast_shapes(shape1, shape2) -> tuple:
    """numpy broadcasting of two shapes; incompatible shapes raise as Keras does."""
    s1, s2 = list(shape1), list(shape2)
    n = max(len(s1), len(s2))
    a, b = [1] * (n - len(s1)) + s1, [1] * (n - len(s2)) + s2
    out = []
    for d1, d2 in zip(a, b):
        if d1 == d2 or d2 == 1:
            out.append(d1)
        elif d1 == 1:
            out.append(d2)
        else:
            raise ValueError("Cannot broadcast shape, the failure dim has value "
                             f"{d1}, which cannot be broadcasted to {d2}. "
                             f"Input shapes are: {list(shape1)} and {list(shape2)}.")
    return tuple(out)


def shape_of(x) -> tuple:
    return tuple(getattr(x, "shape", ()))


def check_broadcast(*xs) -> tuple:
    shape = ()
    for x in xs:
        shape = broadcast_shapes(shape, shape_of(x)) if shape else shape_of(x)
    return shape


def canonicalize_axis(axis, ndim: int) -> int:
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for array of dimension {ndim}")
    return axis % ndim


def reduce_axes(x, axis) -> tuple:
    """The sorted, non-negative axes a reduction over `axis` (None: all) covers."""
    if axis is None:
        return tuple(range(x.ndim))
    if isinstance(axis, (list, tuple)):
        axes = [canonicalize_axis(a, x.ndim) for a in axis]
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in {tuple(axis)}")
        return tuple(sorted(axes))
    return (canonicalize_axis(axis, x.ndim),)


def to_float(x):
    """x in float32 (Keras computes float results of integer inputs in floatx)."""
    return F.cast(x, "float32") if x.dtype != "float32" else x


def move_axis_last(x, axis):
    axis = canonicalize_axis(axis, x.ndim)
    perm = tuple(i for i in range(x.ndim) if i != axis) + (axis,)
    return F.transpose(x, perm), perm


def undo_perm(x, perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return F.transpose(x, tuple(inv))
