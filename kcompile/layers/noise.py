"""Random layers active in training only: GaussianNoise, GaussianDropout,
AlphaDropout, SpatialDropout1D/2D/3D. Each draws its noise inside the compiled step
from a counter kept in the model's state, as Dropout does (regularization.py)."""
from __future__ import annotations

import math

import numpy as np

from kcompile.ir import builder as F
from ..tracing import current
from .layer import Layer
from .regularization import _UNSEEDED_SALT, Dropout, _seed_rng


class _SeededNoise(Layer):
    """A layer with a seed: `_key()` in call gives this step's random key and advances it."""
    supports_masking = True

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._salt = int(seed) if seed is not None else _UNSEEDED_SALT

    def build(self, input_shape):
        self.seed_state = self._add_state_variable("seed_generator_state")
        if self.seed is None:
            self.seed_state._assign_array(np.int32(_seed_rng.integers(0, 2**30)))
        self.built = True

    def _key(self):
        key = current().variable(self.seed_state)
        self.add_update(self.seed_state, key + 1)
        return key

    def _normal(self, shape):
        from ..random import _std_normal
        return _std_normal(self._key(), tuple(shape), self._salt)

    def compute_output_shape(self, input_shape):
        return input_shape


def _check_rate(rate):
    if not 0 <= rate <= 1:
        raise ValueError(f"Invalid value received for argument `rate`. Expected a float value "
                         f"between 0 and 1. Received: rate={rate}")


class GaussianNoise(_SeededNoise):
    """Adds zero-centered normal noise of standard deviation `stddev` in training."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0 <= stddev <= 1:
            raise ValueError(f"Invalid value received for argument `stddev`. Expected a float "
                             f"value between 0 and 1. Received: stddev={stddev}")
        self.stddev = stddev

    def call(self, inputs, training=False):
        if training and self.stddev > 0:
            return inputs + self._normal(inputs.shape) * float(self.stddev)
        return inputs

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(_SeededNoise):
    """Multiplies by normal noise of mean 1 and standard deviation sqrt(rate / (1 - rate))
    in training."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_rate(rate)
        self.rate = rate

    def call(self, inputs, training=False):
        if training and 0 < self.rate < 1:
            stddev = math.sqrt(self.rate / (1.0 - self.rate))
            return inputs * (self._normal(inputs.shape) * stddev + 1.0)
        return inputs

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class AlphaDropout(_SeededNoise):
    """Dropout that keeps SELU's self-normalization: dropped values are set to SELU's
    negative saturation, then an affine map restores mean and variance (Keras' a, b)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_rate(rate)
        self.rate = rate
        self.noise_shape = tuple(noise_shape) if noise_shape is not None else None

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        shape = inputs.shape
        if self.noise_shape is not None:
            shape = tuple(d if n is None else n for d, n in zip(inputs.shape, self.noise_shape))
        alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        alpha_p = -alpha * scale
        kept = F.cast(F.greater_equal(F.random_uniform(self._key(), shape, self._salt),
                                      float(self.rate)), "float32")
        a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * self.rate
        x = inputs * kept + (1.0 - kept) * alpha_p
        return x * a + b

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one draw per (sample, channel)."""
    _ndim = 0

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None, **kwargs):
        super().__init__(rate, seed=seed, name=name, dtype=dtype, **kwargs)
        from ..config import image_data_format
        fmt = (data_format or image_data_format()).lower()
        if fmt not in ("channels_first", "channels_last"):
            raise ValueError(f"The `data_format` argument must be one of {{'channels_first', "
                             f"'channels_last'}}. Received: data_format={data_format}")
        self.data_format = fmt

    def call(self, inputs, training=False):
        if inputs.ndim != self._ndim:
            raise ValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                             f"expected ndim={self._ndim}, found ndim={inputs.ndim}. Full "
                             f"shape received: {(None, *inputs.shape[1:])}")
        spatial = [1] * (self._ndim - 2)
        if self.data_format == "channels_first":
            self.noise_shape = (inputs.shape[0], inputs.shape[1], *spatial)
        else:
            self.noise_shape = (inputs.shape[0], *spatial, inputs.shape[-1])
        return super().call(inputs, training=training)

    def get_config(self):
        # Keras' keys exactly: its SpatialDropout constructors take no `trainable`.
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype,
                "data_format": self.data_format}


class SpatialDropout1D(_SpatialDropout):
    _ndim = 3

    def __init__(self, rate, seed=None, name=None, dtype=None, **kwargs):
        super().__init__(rate, "channels_last", seed=seed, name=name, dtype=dtype, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("data_format")
        return config


class SpatialDropout2D(_SpatialDropout):
    _ndim = 4


class SpatialDropout3D(_SpatialDropout):
    _ndim = 5
