"""ActivityRegularization: the identity, adding l1 * sum|x| + l2 * sum x^2 of its
output to the training loss (through the layer's activity regularizer)."""
from __future__ import annotations

from .. import regularizers
from .layer import Layer


class ActivityRegularization(Layer):
    supports_masking = True

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        kwargs.pop("activity_regularizer", None)       # it is l1/l2, given here
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1 = l1
        self.l2 = l2

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        return {**config, "l1": self.l1, "l2": self.l2}
