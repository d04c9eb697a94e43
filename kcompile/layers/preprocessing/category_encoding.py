"""CategoryEncoding: integer token ids to one-hot, multi-hot or count vectors of
length `num_tokens` (Keras' encode_categorical_inputs)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..layer import Layer


class CategoryEncoding(Layer):
    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        if output_mode == "binary":
            output_mode = "multi_hot"
        if output_mode not in ("count", "one_hot", "multi_hot"):
            raise ValueError(f"Unknown arg for output_mode: {output_mode}")
        if num_tokens is None:
            raise ValueError("num_tokens must be set to use this layer. If the number of tokens "
                             "is not known beforehand, use the IntegerLookup layer instead.")
        if num_tokens < 1:
            raise ValueError(f"`num_tokens` must be >= 1. Received: num_tokens={num_tokens}.")
        if sparse:
            raise ValueError("CategoryEncoding(sparse=True): kcompile computes dense tensors "
                             "only; use sparse=False")
        self.num_tokens = num_tokens
        self.output_mode = output_mode
        self.sparse = sparse

    def _one_hot(self, ids):
        ids = F.cast(ids, "int32") if ids.dtype != "int32" else ids
        return F.one_hot(ids, self.num_tokens)

    def call(self, inputs, count_weights=None):
        if count_weights is not None and self.output_mode != "count":
            raise ValueError(f"`count_weights` is not used when `output_mode` is not "
                             f"`'count'`. Received `count_weights={count_weights}`.")
        x = inputs
        if x.ndim == 0:
            x = F.reshape(x, (1,))
        if self.output_mode == "one_hot":
            if x.ndim > 1 and x.shape[-1] == 1:
                x = F.reshape(x, x.shape[:-1])
            return self._one_hot(x)
        axis = 1 if x.ndim > 1 else 0
        hot = self._one_hot(x)
        if self.output_mode == "multi_hot":
            return F.max(hot, axis=axis)
        if count_weights is not None:
            hot = hot * F.expand_dims(count_weights, -1)
        return F.sum(hot, axis=axis)

    def compute_output_shape(self, input_shape):
        if len(input_shape) == 0:
            return (self.num_tokens,)
        if self.output_mode == "one_hot":
            if input_shape[-1] != 1 or len(input_shape) == 1:
                return (*input_shape, self.num_tokens)
            return (*input_shape[:-1], self.num_tokens)
        return (*input_shape[:-1], self.num_tokens)

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens,
                "output_mode": self.output_mode}
