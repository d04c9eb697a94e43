"""GroupedQueryAttention with Keras 3's arguments, sublayers and weights: query heads
in groups sharing one key/value head (num_query_heads // num_key_value_heads each)."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from ...ops import numpy as knp
from ...tracing import current
from ..layer import Layer
from ..regularization import Dropout
from .masks import combined_mask, masked_softmax
from .projections import EinsumProjections, check_sliding_window


class GroupedQueryAttention(EinsumProjections, Layer):
    """Called as MultiHeadAttention is, on (batch, T, dim) query and (batch, S, dim)
    value (and key); the key and value projections have num_key_value_heads heads,
    each repeated for its group of query heads."""
    supports_masking = True
    # A Keras file keeps the projections' variables in groups named after the
    # attributes (_query_dense/vars, ...), as here.
    keras_saves_sublayers = True
    # Keras exports the class as keras.layers.GroupQueryAttention, the name its files use.
    keras_class_name = "GroupQueryAttention"

    def __init__(self, head_dim, num_query_heads, num_key_value_heads, dropout=0.0,
                 use_bias=True, sliding_window=None, flash_attention=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        for name, value in (("head_dim", head_dim), ("num_query_heads", num_query_heads),
                            ("num_key_value_heads", num_key_value_heads)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Received an invalid value for argument `{name}`, expected "
                                 f"a positive integer. Received: {name}={value}")
        if num_query_heads % num_key_value_heads != 0:
            raise ValueError("`num_query_heads` must be divisible by `num_key_value_heads`.")
        check_sliding_window(sliding_window)
        if flash_attention and dropout > 0:
            raise ValueError("Dropout is not supported when flash attention is enabled. "
                             "Please set dropout to 0.0 to use flash attention.")
        self.head_dim, self.num_query_heads = head_dim, num_query_heads
        self.num_key_value_heads = num_key_value_heads
        self.num_repeats = num_query_heads // num_key_value_heads
        self.dropout, self.use_gate, self.sliding_window = float(dropout), use_gate, sliding_window
        self._flash_attention = flash_attention
        self._set_projection_options(use_bias, kernel_initializer, bias_initializer,
                                     kernel_regularizer, bias_regularizer,
                                     activity_regularizer, kernel_constraint, bias_constraint)
        self.seed = seed
        self._inverse_sqrt_head_dim = 1.0 / math.sqrt(float(head_dim))
        # Keras' order of the sublayers (its weight order)
        self._query_dense = self._key_dense = self._gate_dense = None
        self._value_dense = self._output_dense = None
        self._dropout_layer = Dropout(self.dropout, seed=seed) if self.dropout > 0 else None

    use_bias = property(lambda self: self._use_bias)

    def build(self, query_shape, value_shape=None, key_shape=None):
        if value_shape is not None:
            self._build_projections(tuple(query_shape), tuple(value_shape),
                                    tuple(key_shape or value_shape))
        self.built = True

    def build_from_config(self, config):
        shapes = (config or {}).get("shapes_dict")
        if shapes and self._query_dense is None:
            self.build(shapes["query_shape"], shapes["value_shape"], shapes.get("key_shape"))
        elif not shapes:
            super().build_from_config(config)

    def _build_projections(self, query_shape, value_shape, key_shape):
        self._record_build_shapes(query_shape, value_shape, key_shape)
        self.feature_dim = query_shape[-1]
        q_heads, kv_heads, h = self.num_query_heads, self.num_key_value_heads, self.head_dim
        self._query_dense = self._built_sublayer("bqm,muh->bquh", "uh", (None, q_heads, h),
                                                 "query", query_shape)
        self._key_dense = self._built_sublayer("bkm,mvh->bkvh", "vh", (None, kv_heads, h),
                                               "key", key_shape)
        if self.use_gate:
            self._gate_dense = self._built_sublayer("bqm,muh->bquh", "uh", (None, q_heads, h),
                                                    "gate", query_shape, "sigmoid")
        self._value_dense = self._built_sublayer("bkm,mvh->bkvh", "vh", (None, kv_heads, h),
                                                 "value", value_shape)
        self._output_dense = self._built_sublayer("bquh,uhm->bqm", "m", (None, self.feature_dim),
                                                  "attention_output", (None, None, q_heads, h))

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
             attention_mask=None, return_attention_scores=False, training=None,
             use_causal_mask=False):
        masks = current().masks
        query_mask = masks.get(query.id) if query_mask is None else query_mask
        value_mask = masks.get(value.id) if value_mask is None else value_mask
        if key is not None and key_mask is None:
            key_mask = masks.get(key.id)
        key = value if key is None else key
        self.compute_output_shape((None, *query.shape[1:]), (None, *value.shape[1:]),
                                  (None, *key.shape[1:]))
        if self._query_dense is None:
            self._build_projections((None, *query.shape[1:]), (None, *value.shape[1:]),
                                    (None, *key.shape[1:]))
        explicit = any(m is not None for m in (query_mask, value_mask, key_mask,
                                               attention_mask)) or self.sliding_window
        mask = combined_mask(query, value, query_mask, value_mask, key_mask, attention_mask,
                             use_causal_mask, self.sliding_window)
        gate = self._gate_dense(query) if self.use_gate else None
        q = self._query_dense(query) * self._inverse_sqrt_head_dim
        k = knp.repeat(self._key_dense(key), self.num_repeats, axis=2)
        v = knp.repeat(self._value_dense(value), self.num_repeats, axis=2)
        scores = knp.einsum("bquh,bkuh->buqk", q, k)
        if mask is not None:
            mask = F.expand_dims(mask, 1)                     # (B, 1, T, S): every head
        # As MultiHeadAttention: Keras' fused attention unless it returns or drops out
        # the scores (a fully masked row then attends uniformly).
        fused = not (self.dropout > 0 or return_attention_scores)
        weights = masked_softmax(scores, mask, (3,), zero_masked=not fused or not explicit)
        dropped = self._dropout_layer(weights, training=training) \
            if self._dropout_layer is not None else weights
        out = knp.einsum("buqk,bkuh->bquh", dropped, v)
        if gate is not None:
            out = out * gate
        out = self._output_dense(out)
        return (out, weights) if return_attention_scores else out

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = query_shape if value_shape is None else tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if query_shape[-1] != value_shape[-1]:
            raise ValueError(f"The last dimension of `query_shape` and `value_shape` must be "
                             f"equal, but are {query_shape[-1]}, {value_shape[-1]}. Received: "
                             f"query_shape={query_shape}, value_shape={value_shape}")
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(f"All dimensions of `value` and `key`, except the last one, must "
                             f"be equal. Received: value_shape={value_shape} and "
                             f"key_shape={key_shape}")
        return query_shape

    def get_config(self):
        return {**super().get_config(), "head_dim": self.head_dim,
                "num_query_heads": self.num_query_heads,
                "num_key_value_heads": self.num_key_value_heads, "use_gate": self.use_gate,
                "dropout": self.dropout, "sliding_window": self.sliding_window,
                **self._projection_options_config(), "seed": self.seed}
