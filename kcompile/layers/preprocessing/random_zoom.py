"""RandomZoom: in training, each image zoomed about its center: sampled at
1 + height_factor (and 1 + width_factor, or the same draw) times its coordinates, so a
positive factor zooms out and a negative one in, as Keras; the identity in inference."""
from __future__ import annotations

from .image_factors import factor_range
from .random_affine import RandomAffine

_ERROR = ("The `height_factor` and `width_factor` arguments should be a number (or a list "
          "of two numbers) in the range (-1.0, 1.0]. ")


class RandomZoom(RandomAffine):
    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = height_factor
        self.height_range = factor_range(height_factor, "height_factor", _ERROR, True)
        self.width_factor = width_factor
        self.width_range = (factor_range(width_factor, "width_factor", _ERROR, True)
                            if width_factor is not None else None)

    def _coefficients(self, batch, height, width):
        ranges = [(1.0 + self.height_range[0], 1.0 + self.height_range[1])]
        if self.width_range is not None:
            ranges.append((1.0 + self.width_range[0], 1.0 + self.width_range[1]))
        draws = self._uniforms(batch, ranges)
        zy = draws[0]
        zx = draws[1] if len(draws) > 1 else zy
        zero = zy * 0.0
        return (zx, zero, (1.0 - zx) * ((width - 1.0) / 2.0), zero, zy,
                (1.0 - zy) * ((height - 1.0) / 2.0))

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}
