"""Softmax over `axis` (an int or several axes), with Keras' mask: masked positions
take a large negative logit before the softmax and 0 after it."""
from __future__ import annotations

from kcompile.ir import builder as F
from ... import activations
from ..layer import Layer

_LARGE_NEGATIVE = -1e9        # Keras' value for float32 inputs


class Softmax(Layer):
    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = list(axis) if isinstance(axis, tuple) else axis

    def _check_mask(self, inputs, mask):
        if mask.ndim > inputs.ndim:
            raise ValueError(f"The `mask` must be broadcastable to `inputs` and must not have "
                             f"more dimensions. Received: inputs.shape={inputs.shape}, "
                             f"mask.shape={mask.shape}")
        for m, i in zip(mask.shape[::-1], inputs.shape[::-1]):
            if m != 1 and m != i:
                raise ValueError(f"The `mask` must be broadcastable to `inputs`. Each mask "
                                 f"dimension must be 1 or match the corresponding input "
                                 f"dimension. Received: inputs.shape={inputs.shape}, "
                                 f"mask.shape={mask.shape}")

    def call(self, inputs, mask=None):
        keep = None
        if mask is not None:
            self._check_mask(inputs, mask)
            keep = F.broadcast_to(F.cast(F.greater(F.cast(mask, "float32"), 0.5), "float32"),
                                  inputs.shape)
            inputs = F.select(keep, inputs, _LARGE_NEGATIVE)
        if isinstance(self.axis, (list, tuple)) and len(self.axis) > 1:
            axes = tuple(a % inputs.ndim for a in self.axis)
            m = F.stop_gradient(F.max(inputs, axis=axes, keepdims=True))
            e = F.exp(inputs - m)
            out = e / F.sum(e, axis=axes, keepdims=True)
        else:
            axis = self.axis[0] if isinstance(self.axis, (list, tuple)) else self.axis
            out = activations.softmax(inputs, axis=axis)
        if keep is not None:
            out = out * keep
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
