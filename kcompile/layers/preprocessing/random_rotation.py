"""RandomRotation: in training, each image rotated about its center by an angle drawn
uniformly from factor * 360 degrees (Keras' affine matrix, sampled as Keras' JAX
affine_transform: kcompile/layers/preprocessing/affine.py); the identity in inference."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..noise import _SeededNoise
from .affine import INTERPOLATIONS, affine_sample
from .image_resize import image_axes


_FILL_MODES = ("reflect", "wrap", "constant", "nearest")        # Keras' choice for this layer


def image_factor(factor, bounds=(-1, 1)):
    """Keras' reading of a `factor` argument: x -> (-|x|, |x|), (a, b) -> sorted."""
    msg = (f"The `factor` argument should be a number (or a list of two numbers) in the "
           f"range [{bounds[0]}, {bounds[1]}]. Received: factor={factor}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ValueError(msg)
        return tuple(sorted(factor))
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        if not bounds[0] <= factor <= bounds[1]:
            raise ValueError(msg)
        return (max(-abs(factor), bounds[0]), abs(factor))
    raise ValueError(msg)


class RandomRotation(_SeededNoise):
    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = image_factor(factor)
        if fill_mode not in _FILL_MODES:
            raise NotImplementedError(f"Unknown `fill_mode` {fill_mode}. Expected of one "
                                      f"{_FILL_MODES}.")
        if interpolation not in INTERPOLATIONS:
            raise NotImplementedError(f"Unknown `interpolation` {interpolation}. Expected of "
                                      f"one {INTERPOLATIONS}.")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = fill_value
        self.data_format = standardize_data_format(data_format)

    def _coefficients(self, batch, height, width):
        """Keras' rotation matrix about the image center ((width - 1) / 2, (height - 1) / 2)."""
        lower, upper = self.factor[0] * 360.0, self.factor[1] * 360.0
        u = F.random_uniform(self._key(), (batch,), self._salt)
        angle = (u * (upper - lower) + lower) * (math.pi / 180.0)
        cos, sin = F.cos(angle), F.sin(angle)
        cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
        a0, a1, b0, b1 = cos, -sin, sin, cos
        return a0, a1, cx - cx * a0 - cy * a1, b0, b1, cy - cx * b0 - cy * b1

    def call(self, inputs, training=True):
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        if not training:
            return x
        image_axes(x, self.data_format)
        single = x.ndim == 3
        if single:
            x = F.expand_dims(x, 0)
        if self.data_format == "channels_first":
            x = F.transpose(x, (0, 2, 3, 1))
        out = affine_sample(x, self._coefficients(*x.shape[:3]), self.interpolation,
                            self.fill_mode, self.fill_value)
        if self.data_format == "channels_first":
            out = F.transpose(out, (0, 3, 1, 2))
        return F.reshape(out, out.shape[1:]) if single else out

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "data_format": self.data_format,
                "fill_mode": self.fill_mode, "fill_value": self.fill_value,
                "interpolation": self.interpolation, "seed": self.seed}
