"""Flatten: (batch, ...) -> (batch, features), a view of the same buffer (channels-first
inputs are moved to channels-last first, as Keras does, so the feature order is the same
in both layouts)."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..layer import Layer


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)

    def call(self, inputs):
        if self.data_format == "channels_first" and inputs.ndim > 2:
            inputs = F.transpose(inputs, (0, *range(2, inputs.ndim), 1))
        return F.reshape(inputs, (inputs.shape[0], math.prod(inputs.shape[1:])))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}
