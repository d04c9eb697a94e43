"""BaseSeparableConv (Keras' keras/src/layers/convolutional/base_separable_conv.py): a
depthwise convolution (`depthwise_kernel`, (*kernel_size, input_channels,
depth_multiplier)) with the layer's strides, padding and dilation, then a 1x1
convolution (`pointwise_kernel`, (1, ..., input_channels * depth_multiplier, filters))
mixing the channels, plus `bias`, then `activation`."""
from __future__ import annotations

from kcompile.ir import builder as F
from ... import activations, constraints, initializers, regularizers
from ...utils.argument_validation import (standardize_data_format, standardize_padding,
                                          standardize_tuple)
from ..layer import Layer
from .base_conv import (bias_and_activation, check_input_shape, check_output_size,
                        check_positive_int, ConvShapes, from_channels_last, to_channels_last,
                        weight_options_config)
from .base_depthwise_conv import depthwise_conv, output_spatial


class BaseSeparableConv(ConvShapes, Layer):
    def __init__(self, rank, depth_multiplier, filters, kernel_size, strides=1, padding="valid",
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank
        check_positive_int(depth_multiplier, "depth_multiplier")
        self.depth_multiplier = depth_multiplier
        check_positive_int(filters, "filters")
        self.filters = filters
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = standardize_padding(padding)
        self.data_format = standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.pointwise_constraint = constraints.get(pointwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        channels = check_input_shape(self, input_shape, self.rank)
        self.compute_output_shape(input_shape)
        self.depthwise_kernel = self.add_weight(
            self.kernel_size + (channels, self.depth_multiplier), self.depthwise_initializer,
            name="depthwise_kernel", regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight(
            (1,) * self.rank + (self.depth_multiplier * channels, self.filters),
            self.pointwise_initializer, name="pointwise_kernel",
            regularizer=self.pointwise_regularizer, constraint=self.pointwise_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def call(self, inputs):
        check_input_shape(self, inputs.shape, self.rank, self._built_channels())
        check_output_size(self, inputs.shape, output_spatial(self, inputs.shape))
        x = to_channels_last(inputs, self.data_format)
        y = depthwise_conv(self, x, self.depthwise_kernel)
        y = F.conv(y, self.pointwise_kernel, (1,) * self.rank, ((0, 0),) * self.rank)
        y = bias_and_activation(self, y)
        return from_channels_last(y, self.data_format)

    _output_spatial = output_spatial

    def _built_channels(self):
        """The input channels the weights were made for (None before build)."""
        return self.depthwise_kernel.shape[-2] if self.built else None

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "data_format": self.data_format, "dilation_rate": self.dilation_rate,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_options_config(self, ('depthwise', 'pointwise', 'bias'))}
