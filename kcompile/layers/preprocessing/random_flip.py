"""RandomFlip: in training, each image flipped left-right and/or upside-down with
probability 1/2 (one draw per image, shared by both flips, as Keras); the identity
in inference."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..noise import _SeededNoise
from .image_resize import image_axes

HORIZONTAL, VERTICAL = "horizontal", "vertical"
HORIZONTAL_AND_VERTICAL = "horizontal_and_vertical"


class RandomFlip(_SeededNoise):
    def __init__(self, mode=HORIZONTAL_AND_VERTICAL, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if mode not in (HORIZONTAL, VERTICAL, HORIZONTAL_AND_VERTICAL):
            raise ValueError(f"RandomFlip layer {self.name} received an unknown mode "
                             f"argument {mode}")
        self.mode = mode
        self.data_format = standardize_data_format(data_format)

    def call(self, inputs, training=True):
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        if not training:
            return x
        h_axis, w_axis = image_axes(x, self.data_format)
        flips_shape = (1, 1, 1) if x.ndim == 3 else (x.shape[0], 1, 1, 1)
        flips = F.less_equal(F.random_uniform(self._key(), flips_shape, self._salt), 0.5)
        if self.mode in (HORIZONTAL, HORIZONTAL_AND_VERTICAL):
            x = F.select(flips, F.take(x, np.arange(x.shape[w_axis])[::-1].copy(), w_axis), x)
        if self.mode in (VERTICAL, HORIZONTAL_AND_VERTICAL):
            x = F.select(flips, F.take(x, np.arange(x.shape[h_axis])[::-1].copy(), h_axis), x)
        return x

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "mode": self.mode,
                "data_format": self.data_format}
