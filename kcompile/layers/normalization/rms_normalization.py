"""RMSNormalization: x / sqrt(mean(x**2 over axis) + epsilon) * scale (Keras 3)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..layer import Layer
from .affine import check_axes, normalized_shape
from .layer_normalization import axis_list, broadcast_param


class RMSNormalization(Layer):
    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis_list(self, axis)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        shape = normalized_shape(self, input_shape)
        self.scale = self.add_weight(shape, "ones", name="scale")
        self.built = True

    def call(self, inputs):
        x = F.cast(inputs, "float32")
        axes = tuple(sorted(a % x.ndim for a in self.axis))
        inv = 1.0 / F.sqrt(F.mean(F.square(x), axis=axes, keepdims=True) + self.epsilon)
        return x * inv * broadcast_param(self.scale, axes, x.shape)

    def compute_output_shape(self, input_shape):
        check_axes(self, self.axis if isinstance(self.axis, list) else [self.axis],
                   len(input_shape), input_shape)
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
