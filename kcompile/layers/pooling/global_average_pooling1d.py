"""GlobalAveragePooling1D: the mean of each feature over the steps; with a mask, over the
steps the mask keeps (as Keras: the masked sum divided by the number of kept steps)."""
from __future__ import annotations

from kcompile.ir import builder as F
from .base_global_pooling import BaseGlobalPooling


class GlobalAveragePooling1D(BaseGlobalPooling):
    supports_masking = True

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(pool_dimensions=1, data_format=data_format, keepdims=keepdims,
                         **kwargs)

    def call(self, inputs, mask=None):
        (steps_axis,) = self._spatial_axes(inputs)
        if mask is None:
            return F.mean(inputs, axis=steps_axis, keepdims=self.keepdims)
        if tuple(mask.shape) != (inputs.shape[0], inputs.shape[steps_axis]):
            raise ValueError(f"GlobalAveragePooling1D {self.name!r}: the mask must have shape "
                             f"(batch, steps) = {(None, inputs.shape[steps_axis])}, received "
                             f"{(None, *mask.shape[1:])}")
        kept = F.expand_dims(F.not_equal(mask, 0.0), 2 if steps_axis == 1 else 1)
        total = F.sum(F.select(kept, inputs, 0.0), axis=steps_axis, keepdims=self.keepdims)
        return total / F.sum(kept, axis=steps_axis, keepdims=self.keepdims)

    def compute_mask(self, inputs, mask=None):
        return None
