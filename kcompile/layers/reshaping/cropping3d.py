"""Cropping3D: slices cut before and after each of the three spatial axes of a volume."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..input_spec import check_ndim
from ..layer import Layer
from .volume import pairs_3d, spatial_axes_3d


class Cropping3D(Layer):
    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.cropping = pairs_3d(cropping, "cropping", "crop")

    def _check(self, shape, what):
        for axis, pair in zip(spatial_axes_3d(self.data_format), self.cropping):
            if shape[axis] is not None and sum(pair) >= shape[axis]:
                raise ValueError(f"Values in `cropping` argument should be smaller than the "
                                 f"corresponding spatial dimension of the input. Received: "
                                 f"{what}={(None, *tuple(shape)[1:])}, "
                                 f"cropping={self.cropping}")

    def call(self, inputs):
        check_ndim(self, inputs, 5)
        self._check(inputs.shape, "inputs.shape")
        start, size = [0] * 5, list(inputs.shape)
        for axis, (before, after) in zip(spatial_axes_3d(self.data_format), self.cropping):
            start[axis], size[axis] = before, inputs.shape[axis] - before - after
        return F.slice(inputs, start, size)

    def compute_output_shape(self, input_shape):
        self._check(input_shape, "input_shape")
        out = list(input_shape)
        for axis, pair in zip(spatial_axes_3d(self.data_format), self.cropping):
            if out[axis] is not None:
                out[axis] -= sum(pair)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping,
                "data_format": self.data_format}
