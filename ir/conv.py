"""The convolution primitives, declared in the registry of ops.py.

conv(x, w): the semantics of lax.conv_general_dilated with dimension numbers
("NHWC", "HWIO", "NHWC"): x is (N, *spatial, Cin), w is (*kernel, Cin/groups,
Cout) (Keras' kernel layout), the result (N, *out, Cout) with, per spatial axis,

    out = (in_d + lo + hi - k_d) // stride + 1,
    in_d = (in - 1) * lhs_dilation + 1,   k_d = (k - 1) * rhs_dilation + 1.

Negative padding crops (the backward pass of an input padded past the
kernel's reach needs it; F.conv accepts only lo, hi >= 0).

conv_weight_grad(x, g): the cotangent of conv's kernel for the output
cotangent g: dW[t, i, o] = sum over batch and output pixels of
patch_t(x)[..., i] * g[..., o] (per group). It is the convolution of x with g in
which batch and channel roles are swapped; it is its own primitive because the
layouts here are fixed channels-last, so that no transposes of x and g are
materialized.

VJPs, as JAX writes them: dX is the convolution of the cotangent, dilated by
the strides, with the spatially flipped kernel whose channel roles are swapped;
dW is conv_weight_grad. Both primitives are bilinear, so the VJPs of the VJPs are
convolutions too.
"""
from __future__ import annotations

import itertools

import numpy as np

from .graph import TensorType
from .ops import _float_only, primitive


# ------------------------------------------------------------------ attributes
def _ints(name, value, rank, lowest):
    value = (1,) * rank if value is None else tuple(int(v) for v in value)
    if len(value) != rank:
        raise ValueError(f"conv: {name} needs one value per spatial axis ({rank}), got {value}")
    if any(v < lowest for v in value):
        raise ValueError(f"conv: {name} must be >= {lowest}, got {value}")
    return value


def normalize(in_types, attrs):
    """Canonical attributes: tuples of ints, one per spatial axis; groups an int."""
    rank = in_types[0].rank - 2
    if rank < 1:
        raise ValueError(f"conv: the input needs a batch, spatial and channel axis, got "
                         f"shape {in_types[0].shape}")
    padding = attrs.get("padding")
    padding = ((0, 0),) * rank if padding is None else tuple(
        (int(lo), int(hi)) for lo, hi in padding)
    if len(padding) != rank:
        raise ValueError(f"conv: padding needs one (lo, hi) pair per spatial axis ({rank}), "
                         f"got {padding}")
    out = {"strides": _ints("strides", attrs.get("strides"), rank, 1),
           "padding": padding,
           "lhs_dilation": _ints("lhs_dilation", attrs.get("lhs_dilation"), rank, 1),
           "rhs_dilation": _ints("rhs_dilation", attrs.get("rhs_dilation"), rank, 1),
           "groups": int(attrs.get("groups", 1))}
    if out["groups"] < 1:
        raise ValueError(f"conv: groups must be >= 1, got {out['groups']}")
    if "kernel_shape" in attrs:
        out["kernel_shape"] = _ints("kernel_shape", attrs["kernel_shape"], rank, 1)
    return out


