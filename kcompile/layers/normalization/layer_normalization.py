"""LayerNormalization: each sample normalized over `axis` (Keras 3's arguments, weights
and formula, rms_scaling included)."""
from __future__ import annotations

import warnings

from kcompile.ir import builder as F
from ..layer import Layer
from .affine import (add_beta, add_gamma, affine_config, check_axes, normalized_shape,
                     set_affine_options)


def axis_list(layer, axis):
    """Keras' `axis` argument: an int or a list/tuple of ints."""
    if isinstance(axis, (list, tuple)) and all(isinstance(a, int) for a in axis):
        return list(axis)
    if isinstance(axis, int) and not isinstance(axis, bool):
        return axis
    raise TypeError(f"Expected an int or a list/tuple of ints for the argument 'axis', but "
                    f"received: {axis!r}")


def broadcast_param(p, axes, shape):
    """A weight spanning `axes` of an input of `shape`, reshaped to broadcast against it."""
    return F.reshape(p, tuple(d if a in axes else 1 for a, d in enumerate(shape)))


class LayerNormalization(Layer):
    """y = (x - mean) / sqrt(var + epsilon) * gamma + beta, the moments taken per sample
    over `axis`. rms_scaling=True (deprecated in Keras, kept for its files) scales by
    1 / sqrt(var + epsilon) alone, with gamma and no beta, as Keras computes it."""
    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 rms_scaling=False, **kwargs):
        if rms_scaling:
            warnings.warn("You passed `rms_scaling=True`, which is deprecated. This argument "
                          "scales the input by the variance, not the root mean square "
                          "(RMSNormalization does that).", stacklevel=2)
        super().__init__(**kwargs)
        self.axis = axis_list(self, axis)
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.rms_scaling = bool(rms_scaling)
        set_affine_options(self, beta_initializer, gamma_initializer, beta_regularizer,
                           gamma_regularizer, beta_constraint, gamma_constraint)

    def build(self, input_shape):
        shape = normalized_shape(self, input_shape)
        self.gamma = add_gamma(self, shape) if self.scale or self.rms_scaling else None
        self.beta = add_beta(self, shape) if self.center and not self.rms_scaling else None
        self.built = True

    def call(self, inputs):
        x = F.cast(inputs, "float32")
        axes = tuple(sorted(a % x.ndim for a in self.axis))
        mean = F.mean(x, axis=axes, keepdims=True)
        var = F.mean(F.square(x - mean), axis=axes, keepdims=True)
        inv = 1.0 / F.sqrt(var + self.epsilon)
        if self.gamma is not None:
            inv = inv * broadcast_param(self.gamma, axes, x.shape)
        if self.rms_scaling:
            return x * inv
        # Keras' arrangement: x * inv + (beta - mean * inv)
        res = -mean * inv
        if self.beta is not None:
            res = res + broadcast_param(self.beta, axes, x.shape)
        return x * inv + res

    def compute_output_shape(self, input_shape):
        check_axes(self, self.axis if isinstance(self.axis, list) else [self.axis],
                   len(input_shape), input_shape)
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                **affine_config(self)}
