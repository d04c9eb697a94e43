"""BaseGlobalPooling: one value per channel over all the spatial axes."""
from __future__ import annotations

from ...utils.argument_validation import standardize_data_format
from ..input_spec import check_ndim
from ..layer import Layer
from . import windows


class BaseGlobalPooling(Layer):
    def __init__(self, pool_dimensions, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.keepdims = keepdims
        self.pool_dimensions = pool_dimensions

    def _spatial_axes(self, inputs):
        check_ndim(self, inputs, self.pool_dimensions + 2)
        return windows.spatial_axes(inputs.ndim, self.data_format)

    def compute_output_shape(self, input_shape):
        spatial = len(input_shape) - 2
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        if not self.keepdims:
            return (input_shape[0], channels)
        if self.data_format == "channels_last":
            return (input_shape[0], *(1,) * spatial, channels)
        return (input_shape[0], channels, *(1,) * spatial)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}
