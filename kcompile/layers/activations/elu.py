"""ELU: x for x > 0, alpha * (exp(x) - 1) below."""
from __future__ import annotations

from ... import activations
from ..layer import Layer


class ELU(Layer):
    supports_masking = True

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def call(self, inputs):
        return activations.elu(inputs, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # Keras 3 leaves alpha out of the config (a default-alpha ELU on reload);
        # writing it keeps the layer's value and Keras' ELU accepts the key.
        return {**super().get_config(), "alpha": self.alpha}
