"""The neural-network ops of `keras.ops` (also `keras.ops.nn`): activations, softmax,
normalization statistics, one-hot encoding and the cross-entropies.

Activations share their formulas with `kcompile.activations` (the layer-level
functions), so a layer's `activation="gelu"` and `ops.gelu` are one definition.
"""
from __future__ import annotations


from kcompile import activations as A
from kcompile.ir import builder as F
from .dispatch import graph_dtype, keras_op
from .operation_utils import canonicalize_axis, reduce_axes, to_float


def _epsilon():
    try:
        from kcompile import config
        return float(config.epsilon())
    except (ImportError, AttributeError):
        return 1e-7


def _activation(fn, name):
    @keras_op("x")
    def op(x):
        return fn(to_float(x))
    op.__name__ = op.__qualname__ = name
    return op


relu = _activation(A.relu, "relu")
relu6 = _activation(A.relu6, "relu6")
selu = _activation(A.selu, "selu")
sigmoid = _activation(A.sigmoid, "sigmoid")
hard_sigmoid = _activation(A.hard_sigmoid, "hard_sigmoid")
softplus = _activation(A.softplus, "softplus")
softsign = _activation(A.softsign, "softsign")
silu = _activation(A.silu, "silu")
swish = silu
hard_silu = _activation(A.hard_silu, "hard_silu")
hard_swish = hard_silu
log_sigmoid = _activation(A.log_sigmoid, "log_sigmoid")
tanh_shrink = _activation(lambda x: x - F.tanh(x), "tanh_shrink")
hard_tanh = _activation(lambda x: F.clip(x, -1.0, 1.0), "hard_tanh")


@keras_op("x")
def elu(x, alpha=1.0):
    return A.elu(to_float(x), alpha)


@keras_op("x")
def celu(x, alpha=1.0):
    x = to_float(x)
    return F.maximum(x, 0.0) + alpha * (F.exp(F.minimum(x, 0.0) / alpha) - 1.0)


@keras_op("x")
def leaky_relu(x, negative_slope=0.2):
    return A.leaky_relu(to_float(x), negative_slope)


@keras_op("x")
def gelu(x, approximate=True):
    return A.gelu(to_float(x), approximate)


@keras_op("x")
def squareplus(x, b=4):
    x = to_float(x)
    return (x + F.sqrt(x * x + float(b))) * 0.5


@keras_op("x")
def glu(x, axis=-1):
    axis = canonicalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if n % 2:
        raise ValueError(f"axis size must be divisible by 2. Received: x.shape={x.shape} "
                         f"with axis={axis}")
    x = to_float(x)
    return F.slice_axis(x, axis, 0, n // 2) * F.sigmoid(F.slice_axis(x, axis, n // 2, n))


@keras_op("x")
def softmax(x, axis=-1):
    x = to_float(x)
    return A.softmax(x, reduce_axes(x, axis) if axis is None or not isinstance(axis, int) else axis)


@keras_op("x")
def log_softmax(x, axis=-1):
    x = to_float(x)
    return A.log_softmax(x, reduce_axes(x, axis) if axis is None or not isinstance(axis, int)
                         else axis)


@keras_op("x")
def moments(x, axes, keepdims=False, synchronized=False):
    x = to_float(x)
    axes = reduce_axes(x, axes)
    mean = F.mean(x, axis=axes, keepdims=True)
    d = x - mean
    var = F.mean(d * d, axis=axes, keepdims=keepdims)
    return (mean if keepdims else F.reshape(mean, tuple(s for i, s in enumerate(x.shape)
                                                        if i not in axes))), var


@keras_op("x")
def normalize(x, axis=-1, order=2, epsilon=None):
    x = to_float(x)
    eps = _epsilon() if epsilon is None else float(epsilon)
    axes = reduce_axes(x, axis)
    if order == 2:
        # x / max(||x||, eps), as x * rsqrt(max(sum x^2, eps^2))
        return x / F.sqrt(F.maximum(F.sum(x * x, axis=axes, keepdims=True), eps * eps))
    if order == 1:
        return x / F.maximum(F.sum(F.abs(x), axis=axes, keepdims=True), eps)
    raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order} "
                     f"(kcompile supports 1 and 2)")


@keras_op("x")
def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    if sparse:
        raise ValueError("one_hot(sparse=True): kcompile has no sparse tensors")
    labels = F.cast(x, "int32")
    out = F.one_hot(labels, int(num_classes))          # (..., num_classes), zeros out of range
    axis = canonicalize_axis(axis, x.ndim + 1)
    if axis != x.ndim:
        perm = list(range(x.ndim))
        perm.insert(axis, x.ndim)
        out = F.transpose(out, tuple(perm))
    return F.cast(out, graph_dtype(dtype) if dtype is not None else "float32")


