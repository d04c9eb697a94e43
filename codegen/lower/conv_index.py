"""Index arithmetic of the convolution kernels: pixels, taps and the input
positions they meet."""
from __future__ import annotations

from ..irutil import i64


def decompose(b, flat, dims):
    """Row-major indices of `flat` in `dims` (constant divisors: multiply-shifts)."""
    out = []
    for d in reversed(dims[1:]):
        out.append(b.urem(flat, i64(d)))
        flat = b.udiv(flat, i64(d))
    out.append(flat)
    return out[::-1]


def offset(b, idx, shape):
    off = i64(0)
    for i, d in zip(idx, shape):
        off = b.add(b.mul(off, i64(d)), i)
    return off


def input_position(b, out_idx, tap_idx, a, in_spatial, axes=None):
    """(inside, positions): the input pixel an output pixel sees through a tap, per
    spatial axis (o*stride + t*rhs_dilation - lo, undilated by lhs_dilation), and
    whether it exists (inside the input, on the lhs_dilation lattice). `axes`: the
    spatial axes the indices are of (default: all)."""
    axes = range(len(in_spatial)) if axes is None else axes
    inside, pos = None, []
    for o, t, ax in zip(out_idx, tap_idx, axes):
        s, (lo, _), ld, rd, n = (a["strides"][ax], a["padding"][ax], a["lhs_dilation"][ax],
                                 a["rhs_dilation"][ax], in_spatial[ax])
        p = b.sub(b.add(b.mul(o, i64(s)), b.mul(t, i64(rd))), i64(lo))
        ok = b.icmp_signed(">=", p, i64(0))
        if ld > 1:
            ok = b.and_(ok, b.icmp_signed("==", b.srem(p, i64(ld)), i64(0)))
            p = b.sdiv(p, i64(ld))
        ok = b.and_(ok, b.icmp_signed("<", p, i64(n)))
        inside = ok if inside is None else b.and_(inside, ok)
        pos.append(p)
    return inside, pos
