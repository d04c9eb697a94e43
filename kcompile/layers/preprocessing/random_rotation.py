"""RandomRotation: in training, each image rotated about its center by an angle drawn
uniformly from factor * 360 degrees (Keras' affine matrix); the identity in inference."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from .image_factors import image_factor
from .random_affine import RandomAffine


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
