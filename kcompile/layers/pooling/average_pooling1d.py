"""AveragePooling1D: average pooling of temporal data: (batch, steps, features)."""
from __future__ import annotations

from .base_pooling import BasePooling


class AveragePooling1D(BasePooling):
    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None,
                 **kwargs):
        super().__init__(pool_size, strides, pool_dimensions=1, pool_mode="average",
                         padding=padding, data_format=data_format, name=name, **kwargs)
