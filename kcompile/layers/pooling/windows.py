"""Pooling windows as strided views of the input, composed of existing primitives.

Each spatial axis of length n, padded as Keras pads it, is regrouped as (L, stride)
by one reshape; the element at window offset k of output position o, o * stride + k,
is then at (o + k // stride, k % stride), so the window's k-th elements of every
output position are one slice. A pooling is an elementwise combination of its
pool_size slices: one fused loop forward, pads of the cotangent backward. No gather
and no new primitive, whatever the strides, padding or overlap.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from kcompile.ir import builder as F


def spatial_axes(ndim: int, data_format: str) -> tuple[int, ...]:
    return tuple(range(1, ndim - 1)) if data_format == "channels_last" else tuple(range(2, ndim))


def output_length(size: int, pool: int, stride: int, padding: str):
    """(output length, padding before, padding after) along one axis, as Keras (and TF's
    "SAME") computes them: the extra element of an odd total padding goes after."""
    if padding == "valid":
        return (size - pool) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + pool - size, 0)
    return out, total // 2, total - total // 2


class Windows:
    """The views of `x` that pooling combines: `views[k]` holds the k-th element (in
    row-major window order) of every window. Views keep a size-1 axis after each
    spatial axis; `finish` removes them from a combined result."""

    def __init__(self, x, axes, pool, strides, padding, pad_value=0.0):
        self.axes = tuple(axes)
        self.plan = {}                     # axis -> (out, before, after, L, stride)
        self.pool = dict(zip(self.axes, pool))
        self.size = {a: x.shape[a] for a in self.axes}
        lo, hi, keep = [0] * x.ndim, [0] * x.ndim, list(x.shape)
        for a, p, s in zip(self.axes, pool, strides):
            out, before, after = output_length(x.shape[a], p, s, padding)
            L = out + (p - 1) // s
            self.plan[a] = (out, before, after, L, s)
            lo[a] = before
            # Grow (or cut) the axis to L * s so it regroups as (L, s); the cells past
            # the real padding are never read.
            hi[a] = max(L * s - x.shape[a] - before, 0)
            keep[a] = L * s
        xp = F.pad(x, lo, hi)
        if pad_value != 0.0 and any(self.plan[a][1] or self.plan[a][2] for a in self.axes):
            xp = xp + F.lift(x.g, self._pad_mask(xp.shape, x.shape, lo, pad_value))
        xp = F.slice(xp, [0] * x.ndim, keep)
        grouped = []
        for i, d in enumerate(keep):
            grouped += [self.plan[i][3], self.plan[i][4]] if i in self.plan else [d]
        xg = F.reshape(xp, grouped)
        self.views = []
        for offset in itertools.product(*(range(p) for p in pool)):
            start, size = [], []
            by_axis = dict(zip(self.axes, offset))
            for i, d in enumerate(keep):
                if i in self.plan:
                    q, r = divmod(by_axis[i], self.plan[i][4])
                    start += [q, r]
                    size += [self.plan[i][0], 1]
                else:
                    start.append(0)
                    size.append(d)
            self.views.append(F.slice(xg, start, size))
        self.out_shape = tuple(self.plan[i][0] if i in self.plan else d
                               for i, d in enumerate(x.shape))

    def _pad_mask(self, padded_shape, shape, lo, pad_value):
        """0 over the input, `pad_value` over its padding (broadcast over the other axes)."""
        mask = np.zeros([padded_shape[i] if i in self.plan else 1
                         for i in range(len(shape))], np.float32)
        inside = tuple(slice(lo[i], lo[i] + shape[i]) if i in self.plan else slice(None)
                       for i in range(len(shape)))
        mask[...] = pad_value
        mask[inside] = 0.0
        return mask

    def real_counts(self) -> np.ndarray:
        """How many real (not padded) elements each window holds, shaped like a view."""
        dims = [[self.plan[i][0], 1] if i in self.plan else [1] for i in range(len(self.out_shape))]
        count = np.ones([d for ds in dims for d in ds], np.float32)
        j = 0
        for i, ds in enumerate(dims):
            if i in self.plan:
                out, before, _, _, s = self.plan[i]
                starts = np.arange(out) * s - before
                per = np.minimum(starts + self.pool[i], self.size[i]) - np.maximum(starts, 0)
                count = count * per.reshape([out if k == j else 1 for k in range(count.ndim)])
            j += len(ds)
        return count.astype(np.float32)

    def finish(self, y):
        return F.reshape(y, self.out_shape)


def max_pool(x, axes, pool, strides, padding):
    """Windows' maxima. The gradient goes to one element per window, the first maximum
    in window order (as TF's MaxPoolGrad and XLA's select_and_scatter route it): the
    running maximum is the second operand of each `maximum`, which receives the
    cotangent on ties."""
    w = Windows(x, axes, pool, strides, padding, pad_value=-np.inf)
    m = w.views[0]
    for v in w.views[1:]:
        m = F.maximum(v, m)
    return w.finish(m)


def average_pool(x, axes, pool, strides, padding):
    """Windows' means; with "same" padding each window is divided by the number of
    real elements it covers, as Keras does."""
    w = Windows(x, axes, pool, strides, padding)
    total = w.views[0]
    for v in w.views[1:]:
        total = total + v
    if padding == "valid":
        return w.finish(total / float(math.prod(pool)))
    return w.finish(total / F.lift(x.g, w.real_counts()))
