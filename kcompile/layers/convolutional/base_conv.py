"""BaseConv: what Conv1D and Conv2D share (Keras' keras/src/layers/convolutional/base_conv.py),
and the data-format and input checks every convolution layer uses.

The layers compute channels-last, on the `F.conv` primitive: a "channels_first" input is
transposed to channels-last before the convolution and its output transposed back after
the bias and activation (so those stay the convolution's epilogue).
"""
from __future__ import annotations

from kcompile.ir import builder as F
from ... import activations, constraints, initializers, regularizers
from ...utils.argument_validation import (standardize_data_format, standardize_padding,
                                          standardize_tuple)
from ..layer import Layer
from .conv_utils import conv_output_length, conv_padding


# -- shared by the convolution layers ------------------------------------------------------
def to_channels_last(x, data_format):
    """(N, C, *spatial) -> (N, *spatial, C) for "channels_first"; x itself otherwise."""
    if data_format == "channels_last":
        return x
    return F.transpose(x, (0, *range(2, x.ndim), 1))


def from_channels_last(y, data_format):
    """The inverse of to_channels_last."""
    if data_format == "channels_last":
        return y
    return F.transpose(y, (0, y.ndim - 1, *range(1, y.ndim - 1)))


def traced(value):
    """A layer variable as the graph value it stands for in the trace being built."""
    return value.__sym__(None) if hasattr(value, "__sym__") else value


def channel_count(input_shape, data_format):
    return input_shape[-1] if data_format == "channels_last" else input_shape[1]


def spatial_dims(input_shape, data_format):
    return tuple(input_shape[1:-1] if data_format == "channels_last" else input_shape[2:])


def output_shape(input_shape, channels, spatial, data_format):
    if data_format == "channels_last":
        return (input_shape[0], *spatial, channels)
    return (input_shape[0], channels, *spatial)


def check_input_shape(layer, input_shape, rank, expected_channels=None):
    """A convolution input has rank + 2 axes and a known channel axis (of
    `expected_channels` once the layer is built); Keras' InputSpec wording."""
    input_shape = tuple(input_shape)
    if len(input_shape) != rank + 2:
        raise ValueError(f"Input 0 of layer {layer.name!r} is incompatible with the layer: "
                         f"expected ndim={rank + 2}, found ndim={len(input_shape)}. Full "
                         f"shape received: {(None, *input_shape[1:])}")
    axis = -1 if layer.data_format == "channels_last" else 1
    channels = input_shape[axis]
    if channels is None:
        raise ValueError(f"Layer {layer.name!r}: the channel dimension of the inputs (axis "
                         f"{axis}, data_format={layer.data_format!r}) must be known. "
                         f"Received input_shape={(None, *input_shape[1:])}")
    if expected_channels is not None and channels != expected_channels:
        raise ValueError(f"Input 0 of layer {layer.name!r} is incompatible with the layer: "
                         f"expected axis {axis} of input shape to have value "
                         f"{expected_channels}, but received input with shape "
                         f"{(None, *input_shape[1:])}")
    return channels


def check_output_size(layer, input_shape, out_spatial):
    if any(d is not None and d <= 0 for d in out_spatial):
        raise ValueError(f"Computed output size would be zero or negative. Received `inputs "
                         f"shape={tuple(input_shape)}`, `kernel_size={layer.kernel_size}`, "
                         f"`dilation_rate={layer.dilation_rate}`, `strides={layer.strides}`, "
                         f"`padding={layer.padding}` (layer {layer.name!r})")


def check_positive_int(value, name, what=None):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(what or f"Invalid value for argument `{name}`. Expected a strictly "
                                 f"positive value. Received {name}={value}.")


def check_strides_and_dilation(strides, dilation_rate):
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(f"`strides > 1` not supported in conjunction with `dilation_rate > "
                         f"1`. Received: strides={strides} and dilation_rate={dilation_rate}")


def weight_options_config(layer, weights) -> dict:
    """The config entries of the named weights' initializers, regularizers (then the
    activity regularizer) and constraints, in Keras' order."""
    cfg = {}
    for kind, module in (("initializer", initializers), ("regularizer", regularizers),
                         ("constraint", constraints)):
        for w in weights:
            cfg[f"{w}_{kind}"] = module.serialize(getattr(layer, f"{w}_{kind}"))
        if kind == "regularizer":
            cfg["activity_regularizer"] = regularizers.serialize(layer.activity_regularizer)
    return cfg


class ConvShapes:
    """compute_output_shape of the convolution layers, from each family's
    `_output_spatial(input_shape)` and `_built_channels()`."""

    def _output_channels(self, input_channels):
        return self.filters

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channels = check_input_shape(self, input_shape, self.rank, self._built_channels())
        spatial = self._output_spatial(input_shape)
        check_output_size(self, input_shape, spatial)
        return output_shape(input_shape, self._output_channels(channels), spatial,
                            self.data_format)


def bias_and_activation(layer, y):
    """The epilogue every convolution layer ends with (channels-last `y`)."""
    if layer.use_bias:
        y = y + layer.bias
    return layer.activation(y)


class BaseConv(ConvShapes, Layer):
    """An N-D convolution (cross-correlation) of the inputs with `kernel` of shape
    (*kernel_size, input_channels // groups, filters), plus `bias`, then `activation`."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank
        check_positive_int(filters, "filters")
        self.filters = filters
        check_positive_int(groups, "groups", f"The number of groups must be a positive "
                                             f"integer. Received: groups={groups}.")
        self.groups = groups
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = standardize_padding(padding, allow_causal=rank == 1)
        self.data_format = standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        if filters % groups != 0:
            raise ValueError(f"The number of filters must be evenly divisible by the number "
                             f"of groups. Received: groups={groups}, filters={filters}.")
        check_strides_and_dilation(self.strides, self.dilation_rate)

    def build(self, input_shape):
        channels = check_input_shape(self, input_shape, self.rank)
        if channels % self.groups != 0:
            raise ValueError(f"The number of input channels must be evenly divisible by the "
                             f"number of groups. Received groups={self.groups}, but the input "
                             f"has {channels} channels (full input shape is "
                             f"{tuple(input_shape)}).")
        self.compute_output_shape(input_shape)
        self.kernel = self.add_weight(self.kernel_size + (channels // self.groups, self.filters),
                                      self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def convolution_op(self, inputs, kernel):
        """The convolution of channels-last `inputs` with `kernel` (no bias)."""
        padding = [conv_padding(n, k, s, self.padding, d) for n, k, s, d in
                   zip(inputs.shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)]
        return F.conv(inputs, kernel, self.strides, tuple(padding),
                      rhs_dilation=self.dilation_rate, groups=self.groups)

    def call(self, inputs):
        check_input_shape(self, inputs.shape, self.rank, self._built_channels())
        check_output_size(self, inputs.shape, self._output_spatial(inputs.shape))
        x = to_channels_last(inputs, self.data_format)
        y = bias_and_activation(self, self.convolution_op(x, self.kernel))
        return from_channels_last(y, self.data_format)

    def _output_spatial(self, input_shape):
        return tuple(conv_output_length(n, k, s, self.padding, d) for n, k, s, d in
                     zip(spatial_dims(input_shape, self.data_format), self.kernel_size,
                         self.strides, self.dilation_rate))

    def _built_channels(self):
        """The input channels the weights were made for (None before build)."""
        return self.kernel.shape[-2] * self.groups if self.built else None

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "groups": self.groups,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_options_config(self, ('kernel', 'bias'))}
