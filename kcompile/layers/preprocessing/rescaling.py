"""Rescaling: inputs * scale + offset (scale and offset numbers or per-channel arrays)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ..layer import Layer


class Rescaling(Layer):
    supports_masking = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset

    def call(self, inputs):
        from ...config import image_data_format
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        scale = np.asarray(self.scale, np.float32)
        offset = np.asarray(self.offset, np.float32)
        if scale.ndim > 0 and image_data_format() == "channels_first":
            scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))
        return x * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        from ...saving.objects import serialize_keras_object
        return {**super().get_config(), "scale": serialize_keras_object(self.scale),
                "offset": serialize_keras_object(self.offset)}

    @classmethod
    def from_config(cls, config):
        from ...saving.objects import deserialize_keras_object
        config = dict(config)
        for key in ("scale", "offset"):
            if key in config:
                config[key] = deserialize_keras_object(config[key])
        return super().from_config(config)
