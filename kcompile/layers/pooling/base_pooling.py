"""BasePooling: max and average pooling over 1 or 2 spatial axes (Keras 3's arguments)."""
from __future__ import annotations

from ...utils.argument_validation import (standardize_data_format, standardize_padding,
                                          standardize_tuple)
from ..input_spec import check_ndim
from ..layer import Layer
from . import windows


class BasePooling(Layer):
    """Pools windows of `pool_size` moved by `strides` (default: `pool_size`) over the
    spatial axes of a (batch, *spatial, channels) input, or (batch, channels, *spatial)
    with data_format="channels_first"."""

    def __init__(self, pool_size, strides, pool_dimensions, pool_mode="max", padding="valid",
                 data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pool_size = standardize_tuple(pool_size, pool_dimensions, "pool_size")
        strides = pool_size if strides is None else strides
        self.strides = standardize_tuple(strides, pool_dimensions, "strides")
        if pool_mode not in ("max", "average"):
            raise ValueError(f"`pool_mode` must be either 'max' or 'average'. Received: "
                             f"{pool_mode}.")
        self.pool_mode = pool_mode
        self.padding = standardize_padding(padding)
        self.data_format = standardize_data_format(data_format)
        self.pool_dimensions = pool_dimensions

    def call(self, inputs):
        check_ndim(self, inputs, self.pool_dimensions + 2)
        axes = windows.spatial_axes(inputs.ndim, self.data_format)
        self._check_output_size(tuple(inputs.shape[a] for a in axes), inputs.shape)
        pool = windows.max_pool if self.pool_mode == "max" else windows.average_pool
        return pool(inputs, axes, self.pool_size, self.strides, self.padding)

    def _check_output_size(self, spatial, shape):
        if self.padding != "valid":
            return
        for n, p, s in zip(spatial, self.pool_size, self.strides):
            if n is not None and windows.output_length(n, p, s, "valid")[0] <= 0:
                raise ValueError(f"Computed output size would be zero or negative. Received: "
                                 f"`inputs.shape={(None, *shape[1:])}`, "
                                 f"`pool_size={self.pool_size}`, `strides={self.strides}`, "
                                 f"`padding={self.padding}`.")

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        axes = windows.spatial_axes(len(input_shape), self.data_format)
        self._check_output_size(tuple(input_shape[a] for a in axes), input_shape)
        out = list(input_shape)
        for a, p, s in zip(axes, self.pool_size, self.strides):
            if out[a] is not None:
                out[a] = windows.output_length(out[a], p, s, self.padding)[0]
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding,
                "strides": self.strides, "data_format": self.data_format}
