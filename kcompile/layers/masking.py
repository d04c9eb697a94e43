"""Masking: marks the time steps whose features all equal `mask_value` as padding."""
from __future__ import annotations

from kcompile.ir import builder as F
from .layer import Layer


class Masking(Layer):
    """Keras' Masking: a step is kept when any feature differs from `mask_value`; the
    output is the input with skipped steps zeroed, and the (batch, steps) mask goes to
    the layers that follow (RNNs skip those steps)."""
    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def _kept(self, inputs):
        return F.max(F.not_equal(inputs, self.mask_value), axis=-1)

    def call(self, inputs):
        return inputs * F.expand_dims(self._kept(inputs), -1)

    def compute_mask(self, inputs, mask=None):
        return self._kept(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
