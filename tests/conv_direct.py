"""Convolutions written as direct loops, from the definition: the independent
expression the conv primitives' reference rules are checked against.

For output pixel o and kernel tap t, per spatial axis the position in the
lhs-dilated, padded input is p = o*stride + t*rhs_dilation - lo; it holds an
input value iff p >= 0, p % lhs_dilation == 0 and p // lhs_dilation < in.
Plain Python (no pytest), float64.
"""
from __future__ import annotations

import itertools

import numpy as np


def _attrs(a, rank):
    one = (1,) * rank
    return (tuple(a.get("strides") or one), tuple(tuple(p) for p in a["padding"]),
            tuple(a.get("lhs_dilation") or one), tuple(a.get("rhs_dilation") or one),
            int(a.get("groups", 1)))


def out_size(n, k, s, lo, hi, ld, rd):
    return ((n - 1) * ld + 1 + lo + hi - ((k - 1) * rd + 1)) // s + 1


def _source(o, t, s, lo, ld, rd, n):
    p = o * s + t * rd - lo
    if p < 0 or p % ld:
        return None
    q = p // ld
    return q if q < n else None


def _pairs(x_shape, kernel, a):
    """Every (output pixel, tap, input pixel) triple whose input pixel exists."""
    rank = len(kernel)
    strides, padding, lhs, rhs, _ = _attrs(a, rank)
    spatial = x_shape[1:-1]
    out = [out_size(n, k, s, lo, hi, ld, rd) for n, k, s, (lo, hi), ld, rd
           in zip(spatial, kernel, strides, padding, lhs, rhs)]
    for o in itertools.product(*(range(m) for m in out)):
        for t in itertools.product(*(range(k) for k in kernel)):
            src = [_source(oi, ti, s, lo, ld, rd, n) for oi, ti, s, (lo, _), ld, rd, n
                   in zip(o, t, strides, padding, lhs, rhs, spatial)]
            if None not in src:
                yield o, t, tuple(src)


def conv(x, w, a):
    """y[n, o, g*Cog + c] = sum over taps t and i < Cig of
    x[n, src(o, t), g*Cig + i] * w[t, i, g*Cog + c]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    kernel = w.shape[:-2]
    rank = len(kernel)
    strides, padding, lhs, rhs, groups = _attrs(a, rank)
    out = [out_size(n, k, s, lo, hi, ld, rd) for n, k, s, (lo, hi), ld, rd
           in zip(x.shape[1:-1], kernel, strides, padding, lhs, rhs)]
    cig, cout = w.shape[-2], w.shape[-1]
    cog = cout // groups
    y = np.zeros((x.shape[0], *out, cout))
    for o, t, src in _pairs(x.shape, kernel, a):
        for g in range(groups):
            xs = x[(slice(None), *src, slice(g * cig, (g + 1) * cig))]        # (N, Cig)
            y[(slice(None), *o, slice(g * cog, (g + 1) * cog))] += \
                xs @ w[(*t, slice(None), slice(g * cog, (g + 1) * cog))]
    return y


def conv_weight_grad(x, gy, a):
    """dw[t, i, g*Cog + c] = sum over n and output pixels o of
    x[n, src(o, t), g*Cig + i] * gy[n, o, g*Cog + c]."""
    x, gy = np.asarray(x, np.float64), np.asarray(gy, np.float64)
    kernel = tuple(a["kernel_shape"])
    groups = _attrs(a, len(kernel))[4]
    cig, cout = x.shape[-1] // groups, gy.shape[-1]
    cog = cout // groups
    dw = np.zeros((*kernel, cig, cout))
    for o, t, src in _pairs(x.shape, kernel, a):
        for g in range(groups):
            xs = x[(slice(None), *src, slice(g * cig, (g + 1) * cig))]
            gs = gy[(slice(None), *o, slice(g * cog, (g + 1) * cog))]
            dw[(*t, slice(None), slice(g * cog, (g + 1) * cog))] += xs.T @ gs
    return dw