@keras_op("x")
def multi_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    hot = one_hot(x, num_classes, axis=-1, sparse=sparse)      # (..., n, classes)
    out = F.max(hot, axis=-2)
    if axis not in (-1, out.ndim - 1):
        axis = canonicalize_axis(axis, out.ndim)
        perm = list(range(out.ndim - 1))
        perm.insert(axis, out.ndim - 1)
        out = F.transpose(out, tuple(perm))
    return F.cast(out, graph_dtype(dtype) if dtype is not None else "float32")


def _check_same_shape(target, output, what):
    if target.shape != output.shape:
        raise ValueError(f"Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={target.shape}, output.shape={output.shape}"
                         f" ({what})")


@keras_op("target", "output")
def binary_crossentropy(target, output, from_logits=False):
    target, output = to_float(target), to_float(output)
    _check_same_shape(target, output, "binary_crossentropy")
    if from_logits:
        # max(x, 0) - x t + log(1 + e^{-|x|}): stable for any logit
        return F.relu(output) - output * target + F.log(1.0 + F.exp(-F.abs(output)))
    eps = _epsilon()
    p = F.clip(output, eps, 1.0 - eps)
    return -(target * F.log(p) + (1.0 - target) * F.log(1.0 - p))


@keras_op("target", "output")
def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    target, output = to_float(target), to_float(output)
    _check_same_shape(target, output, "categorical_crossentropy")
    axis = canonicalize_axis(axis, output.ndim)
    if from_logits:
        return -F.sum(target * A.log_softmax(output, axis), axis=axis)
    eps = _epsilon()
    p = output / F.sum(output, axis=axis, keepdims=True)
    p = F.clip(p, eps, 1.0 - eps)
    return -F.sum(target * F.log(p), axis=axis)


@keras_op("target", "output")
def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    output = to_float(output)
    axis = canonicalize_axis(axis, output.ndim)
    if target.ndim == output.ndim and target.shape[-1] == 1:
        target = F.reshape(target, target.shape[:-1])
    if target.shape != output.shape[:axis] + output.shape[axis + 1:]:
        raise ValueError(f"Arguments `target` and `output` must have the same shape up until "
                         f"the last dimension: target.shape={target.shape}, "
                         f"output.shape={output.shape}")
    hot = one_hot(target, output.shape[axis], axis=axis)
    return categorical_crossentropy(hot, output, from_logits=from_logits, axis=axis)




# -- convolutions ---------------------------------------------------------------------------------
def _conv_channels_last(inputs, kernel, strides, padding, data_format, dilation_rate, groups):
    from kcompile.layers.convolutional.base_conv import from_channels_last, to_channels_last
    from kcompile.layers.convolutional.conv_utils import conv_padding
    from kcompile.utils.argument_validation import standardize_data_format, standardize_tuple
    rank = inputs.ndim - 2
    if rank not in (1, 2):
        raise ValueError(f"conv: inputs must be 3-D or 4-D (a batch of 1-D or 2-D signals with "
                         f"channels). Received: inputs.shape={tuple(inputs.shape)}")
    padding = str(padding).lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding!r}")
    fmt = standardize_data_format(data_format)
    strides = standardize_tuple(strides, rank, "strides")
    dilation = standardize_tuple(dilation_rate, rank, "dilation_rate")
    x = to_channels_last(to_float(inputs), fmt)
    pads = tuple(conv_padding(n, k, s, padding, d) for n, k, s, d in
                 zip(x.shape[1:-1], kernel.shape[:rank], strides, dilation))
    y = F.conv(x, to_float(kernel), strides, pads, rhs_dilation=dilation, groups=groups(x))
    return from_channels_last(y, fmt)


@keras_op("inputs", "kernel")
def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """keras.ops.conv: a 1-D or 2-D convolution; kernel (*k, Cin / groups, Cout), the
    groups being Cin over the kernel's input channels; padding 'valid' or 'same'."""
    def groups(x):
        if x.shape[-1] % kernel.shape[-2]:
            raise ValueError(f"conv: the input's {x.shape[-1]} channels are not a multiple of "
                             f"the kernel's {kernel.shape[-2]} input channels")
        return x.shape[-1] // kernel.shape[-2]
    return _conv_channels_last(inputs, kernel, strides, padding, data_format, dilation_rate,
                               groups)


@keras_op("inputs", "kernel")
def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """keras.ops.depthwise_conv: each input channel convolved with its own `multiplier`
    filters; kernel (*k, Cin, multiplier)."""
    *k, cin, mult = kernel.shape
    flat = F.reshape(to_float(kernel), (*k, 1, cin * mult))
    return _conv_channels_last(inputs, flat, strides, padding, data_format, dilation_rate,
                               lambda x: x.shape[-1])


__all__ = [n for n in list(globals()) if not n.startswith("_") and n not in (
    "annotations", "np", "A", "F", "graph_dtype", "keras_op", "canonicalize_axis",
    "reduce_axes", "to_float")]
