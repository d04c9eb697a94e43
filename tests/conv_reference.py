"""Convolutions by direct loops in numpy (float64), from Keras' documented definitions,
for the convolution layer tests. Independent of kcompile: nothing here calls it.

Channels-last throughout (`nhwc`: (N, *spatial, C)); the helpers at the bottom move a
channels-first array there and back. Every loop runs over output positions and kernel
taps, with the batch and channel contraction vectorized.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def same_padding(n, k, s, d):
    """TensorFlow's "same": output ceil(n / s); the odd zero goes after."""
    kd = (k - 1) * d + 1
    total = max((math.ceil(n / s) - 1) * s + kd - n, 0)
    return total // 2


def conv(x, w, strides, padding, dilation, groups=1):
    """Keras Conv{1,2}D: out[b, o, f] = sum_{j, c} x[b, o*s + j*d - lo, c] w[j, c', f]
    over the group of f (input channels c of that group, c' = c - its first channel);
    positions outside the input are zeros."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    rank = x.ndim - 2
    ksize = w.shape[:rank]
    cin, cout = x.shape[-1], w.shape[-1]
    cg, fg = cin // groups, cout // groups
    n = x.shape[1:-1]
    kd = [(k - 1) * dd + 1 for k, dd in zip(ksize, dilation)]
    if padding == "valid":
        lo = [0] * rank
        out = [(ni - kdi) // s + 1 for ni, kdi, s in zip(n, kd, strides)]
    elif padding == "same":
        lo = [same_padding(ni, k, s, dd) for ni, k, s, dd in zip(n, ksize, strides, dilation)]
        out = [math.ceil(ni / s) for ni, s in zip(n, strides)]
    elif padding == "causal":
        lo = [kdi - 1 for kdi in kd]
        out = [(ni - 1) // s + 1 for ni, s in zip(n, strides)]
    y = np.zeros((x.shape[0], *out, cout))
    for o in itertools.product(*map(range, out)):
        for j in itertools.product(*map(range, ksize)):
            i = [oi * s + ji * dd - l for oi, ji, s, dd, l in zip(o, j, strides, dilation, lo)]
            if not all(0 <= ii < ni for ii, ni in zip(i, n)):
                continue
            xi = x[(slice(None), *i)]                    # (N, Cin)
            for g in range(groups):
                y[(slice(None), *o, slice(g * fg, (g + 1) * fg))] += \
                    xi[:, g * cg:(g + 1) * cg] @ w[j][:, g * fg:(g + 1) * fg]
    return y


def transpose_length(n, k, s, padding, output_padding, d):
    """Keras' output size of a transposed convolution (Conv2DTranspose's docstring:
    new_rows = ((rows - 1) * strides[0] + kernel_size[0] - 2 * padding[0] +
    output_padding[0]), with its defaults when output_padding is None)."""
    kd = (k - 1) * d + 1
    if padding == "valid":
        return (n - 1) * s + kd + (max(kd, s) - kd if output_padding is None else output_padding)
    return n * s if output_padding is None else (n - 1) * s + kd % 2 + output_padding


def transpose_crop(k, s, padding, output_padding, d):
    """How many leading positions of the full scatter result (length (n - 1) * s + kd)
    the output drops: "same" centres the output as Keras does."""
    kd = (k - 1) * d + 1
    if padding == "valid":
        return 0
    total = s + kd - 2 if output_padding is None else kd + kd % 2 - 2 + output_padding
    return kd - 1 - min(total // 2 + total % 2, kd - 1)


def conv_transpose(x, w, strides, padding, output_padding, dilation):
    """Keras Conv{1,2}DTranspose as a scatter: input position i, tap j adds
    x[b, i, :] @ w[j, f, :]^T to output position i*s + j*d - crop. w: (*k, filters, in)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    rank = x.ndim - 2
    ksize = w.shape[:rank]
    n = x.shape[1:-1]
    ops = output_padding or (None,) * rank
    out = [transpose_length(ni, k, s, padding, op, dd)
           for ni, k, s, op, dd in zip(n, ksize, strides, ops, dilation)]
    crop = [transpose_crop(k, s, padding, op, dd)
            for k, s, op, dd in zip(ksize, strides, ops, dilation)]
    y = np.zeros((x.shape[0], *out, w.shape[-2]))
    for i in itertools.product(*map(range, n)):
        for j in itertools.product(*map(range, ksize)):
            o = [ii * s + ji * dd - c for ii, ji, s, dd, c in zip(i, j, strides, dilation, crop)]
            if all(0 <= oi < no for oi, no in zip(o, out)):
                y[(slice(None), *o)] += x[(slice(None), *i)] @ w[j].T
    return y


def depthwise_conv(x, w, strides, padding, dilation):
    """Keras DepthwiseConv2D: output channel c * M + m is input channel c convolved with
    w[..., c, m] (w: (*k, C, M))."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    rank = x.ndim - 2
    c, m = w.shape[-2:]
    outs = []
    for ci in range(c):
        for mi in range(m):
            wi = w[..., ci:ci + 1, mi:mi + 1]
            outs.append(conv(x[..., ci:ci + 1], wi, strides, padding, dilation))
    return np.concatenate(outs, axis=-1)


def separable_conv(x, wd, wp, strides, padding, dilation):
    """Keras SeparableConv2D: depthwise_conv, then the pointwise (1x1) kernel."""
    y = depthwise_conv(x, wd, strides, padding, dilation)
    wp = np.asarray(wp, np.float64)
    return y @ wp.reshape(wp.shape[-2:])


def to_last(x):
    return np.moveaxis(x, 1, -1)


def to_first(x):
    return np.moveaxis(x, -1, 1)


ACTIVATIONS = {None: lambda v: v, "linear": lambda v: v, "relu": lambda v: np.maximum(v, 0),
               "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v))}


def layer_output(cfg, weights, x):
    """What the layer described by `cfg` (a get_config() dict with "class_name") gives
    for input x under `weights` (the layer's get_weights(), Keras' order)."""
    cls = cfg["class_name"]
    first = cfg.get("data_format") == "channels_first"
    xl = to_last(x) if first else x
    rank = xl.ndim - 2
    tup = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)   # noqa: E731
    s, d = tup(cfg.get("strides", 1)), tup(cfg.get("dilation_rate", 1))
    pad = cfg.get("padding", "valid").lower()
    use_bias = cfg.get("use_bias", True)
    w = list(weights)
    if cls in ("Conv1D", "Conv2D"):
        y = conv(xl, w[0], s, pad, d, cfg.get("groups", 1))
    elif cls in ("Conv1DTranspose", "Conv2DTranspose"):
        op = cfg.get("output_padding")
        y = conv_transpose(xl, w[0], s, pad, None if op is None else tup(op), d)
    elif cls == "DepthwiseConv2D":
        y = depthwise_conv(xl, w[0], s, pad, d)
    elif cls == "SeparableConv2D":
        y = separable_conv(xl, w[0], w[1], s, pad, d)
        w = w[1:]
    else:
        raise ValueError(cls)
    if use_bias:
        y = y + np.asarray(w[1], np.float64)
    y = ACTIVATIONS[cfg.get("activation")](y)
    return to_first(y) if first else y
