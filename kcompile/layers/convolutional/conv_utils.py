"""Convolution arithmetic as Keras does it, per spatial axis: output sizes, the
padding of "valid", "same" and "causal" convolutions, and the padding that makes a
transposed convolution a stride-1 convolution of the stride-dilated input
(keras/src/ops/operation_utils.py, keras/src/backend/common/backend_utils.py).

A size may be None (a variable dimension): its output size is None too.
"""
from __future__ import annotations


def dilated_kernel_size(kernel_size: int, dilation_rate: int) -> int:
    """The extent of a kernel whose taps are `dilation_rate` apart."""
    return (kernel_size - 1) * dilation_rate + 1


def conv_output_length(size, kernel_size, stride, padding, dilation_rate):
    if size is None:
        return None
    if padding == "valid":
        return (size - dilated_kernel_size(kernel_size, dilation_rate)) // stride + 1
    return (size - 1) // stride + 1            # "same" and "causal"


def conv_padding(size, kernel_size, stride, padding, dilation_rate) -> tuple[int, int]:
    """(before, after) zeros of one spatial axis. "same" pads as TensorFlow does (the
    extra zero, if any, after); "causal" pads only before, so output[t] sees input[:t+1]."""
    k = dilated_kernel_size(kernel_size, dilation_rate)
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return k - 1, 0
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def conv_transpose_output_length(size, kernel_size, stride, padding, output_padding,
                                 dilation_rate):
    """Keras' rule: "valid" gives (size - 1) * stride + max(k, stride) (output_padding
    replacing the max's excess when given); "same" gives size * stride, or
    (size - 1) * stride + k % 2 + output_padding when output_padding is given."""
    if size is None:
        return None
    k = dilated_kernel_size(kernel_size, dilation_rate)
    if padding == "valid":
        extra = max(k, stride) - k if output_padding is None else output_padding
        return (size - 1) * stride + k + extra
    if output_padding is None:
        return size * stride
    return (size - 1) * stride + k % 2 + output_padding


def conv_transpose_padding(kernel_size, stride, padding, output_padding,
                           dilation_rate) -> tuple[int, int]:
    """(before, after) zeros around the stride-dilated input of the equivalent stride-1
    convolution with the spatially flipped kernel; the output has
    conv_transpose_output_length elements."""
    k = dilated_kernel_size(kernel_size, dilation_rate)
    if padding == "valid":
        extra = max(k, stride) - k if output_padding is None else output_padding
        return k - 1, k - 1 + extra
    if output_padding is None:
        total = stride + k - 2
    else:
        total = k + k % 2 - 2 + output_padding
    before = min(total // 2 + total % 2, k - 1)
    return before, total - before
