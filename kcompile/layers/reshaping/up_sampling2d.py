"""UpSampling2D: images enlarged `size` times, by repeating pixels ("nearest") or by
linear interpolation along each axis ("bilinear", the half-pixel sampling of Keras'
image.resize: output pixel i samples input position (i + 0.5) / size - 0.5, clamped to
the image)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format, standardize_tuple
from ..input_spec import check_ndim
from ..layer import Layer
from .up_sampling1d import repeat_axes

INTERPOLATIONS = ("nearest", "bilinear")


def linear_taps(n: int, factor: int):
    """For each of the n * factor outputs along an axis: its two input indices and
    their weights."""
    pos = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.int32)
    hi = np.minimum(lo + 1, n - 1).astype(np.int32)
    w_hi = (pos - lo).astype(np.float32)
    return lo, hi, 1.0 - w_hi, w_hi


def interpolate_axis(x, axis: int, factor: int):
    lo, hi, w_lo, w_hi = linear_taps(x.shape[axis], factor)
    shape = [1] * x.ndim
    shape[axis] = len(lo)
    return (F.take(x, lo, axis) * w_lo.reshape(shape).astype(np.float32)
            + F.take(x, hi, axis) * w_hi.reshape(shape).astype(np.float32))


class UpSampling2D(Layer):
    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.size = standardize_tuple(size, 2, "size")
        self.interpolation = str(interpolation).lower()
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"UpSampling2D: `interpolation` must be one of "
                             f"{INTERPOLATIONS} in kcompile. Received: "
                             f"interpolation={interpolation!r}")

    def _axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def call(self, inputs):
        check_ndim(self, inputs, 4)
        axes = self._axes()
        if self.interpolation == "nearest":
            return repeat_axes(inputs, dict(zip(axes, self.size)))
        out = inputs
        for axis, factor in zip(axes, self.size):
            if factor != 1:
                out = interpolate_axis(out, axis, factor)
        return out

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, factor in zip(self._axes(), self.size):
            out[axis] = out[axis] * factor if out[axis] is not None else None
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": self.data_format,
                "interpolation": self.interpolation}
