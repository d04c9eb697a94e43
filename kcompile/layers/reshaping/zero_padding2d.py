"""ZeroPadding2D: rows of zeros above and below, columns of zeros left and right."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..input_spec import check_ndim
from ..layer import Layer
from .cropping2d import pairs_2d


class ZeroPadding2D(Layer):
    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.padding = pairs_2d(padding, "padding", "pad")

    def _axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def call(self, inputs):
        check_ndim(self, inputs, 4)
        lo, hi = [0] * 4, [0] * 4
        for axis, (before, after) in zip(self._axes(), self.padding):
            lo[axis], hi[axis] = before, after
        return F.pad(inputs, lo, hi)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, pair in zip(self._axes(), self.padding):
            if out[axis] is not None:
                out[axis] += sum(pair)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}
