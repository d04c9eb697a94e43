"""RandomTranslation: in training, each image shifted by height_factor * height rows and
width_factor * width columns (uniform draws); the identity in inference."""
from __future__ import annotations

from .image_factors import factor_range
from .random_affine import RandomAffine

_ERROR = ("The `factor` argument should be a number (or a list of two numbers) in the range "
          "[-1.0, 1.0]. ")


class RandomTranslation(RandomAffine):
    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = height_factor
        self.height_range = factor_range(height_factor, "height_factor", _ERROR)
        self.width_factor = width_factor
        self.width_range = factor_range(width_factor, "width_factor", _ERROR)

    def _coefficients(self, batch, height, width):
        dy, dx = self._uniforms(batch, [self.height_range, self.width_range])
        one, zero = dy * 0.0 + 1.0, dy * 0.0
        return one, zero, dx * (-float(width)), zero, one, dy * (-float(height))

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}
