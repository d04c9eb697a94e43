"""ZeroPadding1D: zeros added before and after the steps."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format, standardize_tuple
from ..input_spec import check_ndim
from ..layer import Layer


class ZeroPadding1D(Layer):
    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.padding = standardize_tuple(padding, 2, "padding", allow_zero=True)

    def _axis(self):
        return 1 if self.data_format == "channels_last" else 2

    def call(self, inputs):
        check_ndim(self, inputs, 3)
        lo, hi = [0, 0, 0], [0, 0, 0]
        lo[self._axis()], hi[self._axis()] = self.padding
        return F.pad(inputs, lo, hi)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        if out[self._axis()] is not None:
            out[self._axis()] += sum(self.padding)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}
