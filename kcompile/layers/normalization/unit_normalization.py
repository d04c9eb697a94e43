"""UnitNormalization: each sample scaled to unit L2 norm over `axis` (as Keras:
x * min(1 / sqrt(sum(x**2)), 1e12))."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..layer import Layer
from .affine import check_axes

_EPSILON = 1e-12


class UnitNormalization(Layer):
    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and all(isinstance(a, int) for a in axis):
            self.axis = list(axis)
        elif isinstance(axis, int) and not isinstance(axis, bool):
            self.axis = axis
        else:
            raise TypeError(f"Invalid value for `axis` argument: expected an int or a "
                            f"list/tuple of ints. Received: axis={axis}")
        self.built = True

    def _axes(self):
        return self.axis if isinstance(self.axis, list) else [self.axis]

    def call(self, inputs):
        x = F.cast(inputs, "float32")
        check_axes(self, self._axes(), x.ndim, (None, *x.shape[1:]))
        axes = tuple(sorted({a % x.ndim for a in self._axes()}))
        inv_norm = 1.0 / F.sqrt(F.sum(F.square(x), axis=axes, keepdims=True))
        return x * F.minimum(inv_norm, 1.0 / _EPSILON)

    def compute_output_shape(self, input_shape):
        check_axes(self, self._axes(), len(input_shape), input_shape)
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
