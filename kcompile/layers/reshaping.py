"""Flatten and Reshape (views of the same buffer, no data movement) and RepeatVector."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from .layer import Layer


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)

    def call(self, inputs):
        return F.reshape(inputs, (inputs.shape[0], math.prod(inputs.shape[1:])))

    def get_config(self):
        return {**super().get_config(), "data_format": None}


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)
        if sum(d == -1 for d in self.target_shape) > 1:
            raise ValueError(f"Reshape: at most one -1 in target_shape, received {self.target_shape}")

    def call(self, inputs):
        n = math.prod(inputs.shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        shape = tuple(n // known if d == -1 else d for d in self.target_shape)
        if math.prod(shape) != n or (-1 in self.target_shape and n % known):
            raise ValueError(f"Reshape {self.name!r}: cannot reshape an input of shape "
                             f"{(None, *inputs.shape[1:])} to {(None, *self.target_shape)}")
        return F.reshape(inputs, (inputs.shape[0], *shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features): the input repeated n times."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise TypeError(f"Expected an integer value for `n`, got {type(n)}.")
        self.n = n

    def call(self, inputs):
        if inputs.ndim != 2:
            raise ValueError(f"RepeatVector {self.name!r} expects inputs of shape (batch, "
                             f"features), received {(None, *inputs.shape[1:])}")
        B, D = inputs.shape
        return F.broadcast_to(F.reshape(inputs, (B, 1, D)), (B, self.n, D))

    def get_config(self):
        return {**super().get_config(), "n": self.n}
