"""Identity: returns its input unchanged (a placeholder in a model)."""
from __future__ import annotations

from .layer import Layer


class Identity(Layer):
    supports_masking = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape
