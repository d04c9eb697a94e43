"""RandomRotation: in training, each image rotated about its center by an angle drawn
uniformly from factor * 360 degrees (Keras' affine matrix); the identity in inference."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from .random_affine import RandomAffine


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


class RandomRotation(RandomAffine):
    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = image_factor(factor)

    def _coefficients(self, batch, height, width):
        """Rotation about the image center ((width - 1) / 2, (height - 1) / 2)."""
        (degrees,) = self._uniforms(batch, [(self.factor[0] * 360.0, self.factor[1] * 360.0)])
        angle = degrees * (math.pi / 180.0)
        cos, sin = F.cos(angle), F.sin(angle)
        cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
        a0, a1, b0, b1 = cos, -sin, sin, cos
        return a0, a1, cx - cx * a0 - cy * a1, b0, b1, cy - cx * b0 - cy * b1

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
