"""BaseDepthwiseConv (Keras' keras/src/layers/convolutional/base_depthwise_conv.py): each
input channel convolved with its own `depth_multiplier` filters. `kernel` has shape
(*kernel_size, input_channels, depth_multiplier); output channel c * depth_multiplier + m
is input channel c convolved with kernel[..., c, m]: a grouped convolution with one
group per input channel."""
from __future__ import annotations

from kcompile.ir import builder as F
from ... import activations, constraints, initializers, regularizers
from ...utils.argument_validation import (standardize_data_format, standardize_padding,
                                          standardize_tuple)
from ..layer import Layer
from .base_conv import (bias_and_activation, check_input_shape, check_output_size,
                        check_positive_int, ConvShapes, from_channels_last, spatial_dims,
                        to_channels_last, weight_options_config)
from .conv_utils import conv_output_length, conv_padding


def depthwise_conv(layer, x, kernel):
    """Channels-last `x` convolved per channel with `kernel` (*k, C, M), with `layer`'s
    strides, padding and dilation (shared with SeparableConv)."""
    channels, mult = kernel.shape[-2], kernel.shape[-1]
    w = F.reshape(kernel, (*kernel.shape[:-2], 1, channels * mult))
    padding = tuple(conv_padding(n, k, s, layer.padding, d) for n, k, s, d in
                    zip(x.shape[1:-1], layer.kernel_size, layer.strides, layer.dilation_rate))
    return F.conv(x, w, layer.strides, padding, rhs_dilation=layer.dilation_rate,
                  groups=channels)


def output_spatial(layer, input_shape):
    return tuple(conv_output_length(n, k, s, layer.padding, d) for n, k, s, d in
                 zip(spatial_dims(input_shape, layer.data_format), layer.kernel_size,
                     layer.strides, layer.dilation_rate))


class BaseDepthwiseConv(ConvShapes, Layer):
    def __init__(self, rank, depth_multiplier, kernel_size, strides=1, padding="valid",
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank
        check_positive_int(depth_multiplier, "depth_multiplier")
        self.depth_multiplier = depth_multiplier
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = standardize_padding(padding)
        self.data_format = standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        channels = check_input_shape(self, input_shape, self.rank)
        self.compute_output_shape(input_shape)
        self.kernel = self.add_weight(self.kernel_size + (channels, self.depth_multiplier),
                                      self.depthwise_initializer, name="kernel",
                                      regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint)
        self.bias = (self.add_weight((self.depth_multiplier * channels,), self.bias_initializer,
                                     name="bias", regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    @property
    def depthwise_kernel(self):
        """The name Keras 2 gave `kernel`."""
        return self.kernel

    def call(self, inputs):
        check_input_shape(self, inputs.shape, self.rank, self._built_channels())
        check_output_size(self, inputs.shape, output_spatial(self, inputs.shape))
        x = to_channels_last(inputs, self.data_format)
        y = bias_and_activation(self, depthwise_conv(self, x, self.kernel))
        return from_channels_last(y, self.data_format)

    _output_spatial = output_spatial

    def _built_channels(self):
        """The input channels the weights were made for (None before build)."""
        return self.kernel.shape[-2] if self.built else None

    def _output_channels(self, input_channels):
        return self.depth_multiplier * input_channels

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_options_config(self, ('depthwise', 'bias'))}
