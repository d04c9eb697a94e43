"""What RandomRotation, RandomTranslation and RandomZoom share: in training, each image
resampled through its own random affine map (affine.py, as Keras' JAX
affine_transform); the identity in inference. A subclass gives the map's six
coefficients per image."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..noise import _SeededNoise
from .affine import INTERPOLATIONS, affine_sample
from .image_resize import image_axes

FILL_MODES = ("reflect", "wrap", "constant", "nearest")        # Keras' choice for these


class RandomAffine(_SeededNoise):
    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if fill_mode not in FILL_MODES:
            raise NotImplementedError(f"Unknown `fill_mode` {fill_mode}. Expected of one "
                                      f"{FILL_MODES}.")
        if interpolation not in INTERPOLATIONS:
            raise NotImplementedError(f"Unknown `interpolation` {interpolation}. Expected of "
                                      f"one {INTERPOLATIONS}.")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = fill_value
        self.data_format = standardize_data_format(data_format)

    def _uniforms(self, batch, ranges):
        """One uniform draw per image in each (lower, upper) range, from one step key."""
        key = self._key()
        return [F.random_uniform(key, (batch,), (self._salt + i) & 0x7FFFFFFF) * (hi - lo) + lo
                for i, (lo, hi) in enumerate(ranges)]

    def _coefficients(self, batch, height, width):
        """a0, a1, a2, b0, b1, b2: output (y, x) reads input (b0 x + b1 y + b2, a0 x + a1 y + a2)."""
        raise NotImplementedError

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

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "seed": self.seed,
                "fill_value": self.fill_value, "data_format": self.data_format}
