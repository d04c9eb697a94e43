"""Discretization: the index of the bin each value falls in (bins split at sorted
`bin_boundaries`: x < b0 -> 0, b0 <= x < b1 -> 1, ...), as an int or encoded as
one-hot / multi-hot / count vectors. `adapt` sets `num_bins` boundaries at the
data's quantiles (exact quantiles; Keras computes approximate ones)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ..layer import Layer
from .adapt_data import adapt_batches


class Discretization(Layer):
    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int",
                 sparse=False, **kwargs):
        super().__init__(**kwargs)
        if sparse:
            raise ValueError("Discretization(sparse=True): kcompile computes dense tensors "
                             "only; use sparse=False")
        if output_mode not in ("int", "one_hot", "multi_hot", "count"):
            raise ValueError(f"Invalid value for argument `output_mode`. Expected one of "
                             f"('int', 'one_hot', 'multi_hot', 'count'). Received: "
                             f"output_mode={output_mode}")
        if num_bins is not None and num_bins < 0:
            raise ValueError(f"`num_bins` must be greater than or equal to 0. Received: "
                             f"`num_bins={num_bins}`")
        if num_bins is not None and bin_boundaries is not None:
            if len(bin_boundaries) != num_bins - 1:
                raise ValueError(f"Both `num_bins` and `bin_boundaries` should not be set. "
                                 f"Received: `num_bins={num_bins}` and "
                                 f"`bin_boundaries={bin_boundaries}`")
        self.bin_boundaries = list(bin_boundaries) if bin_boundaries is not None else None
        self.num_bins = num_bins
        self.epsilon = epsilon
        self.output_mode = output_mode
        self.sparse = sparse
        if self.bin_boundaries is not None and sorted(self.bin_boundaries) != self.bin_boundaries:
            raise ValueError(f"`bin_boundaries` must be sorted. Received: "
                             f"bin_boundaries={bin_boundaries}")

    def adapt(self, data, steps=None):
        if self.num_bins is None:
            raise ValueError("Cannot adapt a Discretization layer that has been initialized "
                             "with `bin_boundaries`, use `num_bins` instead.")
        values = np.concatenate([b.ravel() for b in adapt_batches(data, self.name, steps)])
        qs = np.linspace(0, 1, self.num_bins + 1)[1:-1]
        self.bin_boundaries = [float(v) for v in np.quantile(values, qs)]

    def call(self, inputs):
        if self.bin_boundaries is None:
            raise ValueError("You need to either pass the `bin_boundaries` argument at "
                             "construction time or call `adapt(dataset)` before you can start "
                             "using the `Discretization` layer.")
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        ids = None
        for b in self.bin_boundaries:
            step = F.cast(F.greater_equal(x, float(b)), "int32")
            ids = step if ids is None else ids + step
        if ids is None:
            ids = F.cast(x * 0.0, "int32")
        if self.output_mode == "int":
            return ids
        depth = len(self.bin_boundaries) + 1
        hot = F.one_hot(ids, depth)
        if self.output_mode == "one_hot":
            if x.ndim > 1 and x.shape[-1] == 1:
                return F.reshape(hot, (*x.shape[:-1], depth))
            return hot
        axis = 1 if x.ndim > 1 else 0
        return F.max(hot, axis=axis) if self.output_mode == "multi_hot" else F.sum(hot, axis)

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return input_shape
        return super().compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.pop("trainable", None)         # Keras' Discretization takes no `trainable`
        return {**config, "bin_boundaries": self.bin_boundaries,
                "num_bins": self.num_bins, "epsilon": self.epsilon,
                "output_mode": self.output_mode, "sparse": self.sparse}
