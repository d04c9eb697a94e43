"""BaseConvTranspose: what Conv1DTranspose and Conv2DTranspose share (Keras'
keras/src/layers/convolutional/base_conv_transpose.py).

`kernel` has Keras' layout (*kernel_size, filters, input_channels). A transposed
convolution is computed as the stride-1 convolution of the input dilated by `strides`
(lhs_dilation) with the kernel flipped in space and its channel axes swapped, padded
so that the output has Keras' size (conv_utils.conv_transpose_padding)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ... import activations, constraints, initializers, regularizers
from ...utils.argument_validation import (standardize_data_format, standardize_padding,
                                          standardize_tuple)
from ..layer import Layer
from .base_conv import (bias_and_activation, check_input_shape, check_output_size,
                        check_positive_int, check_strides_and_dilation, ConvShapes,
                        from_channels_last, spatial_dims, to_channels_last, traced,
                        weight_options_config)
from .conv_utils import conv_transpose_output_length, conv_transpose_padding


class BaseConvTranspose(ConvShapes, Layer):
    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid",
                 output_padding=None, data_format=None, dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank
        check_positive_int(filters, "filters")
        self.filters = filters
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = standardize_padding(padding)
        self.output_padding = (None if output_padding is None else
                               standardize_tuple(output_padding, rank, "output_padding",
                                                 allow_zero=True))
        self.data_format = standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        if self.output_padding is not None:
            for i, (op, s) in enumerate(zip(self.output_padding, self.strides)):
                if op >= s:
                    raise ValueError(f"`output_padding` must be strictly less than `strides` "
                                     f"for all dimensions. At dimension {i}, `output_padding` "
                                     f"is {op} but `strides` is {s}. Received: "
                                     f"output_padding={self.output_padding}, "
                                     f"strides={self.strides}")
        check_strides_and_dilation(self.strides, self.dilation_rate)

    def build(self, input_shape):
        channels = check_input_shape(self, input_shape, self.rank)
        self.compute_output_shape(input_shape)
        self.kernel = self.add_weight(self.kernel_size + (self.filters, channels),
                                      self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def _axes(self):
        ops = self.output_padding or (None,) * self.rank
        return zip(self.kernel_size, self.strides, ops, self.dilation_rate)

    def convolution_op(self, inputs, kernel):
        """The transposed convolution of channels-last `inputs` (no bias)."""
        w = traced(kernel)
        for axis, k in enumerate(self.kernel_size):
            if k > 1:
                w = F.take(w, np.arange(k - 1, -1, -1, dtype=np.int32), axis)
        w = F.transpose(w, (*range(self.rank), self.rank + 1, self.rank))
        padding = tuple(conv_transpose_padding(k, s, self.padding, op, d)
                        for k, s, op, d in self._axes())
        return F.conv(inputs, w, (1,) * self.rank, padding, lhs_dilation=self.strides,
                      rhs_dilation=self.dilation_rate)

    def call(self, inputs):
        check_input_shape(self, inputs.shape, self.rank, self._built_channels())
        check_output_size(self, inputs.shape, self._output_spatial(inputs.shape))
        x = to_channels_last(inputs, self.data_format)
        y = bias_and_activation(self, self.convolution_op(x, self.kernel))
        return from_channels_last(y, self.data_format)

    def _output_spatial(self, input_shape):
        return tuple(conv_transpose_output_length(n, k, s, self.padding, op, d)
                     for n, (k, s, op, d) in zip(spatial_dims(input_shape, self.data_format),
                                                 self._axes()))

    def _built_channels(self):
        """The input channels the weights were made for (None before build)."""
        return self.kernel.shape[-1] if self.built else None

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "output_padding": self.output_padding,
                "data_format": self.data_format, "dilation_rate": self.dilation_rate,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_options_config(self, ('kernel', 'bias'))}
