"""Reshape: a view of the same buffer in the target shape (one -1 axis inferred)."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from ..layer import Layer


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
