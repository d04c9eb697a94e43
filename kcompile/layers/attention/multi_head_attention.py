"""MultiHeadAttention with Keras 3's arguments, sublayers and weights: the query, key,
value and output projections are EinsumDense sublayers named query, key, value and
attention_output, whose kernels have Keras' shapes (e.g. (dim, heads, key_dim))."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from ...ops import numpy as knp
from ...tracing import current
from ..layer import Layer
from ..regularization import Dropout
from .equations import attention_equations, partial_shape, projection_equation
from .projections import EinsumProjections, check_sliding_window
from .masks import combined_mask, masked_softmax


def _positive_int(value, name, allow_none=False):
    if allow_none and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        extra = " or `None`" if allow_none else ""
        raise ValueError(f"Received an invalid value for argument `{name}`, expected a "
                         f"positive integer{extra}. Received: {name}={value}")


class MultiHeadAttention(EinsumProjections, Layer):
    """softmax(Q K^T / sqrt(key_dim)) V per head, Q, K, V projections of query, key
    (value when not given) and value, the heads' results projected back to the query's
    last dimension (or `output_shape`). Masks: the Keras masks of query, value and key,
    `attention_mask` (batch, T, S), `use_causal_mask` and `sliding_window`, and-ed."""
    supports_masking = True
    # A Keras file keeps the projections' variables in groups named after the
    # attributes (query_dense/vars, ...), as here.
    keras_saves_sublayers = True

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, attention_axes=None, sliding_window=None,
                 flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate=False, seed=None, **kwargs):
        _positive_int(num_heads, "num_heads")
        _positive_int(key_dim, "key_dim")
        _positive_int(value_dim, "value_dim", allow_none=True)
        super().__init__(**kwargs)
        if not 0 <= dropout <= 1:
            raise ValueError(f"Invalid value received for argument `dropout`. Expected a "
                             f"float value between 0 and 1. Received: dropout={dropout}")
        if flash_attention and dropout > 0:
            raise ValueError("Dropout is not supported when flash attention is enabled. "
                             "Please set dropout to 0.0 to use flash attention.")
        self._num_heads, self._key_dim = num_heads, key_dim
        self._value_dim = value_dim or key_dim
        self._dropout, self._use_gate = float(dropout), use_gate
        if output_shape:
            if isinstance(output_shape, int):
                output_shape = (output_shape,)
            try:
                output_shape = tuple(output_shape)
            except TypeError:
                raise ValueError(f"Invalid `output_shape`: {output_shape}. When specified, the "
                                 f"`output_shape` should be of type tuple, list, or int.") from None
        self._output_shape = output_shape or None
        # Computed by the fused rows kernel in any case: the flag is kept for the config.
        self._flash_attention = flash_attention
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        elif attention_axes and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(f"`attention_axes` must be an int, list, or tuple."
                             f"Received: attention_axes={attention_axes}")
        self._attention_axes = tuple(attention_axes) if attention_axes else None
        check_sliding_window(sliding_window)
        self._sliding_window = sliding_window
        self._set_projection_options(use_bias, kernel_initializer, bias_initializer,
                                     kernel_regularizer, bias_regularizer,
                                     activity_regularizer, kernel_constraint, bias_constraint)
        self.seed = seed
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(key_dim))
        # The sublayers, made by build() in Keras' order (its weight order).
        self.query_dense = self.key_dense = self._gate_dense = None
        self.value_dense = self.output_dense = None
        self._dropout_layer = Dropout(self._dropout, seed=seed) if self._dropout > 0 else None

    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)

    # -- building -----------------------------------------------------------
    def build(self, query_shape, value_shape=None, key_shape=None):
        """Called with the query's shape alone when the layer is first called; the
        projections are made in call(), once value's and key's shapes are known."""
        if value_shape is not None:
            self._build_projections(tuple(query_shape), tuple(value_shape),
                                    tuple(key_shape) if key_shape is not None else None)
        self.built = True

    def build_from_config(self, config):
        shapes = (config or {}).get("shapes_dict")
        if shapes and self.query_dense is None:
            self.build(shapes["query_shape"], shapes["value_shape"], shapes.get("key_shape"))
        elif not shapes:
            super().build_from_config(config)

    def _projection(self, shape, width, name, activation=None):
        eq, bias, rank = projection_equation(len(shape) - 1, 1, 2)
        return self._built_sublayer(eq, bias, partial_shape(rank - 1, [self._num_heads, width]),
                                    name, shape, activation)

    def _build_projections(self, query_shape, value_shape, key_shape):
        self._record_build_shapes(query_shape, value_shape, key_shape)
        key_shape = value_shape if key_shape is None else key_shape
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(f"All dimensions of `value` and `key`, except the last one, must "
                             f"be equal. Received: value_shape={value_shape} and "
                             f"key_shape={key_shape}")
        self.query_dense = self._projection(query_shape, self._key_dim, "query")
        self.key_dense = self._projection(key_shape, self._key_dim, "key")
        if self._use_gate:
            self._gate_dense = self._projection(query_shape, self._value_dim, "gate", "sigmoid")
        self.value_dense = self._projection(value_shape, self._value_dim, "value")
        rank = len(value_shape) + 1                # projected: (..., heads, channels)
        axes = self._attention_axes or tuple(range(1, rank - 2))
        self._attention_axes = tuple(a if a >= 0 else (rank - 1) + a for a in axes)
        self._dot_product_equation, self._combine_equation, scores_rank = \
            attention_equations(rank, self._attention_axes)
        self._norm_axes = tuple(range(scores_rank - len(self._attention_axes), scores_rank))
        out_shape = list(self._output_shape) if self._output_shape else [query_shape[-1]]
        eq, bias, out_rank = projection_equation(len(query_shape) - 1, 2, len(out_shape))
        self.output_dense = self._built_sublayer(
            eq, bias, partial_shape(out_rank - 1, out_shape), "attention_output",
            (*query_shape[:-1], self._num_heads, self._value_dim))

    # -- calling ------------------------------------------------------------
    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
             attention_mask=None, return_attention_scores=False, training=None,
             use_causal_mask=False):
        masks = current().masks
        # As Keras: the Keras masks the tensors carry (a key passed as None has none).
        query_mask = masks.get(query.id) if query_mask is None else query_mask
        value_mask = masks.get(value.id) if value_mask is None else value_mask
        if key is not None and key_mask is None:
            key_mask = masks.get(key.id)
        key = value if key is None else key
        if self.query_dense is None:
            self._build_projections((None, *query.shape[1:]), (None, *value.shape[1:]),
                                    (None, *key.shape[1:]))
        explicit = any(m is not None for m in (query_mask, value_mask, key_mask,
                                               attention_mask)) or self._sliding_window
        mask = combined_mask(query, value, query_mask, value_mask, key_mask, attention_mask,
                             use_causal_mask, self._sliding_window)
        gate = self._gate_dense(query) if self._use_gate else None
        q = self.query_dense(query)
        k = self.key_dense(key)
        v = self.value_dense(value)
        # Keras runs its fused dot-product attention (a fully masked row attends
        # uniformly) unless it must return or drop out the scores, or the projections
        # are not 4-D; its Softmax layer (masked weights exactly 0) otherwise.
        fused = not (self._dropout > 0 or return_attention_scores or q.ndim != 4)
        output, scores = self._compute_attention(q, k, v, mask, training,
                                                 zero_masked=not fused or not explicit)
        if gate is not None:
            output = output * gate
        output = self.output_dense(output)
        if return_attention_scores:
            return output, scores
        return output

    def _compute_attention(self, query, key, value, mask=None, training=None,
                           zero_masked=True):
        query = query * self._inverse_sqrt_key_dim
        scores = knp.einsum(self._dot_product_equation, key, query)
        if mask is not None:
            # (B, T, S) -> (B, 1, T, S): a heads axis before the attention axes
            at = -len(self._attention_axes) * 2 - 1
            while mask.ndim < scores.ndim:
                mask = F.expand_dims(mask, at)
        weights = masked_softmax(scores, mask, self._norm_axes, zero_masked)
        dropped = self._dropout_layer(weights, training=training) \
            if self._dropout_layer is not None else weights
        return knp.einsum(self._combine_equation, dropped, value), weights

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        if value_shape is not None and key_shape is not None and \
                tuple(value_shape)[1:-1] != tuple(key_shape)[1:-1]:
            raise ValueError(f"All dimensions of `value` and `key`, except the last one, must "
                             f"be equal. Received: value_shape={tuple(value_shape)} and "
                             f"key_shape={tuple(key_shape)}")
        if self._output_shape:
            return query_shape[:-1] + tuple(self._output_shape)
        return query_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self._num_heads, "key_dim": self._key_dim,
                "value_dim": self._value_dim, "dropout": self._dropout,
                "use_gate": self._use_gate, "output_shape": self._output_shape,
                "attention_axes": self._attention_axes, "sliding_window": self._sliding_window,
                **self._projection_options_config(), "seed": self.seed}
