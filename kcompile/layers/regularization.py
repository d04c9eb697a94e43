"""Dropout: random masks generated inside the compiled step."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ..tracing import current
from .layer import Layer

_seed_rng = np.random.default_rng()
_UNSEEDED_SALT = 0x2E5D1A7


class Dropout(Layer):
    supports_masking = True
    """Zeroes a fraction `rate` of the inputs in training and scales the kept ones by
    1/(1-rate); the identity otherwise. The mask is a counter-based hash of the
    element's index, the layer's seed and a step counter kept in the model's state,
    so a given seed reproduces the same masks."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float "
                             f"value between 0 and 1. Received: rate={rate}")
        self.rate = float(rate)
        self.noise_shape = tuple(noise_shape) if noise_shape is not None else None
        self.seed = seed
        # Without a seed the salt is fixed and the step counter starts at a random value:
        # the masks differ from run to run, and the graph (the disk cache's key) does not.
        self._salt = int(seed) if seed is not None else _UNSEEDED_SALT

    def build(self, input_shape):
        # Model state, not a weight: Keras 3 lists no seed in get_weights().
        self.seed_state = self._add_state_variable("seed_generator_state")
        if self.seed is None:
            self.seed_state._assign_array(np.int32(_seed_rng.integers(0, 2**30)))
        self.built = True

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return inputs * 0.0
        shape = inputs.shape
        if self.noise_shape is not None:
            shape = tuple(d if n is None else n for d, n in zip(inputs.shape, self.noise_shape))
        key = current().variable(self.seed_state)
        u = F.random_uniform(key, shape, self._salt)
        self.add_update(self.seed_state, key + 1)
        keep = F.greater_equal(u, self.rate)
        return inputs * keep * (1.0 / (1.0 - self.rate))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}