def out_spatial(in_spatial, kernel, a):
    """The output's spatial sizes; ValueError if the window does not fit once."""
    out = []
    for n, k, s, (lo, hi), ld, rd in zip(in_spatial, kernel, a["strides"], a["padding"],
                                         a["lhs_dilation"], a["rhs_dilation"]):
        span = (n - 1) * ld + 1 + lo + hi
        kd = (k - 1) * rd + 1
        if n < 1 or span < kd:
            raise ValueError(f"conv: the kernel (size {k}, dilated {kd}) does not fit the "
                             f"input (size {n}, padded {span}); input spatial {tuple(in_spatial)}, "
                             f"kernel {tuple(kernel)}, padding {a['padding']}")
        out.append((span - kd) // s + 1)
    return tuple(out)


def _check_channels(x, cin_per_group, cout, groups, what):
    cin = x.shape[-1]
    if cin % groups or cout % groups:
        raise ValueError(f"conv: input channels ({cin}) and output channels ({cout}) must "
                         f"both be divisible by groups ({groups})")
    if cin_per_group * groups != cin:
        raise ValueError(f"conv: {what} has {cin_per_group} input channels per group, the "
                         f"input {cin} channels in {groups} group(s) (expected "
                         f"{cin // groups})")


def _conv_rule(ts, a):
    x, w = ts
    _float_only("conv", x)
    _float_only("conv", w)
    if w.rank != x.rank:
        raise ValueError(f"conv: the kernel {w.shape} needs rank {x.rank} (spatial axes, "
                         f"input channels, output channels) for the input {x.shape}")
    _check_channels(x, w.shape[-2], w.shape[-1], a["groups"], f"the kernel {w.shape}")
    out = out_spatial(x.shape[1:-1], w.shape[:-2], a)
    return TensorType((x.shape[0], *out, w.shape[-1]), "float32")


def _weight_grad_rule(ts, a):
    x, g = ts
    _float_only("conv_weight_grad", x)
    _float_only("conv_weight_grad", g)
    if "kernel_shape" not in a:
        raise ValueError("conv_weight_grad needs the kernel's spatial shape (kernel_shape)")
    k = a["kernel_shape"]
    groups = a["groups"]
    cout = g.shape[-1]
    _check_channels(x, x.shape[-1] // groups, cout, groups, "the input")
    want = (x.shape[0], *out_spatial(x.shape[1:-1], k, a), cout)
    if g.shape != want:
        raise ValueError(f"conv_weight_grad: the cotangent is {g.shape}, the convolution of "
                         f"{x.shape} by a {k} kernel gives {want}")
    return TensorType((*k, x.shape[-1] // groups, cout), "float32")


# ------------------------------------------------------------------ reference
def taps(kernel):
    """Every kernel position, row-major (the order of w's leading axes)."""
    return list(itertools.product(*(range(k) for k in kernel)))


def patches(x, kernel, a):
    """(tap, the input values each output pixel sees through that tap): x dilated
    by lhs_dilation (zeros between), padded (cropped where negative), then one
    strided slice per tap. Each patch is (N, *out, Cin)."""
    rank = x.ndim - 2
    lhs = a["lhs_dilation"]
    dilated = np.zeros((x.shape[0], *((n - 1) * d + 1 for n, d in zip(x.shape[1:-1], lhs)),
                        x.shape[-1]), dtype=x.dtype)
    dilated[(slice(None), *(slice(None, None, d) for d in lhs), slice(None))] = x
    padded = np.pad(dilated, [(0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in a["padding"]]
                    + [(0, 0)])
    padded = padded[(slice(None), *(slice(max(-lo, 0), padded.shape[1 + i] - max(-hi, 0))
                                    for i, (lo, hi) in enumerate(a["padding"])), slice(None))]
    out = out_spatial(x.shape[1:-1], kernel, a)
    for tap in taps(kernel):
        idx = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                    for t, d, o, s in zip(tap, a["rhs_dilation"], out, a["strides"]))
        yield tap, padded[(slice(None), *idx, slice(None))]
    assert rank == len(out)


def _grouped(a, groups):
    """(..., C) -> (..., groups, C / groups)."""
    return a.reshape(*a.shape[:-1], groups, a.shape[-1] // groups)


def _conv_ref(xs, a):
    x, w = xs
    G = a["groups"]
    kernel = w.shape[:-2]
    out = None
    for tap, p in patches(x, kernel, a):
        wt = w[tap].reshape(w.shape[-2], G, w.shape[-1] // G)          # (Cin/G, G, Cout/G)
        term = np.einsum("...gi,igo->...go", _grouped(p, G), wt)
        out = term if out is None else out + term
    return out.reshape(*out.shape[:-2], w.shape[-1])


def _weight_grad_ref(xs, a):
    x, g = xs
    G = a["groups"]
    kernel = a["kernel_shape"]
    gg = _grouped(g, G).reshape(-1, G, g.shape[-1] // G)                # (pixels, G, Cout/G)
    dw = np.zeros((*kernel, x.shape[-1] // G, g.shape[-1]), dtype=np.result_type(x, g))
    for tap, p in patches(x, kernel, a):
        p = _grouped(p, G).reshape(-1, G, x.shape[-1] // G)               # (pixels, G, Cin/G)
        t = np.einsum("mgi,mgo->igo", p, gg)                               # (Cin/G, G, Cout/G)
        dw[tap] = t.reshape(t.shape[0], g.shape[-1])
    return dw


# ------------------------------------------------------------------ VJPs
def _transposed_kernel(F, w, groups):
    """The kernel of the transposed convolution: spatially flipped, the input and
    output channel roles swapped within each group: (*k, Cin/G, Cout) ->
    (*k, Cout/G, Cin)."""
    *k, cig, cout = w.shape
    ntaps = int(np.prod(k))
    if ntaps > 1:   # reversing every spatial axis reverses the flattened taps
        flat = F.reshape(w, (ntaps, cig, cout))
        rev = F.lift(w.g, np.arange(ntaps - 1, -1, -1, dtype=np.int32), "int32")
        w = F.reshape(F.gather(flat, rev), (*k, cig, cout))
    cog = cout // groups
    w = F.reshape(w, (*k, cig, groups, cog))
    r = len(k)
    w = F.transpose(w, (*range(r), r + 2, r + 1, r))                  # (*k, Cout/G, G, Cin/G)
    return F.reshape(w, (*k, cog, cig * groups))


def input_grad(F, x_shape, kernel, g, w, a):
    """dX of conv(x, w) for the output cotangent g: a convolution of g, dilated by
    the strides, with the transposed kernel (JAX's _conv_general_vjp_lhs_padding)."""
    padding = []
    for n, k, s, (lo, _), ld, rd, o in zip(x_shape[1:-1], kernel, a["strides"], a["padding"],
                                           a["lhs_dilation"], a["rhs_dilation"], g.shape[1:-1]):
        in_d, k_d, out_d = (n - 1) * ld + 1, (k - 1) * rd + 1, (o - 1) * s + 1
        before = k_d - lo - 1
        padding.append((before, in_d + k_d - 1 - out_d - before))
    return F.op("conv", g, _transposed_kernel(F, w, a["groups"]), strides=a["lhs_dilation"],
                padding=tuple(padding), lhs_dilation=a["strides"],
                rhs_dilation=a["rhs_dilation"], groups=a["groups"])


def _conv_attrs(a):
    return {k: a[k] for k in ("strides", "padding", "lhs_dilation", "rhs_dilation", "groups")}


def _conv_vjp(F, xs, out, g, a):
    x, w = xs
    kernel = w.shape[:-2]
    return [input_grad(F, x.shape, kernel, g, w, a),
            F.op("conv_weight_grad", x, g, kernel_shape=kernel, **_conv_attrs(a))]


def _weight_grad_vjp(F, xs, out, h, a):
    # dW = B(x, g) is bilinear: its VJP for a kernel cotangent h is (the dX of
    # conv(x, h) for g, conv(x, h)).
    x, g = xs
    return [input_grad(F, x.shape, a["kernel_shape"], g, h, a),
            F.op("conv", x, h, **_conv_attrs(a))]


primitive("conv", "conv", 2, _conv_rule, _conv_ref, _conv_vjp, normalize)
primitive("conv_weight_grad", "conv", 2, _weight_grad_rule, _weight_grad_ref,
          _weight_grad_vjp, normalize)

