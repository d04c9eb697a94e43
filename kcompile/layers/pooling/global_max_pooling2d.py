"""GlobalMaxPooling2D: the maximum of each channel over height and width.
Ties share the gradient equally, as Keras' ops.max does."""
from __future__ import annotations

from kcompile.ir import builder as F
from .base_global_pooling import BaseGlobalPooling


class GlobalMaxPooling2D(BaseGlobalPooling):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(pool_dimensions=2, data_format=data_format, keepdims=keepdims,
                         **kwargs)

    def call(self, inputs):
        return F.max(inputs, axis=self._spatial_axes(inputs), keepdims=self.keepdims)
