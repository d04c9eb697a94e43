"""Cropping2D: rows cut from the top and bottom, columns from the left and right."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format, standardize_tuple
from ..input_spec import check_ndim
from ..layer import Layer


def pairs_2d(value, name, verb):
    """An int, 2 ints (symmetric) or 2 pairs -> ((top, bottom), (left, right)), as
    Keras' ZeroPadding2D and Cropping2D read their argument."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"`{name}` cannot be negative. Received: {name}={value}.")
        return ((value, value), (value, value))
    if hasattr(value, "__len__"):
        if len(value) != 2:
            raise ValueError(f"`{name}` should have two elements. Received: {name}={value}.")
        return (standardize_tuple(value[0], 2, f"1st entry of {name}", allow_zero=True),
                standardize_tuple(value[1], 2, f"2nd entry of {name}", allow_zero=True))
    raise ValueError(f"`{name}` should be either an int, a tuple of 2 ints "
                     f"(symmetric_height_{verb}, symmetric_width_{verb}), or a tuple of 2 "
                     f"tuples of 2 ints ((top_{verb}, bottom_{verb}), (left_{verb}, "
                     f"right_{verb})). Received: {name}={value}.")


class Cropping2D(Layer):
    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.cropping = pairs_2d(cropping, "cropping", "crop")

    def _axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _check(self, shape, what):
        for axis, pair in zip(self._axes(), self.cropping):
            if shape[axis] is not None and sum(pair) >= shape[axis]:
                raise ValueError(f"Values in `cropping` argument should be smaller than the "
                                 f"corresponding spatial dimension of the input. Received: "
                                 f"{what}={(None, *tuple(shape)[1:])}, "
                                 f"cropping={self.cropping}")

    def call(self, inputs):
        check_ndim(self, inputs, 4)
        self._check(inputs.shape, "inputs.shape")
        start, size = [0] * 4, list(inputs.shape)
        for axis, (before, after) in zip(self._axes(), self.cropping):
            start[axis], size[axis] = before, inputs.shape[axis] - before - after
        return F.slice(inputs, start, size)

    def compute_output_shape(self, input_shape):
        self._check(input_shape, "input_shape")
        out = list(input_shape)
        for axis, pair in zip(self._axes(), self.cropping):
            if out[axis] is not None:
                out[axis] -= sum(pair)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping,
                "data_format": self.data_format}
