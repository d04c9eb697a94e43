"""RepeatVector: (batch, features) -> (batch, n, features)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..layer import Layer


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
