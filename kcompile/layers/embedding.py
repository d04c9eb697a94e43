"""Embedding: a gather forward, a scatter-add backward (no dense one-hot)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .. import constraints, initializers, regularizers
from ..input_bounds import bound_input
from ..tracing import current
from .layer import Layer


class Embedding(Layer):
    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, **kwargs):
        kwargs.pop("input_length", None)        # Keras 2 argument, no longer needed
        super().__init__(**kwargs)
        for name, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Both `input_dim` and `output_dim` should be positive, "
                                 f"Received {name}={v!r}")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = mask_zero
        self.supports_masking = mask_zero
        self._initial_weights = [weights] if weights is not None and not isinstance(weights, list) \
            else weights

    def build(self, input_shape=None):
        self.embeddings = self.add_weight((self.input_dim, self.output_dim),
                                          self.embeddings_initializer, name="embeddings",
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        self.built = True

    def call(self, inputs):
        trace = current()
        # Checked on the data before the step runs: an id out of range is an error,
        # never a read outside the table.
        bound_input(inputs, self.input_dim)
        ids = inputs if inputs.dtype == "int32" else F.cast(inputs, "int32")
        out = F.gather(self.embeddings, ids)
        if self.mask_zero:
            trace.masks[out.id] = F.not_equal(ids, F.lift(ids.g, 0, "int32"))
        return out

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
                "mask_zero": self.mask_zero}
