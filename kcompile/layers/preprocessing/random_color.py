"""RandomContrast and RandomBrightness: in training, per image, a contrast factor c
((x - mean over height and width) * c + mean) or a brightness delta (x + delta), the
result clipped to `value_range`; the identity in inference. Factors are read as Keras
reads them: RandomContrast(f) draws c in [1 - lower, 1 + upper] of its factor range
(f -> (0, f), bounds [0, 1]); RandomBrightness(f) draws delta / (value range) in
(-f, f) (bounds [-1, 1])."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..noise import _SeededNoise
from .image_factors import image_factor


def _value_range(value_range):
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise ValueError(f"The `value_range` argument should be a list of two numbers. "
                         f"Received: value_range={value_range}")
    return value_range


class _RandomColor(_SeededNoise):
    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.data_format = standardize_data_format(data_format)
        self.value_range = _value_range(value_range)

    def _per_image(self, x, lo, hi):
        if x.ndim not in (3, 4):
            raise ValueError(f"Expected the input image to be rank 3 or 4. Received "
                             f"inputs.shape={(None, *x.shape[1:])}")
        shape = (1, 1, 1) if x.ndim == 3 else (x.shape[0], 1, 1, 1)
        return F.random_uniform(self._key(), shape, self._salt) * float(hi - lo) + float(lo)

    def call(self, inputs, training=True):
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        if not training:
            return x
        lo, hi = sorted(self.value_range)
        return F.clip(self._adjust(x), float(lo), float(hi))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "factor": self.factor,
                "value_range": self.value_range, "seed": self.seed}


class RandomContrast(_RandomColor):
    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(factor, value_range, seed, data_format, **kwargs)
        self.factor = image_factor(factor, (0, 1))

    def _adjust(self, x):
        c = self._per_image(x, 1.0 - self.factor[0], 1.0 + self.factor[1])
        axes = (x.ndim - 3, x.ndim - 2) if self.data_format == "channels_last" else (
            x.ndim - 2, x.ndim - 1)
        mean = F.mean(x, axis=axes, keepdims=True)
        return (x - mean) * c + mean


class RandomBrightness(_RandomColor):
    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(factor, value_range, seed, data_format, **kwargs)
        self.factor = image_factor(factor, (-1, 1))
        self.value_range = sorted(self.value_range)

    def _adjust(self, x):
        span = float(self.value_range[1] - self.value_range[0])
        return x + self._per_image(x, self.factor[0] * span, self.factor[1] * span)
