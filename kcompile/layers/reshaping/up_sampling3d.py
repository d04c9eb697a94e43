"""UpSampling3D: each voxel repeated size[i] times along spatial axis i."""
from __future__ import annotations

from ...utils.argument_validation import standardize_data_format, standardize_tuple
from ..input_spec import check_ndim
from ..layer import Layer
from .up_sampling1d import repeat_axes
from .volume import spatial_axes_3d


class UpSampling3D(Layer):
    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.size = standardize_tuple(size, 3, "size")

    def call(self, inputs):
        check_ndim(self, inputs, 5)
        return repeat_axes(inputs, dict(zip(spatial_axes_3d(self.data_format), self.size)))

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, factor in zip(spatial_axes_3d(self.data_format), self.size):
            out[axis] = out[axis] * factor if out[axis] is not None else None
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": self.data_format}
