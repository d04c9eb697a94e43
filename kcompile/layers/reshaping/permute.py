"""Permute: reorders the non-batch axes (`dims` counts from 1, as Keras)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..layer import Layer


class Permute(Layer):
    supports_masking = True

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set "
                             f"of indices in `dims` must be `{{1, 2, ..., n}}`. "
                             f"Received: dims={dims}")

    def call(self, inputs):
        if inputs.ndim != len(self.dims) + 1:
            raise ValueError(f"Permute {self.name!r}: dims={self.dims} permutes "
                             f"{len(self.dims)} axes, the input has {inputs.ndim - 1} "
                             f"(shape {(None, *inputs.shape[1:])})")
        return F.transpose(inputs, (0, *self.dims))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}
