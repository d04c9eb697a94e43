"""Cropping1D: steps cut from the start and the end of the sequence."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_tuple
from ..input_spec import check_ndim
from ..layer import Layer


class Cropping1D(Layer):
    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = standardize_tuple(cropping, 2, "cropping", allow_zero=True)

    def call(self, inputs):
        check_ndim(self, inputs, 3)
        steps = inputs.shape[1]
        if sum(self.cropping) >= steps:
            raise ValueError(f"`cropping` parameter of `Cropping1D` layer must be smaller "
                             f"than the input length. Received: inputs.shape="
                             f"{(None, *inputs.shape[1:])}, cropping={self.cropping}")
        return F.slice_axis(inputs, 1, self.cropping[0], steps - self.cropping[1])

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        if steps is not None:
            steps -= sum(self.cropping)
            if steps <= 0:
                raise ValueError(f"`cropping` parameter of `Cropping1D` layer must be smaller "
                                 f"than the input length. Received: input_shape="
                                 f"{tuple(input_shape)}, cropping={self.cropping}")
        return (input_shape[0], steps, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}
