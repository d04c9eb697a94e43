"""ZeroPadding3D: zeros before and after each of the three spatial axes of a volume."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..input_spec import check_ndim
from ..layer import Layer
from .volume import pairs_3d, spatial_axes_3d


class ZeroPadding3D(Layer):
    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.padding = pairs_3d(padding, "padding", "pad")

    def call(self, inputs):
        check_ndim(self, inputs, 5)
        lo, hi = [0] * 5, [0] * 5
        for axis, (before, after) in zip(spatial_axes_3d(self.data_format), self.padding):
            lo[axis], hi[axis] = before, after
        return F.pad(inputs, lo, hi)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, pair in zip(spatial_axes_3d(self.data_format), self.padding):
            if out[axis] is not None:
                out[axis] += sum(pair)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}
