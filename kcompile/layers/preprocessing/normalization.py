"""Normalization: (x - mean) / max(sqrt(variance), epsilon) per feature along `axis`
(or the inverse, mean + x * max(sqrt(variance), epsilon), with invert=True).

mean and variance are given, or learned by `adapt(data)` into the non-trainable
weights `mean`, `variance`, `count` (Keras' names and order), combined over batches
with the same running formula Keras uses."""
from __future__ import annotations

import math

import numpy as np

from kcompile.ir import builder as F
from ...config import epsilon
from ...tracing import current
from ..layer import Layer
from .adapt_data import adapt_batches


class Normalization(Layer):
    supports_masking = True

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, int):
            axis = (axis,)
        else:
            axis = tuple(axis)
        self.axis = axis
        self.input_mean = mean
        self.input_variance = variance
        self.invert = invert
        if (mean is not None) != (variance is not None):
            raise ValueError(f"When setting values directly, both `mean` and `variance` must "
                             f"be set. Received: mean={mean} and variance={variance}")
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(f"When setting values directly, `mean` and `variance` must "
                                 f"have the same shape. Received: mean shape {np.shape(mean)} "
                                 f"and variance shape {np.shape(variance)}")
            if len(np.shape(mean)) > len(self.axis):
                raise ValueError(f"The rank of `mean` must be less than or equal to the number "
                                 f"of axes ({len(self.axis)}). Received: mean shape "
                                 f"{np.shape(mean)} for axis {self.axis}")
        self._build_shape = None

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). Received "
                             f"inputs with ndim={ndim}, while axis={self.axis}")
        self._keep = tuple(sorted(a % ndim for a in self.axis))
        for d in self._keep:
            if input_shape[d] is None:
                raise ValueError(f"All `axis` values to be kept must have a known shape. "
                                 f"Received axis={self.axis}, inputs.shape={tuple(input_shape)},"
                                 f" with unknown axis at index {d}")
        self._build_shape = tuple(input_shape)
        self._reduce = tuple(d for d in range(ndim) if d not in self._keep)
        self._broadcast = tuple(input_shape[d] if d in self._keep else 1 for d in range(ndim))
        stat_shape = tuple(input_shape[d] for d in self._keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(stat_shape, "zeros", trainable=False, name="mean")
            self.adapt_variance = self.add_weight(stat_shape, "ones", trainable=False,
                                                  name="variance")
            self.count = self.add_weight((), "zeros", dtype="int32", trainable=False,
                                         name="count")
        else:
            self._const_mean = self._broadcast_stat(self.input_mean)
            self._const_variance = self._broadcast_stat(self.input_variance)
        self.built = True

    def _broadcast_stat(self, value):
        """A given mean / variance laid out on the kept axes, as Keras: its last axes
        are the last kept axes."""
        value = np.asarray(value, np.float32)
        ndim = len(self._broadcast)
        shape = [1] * ndim
        for i in range(1, value.ndim + 1):
            shape[self._keep[-i]] = value.shape[-i]
        return np.broadcast_to(value.reshape(shape), self._broadcast).astype(np.float32)

    def adapt(self, data, batch_size=None, steps=None):
        """Learn mean and variance from `data` (an array or an iterable of batches)."""
        total_mean = total_var = None
        total_count = 0
        for batch in adapt_batches(data, self.name, steps):
            if not self.built:
                self.build(batch.shape)
            for d in self._keep:
                if batch.ndim != len(self._build_shape) or batch.shape[d] != self._build_shape[d]:
                    raise ValueError(f"The layer was built with input_shape="
                                     f"{self._build_shape}, but adapt() is being called with "
                                     f"data with an incompatible shape, data.shape="
                                     f"{batch.shape}")
            mean = batch.mean(axis=self._reduce)
            var = batch.var(axis=self._reduce)
            count = math.prod(batch.shape[d] for d in self._reduce)
            if total_mean is None:
                total_mean, total_var, total_count = mean, var, count
                continue
            total_count += count
            w = count / total_count
            new_mean = total_mean * (1 - w) + mean * w
            total_var = ((total_var + (total_mean - new_mean) ** 2) * (1 - w)
                         + (var + (mean - new_mean) ** 2) * w)
            total_mean = new_mean
        if self.input_mean is not None:
            raise ValueError(f"Normalization {self.name!r} was given `mean` and `variance`: "
                             f"it has nothing to adapt")
        self.adapt_mean.assign(total_mean.astype(np.float32))
        self.adapt_variance.assign(total_var.astype(np.float32))

    def _stats(self):
        if self.input_mean is not None:
            return self._const_mean, self._const_variance
        trace = current()
        mean = F.reshape(trace.variable(self.adapt_mean), self._broadcast)
        var = F.reshape(trace.variable(self.adapt_variance), self._broadcast)
        return mean, var

    def call(self, inputs):
        if inputs.ndim != len(self._broadcast) or any(
                inputs.shape[d] != self._broadcast[d] for d in self._keep):
            raise ValueError(f"Normalization {self.name!r} was built for inputs of shape "
                             f"{self._build_shape}, received {(None, *inputs.shape[1:])}")
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        mean, var = self._stats()
        scale = F.maximum(F.sqrt(var), epsilon()) if not isinstance(var, np.ndarray) \
            else np.maximum(np.sqrt(var), epsilon()).astype(np.float32)
        if self.invert:
            return x * scale + mean
        return (x - mean) / scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "invert": self.invert,
                "mean": np.array(self.input_mean).tolist(),
                "variance": np.array(self.input_variance).tolist()}
