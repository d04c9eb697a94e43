"""Attention (Luong-style dot-product) with Keras 3's arguments, weights and masks."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..layer import Layer
from ..regularization import Dropout
from .masks import LARGE_NEGATIVE, as_mask, both, causal_mask
from ... import activations
from ...ops import numpy as knp


class Attention(Layer):
    """softmax(scores(query, key)) @ value, called on [query, value] or [query, value,
    key]. score_mode "dot": query @ key^T (times `scale` if use_scale); "concat":
    concat_score_weight * sum(tanh(scale * (query + key))). The value mask drops keys
    (their scores lowered by 1e9, as Keras), the query mask zeroes outputs."""
    supports_masking = True

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.use_scale = use_scale
        self.score_mode = score_mode
        self.dropout = dropout
        self.seed = seed
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"Invalid value for argument score_mode. Expected one of "
                             f"{{'dot', 'concat'}}. Received: score_mode={score_mode}")
        if not 0 <= dropout <= 1:
            raise ValueError(f"Invalid value received for argument `dropout`. Expected a "
                             f"float value between 0 and 1. Received: dropout={dropout}")
        self._dropout_layer = Dropout(dropout, seed=seed) if dropout > 0 else None

    def build(self, input_shape):
        self._validate_inputs(input_shape)
        self.scale = self.add_weight((), "ones", name="scale") if self.use_scale else None
        self.concat_score_weight = (self.add_weight((), "ones", name="concat_score_weight")
                                    if self.score_mode == "concat" else None)
        self.built = True

    def _calculate_scores(self, query, key):
        if self.score_mode == "dot":
            scores = knp.matmul(query, knp.swapaxes(key, -2, -1))
            return scores * self.scale if self.scale is not None else scores
        q = F.expand_dims(query, -2)            # (B, Tq, 1, dim)
        k = F.expand_dims(key, -3)              # (B, 1, Tv, dim)
        s = q + k if self.scale is None else self.scale * (q + k)
        return self.concat_score_weight * F.sum(F.tanh(s), axis=-1)

    def call(self, inputs, mask=None, training=False, return_attention_scores=False,
             use_causal_mask=False):
        self._validate_inputs(inputs, mask)
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        q_mask = mask[0] if mask else None
        v_mask = mask[1] if mask else None
        scores = self._calculate_scores(q, k)
        keep = None if v_mask is None else F.expand_dims(as_mask(v_mask), -2)   # (B, 1, Tv)
        if use_causal_mask:
            keep = both(keep, causal_mask(scores.g, scores.shape[-2], scores.shape[-1]))
        if keep is not None:
            scores = F.select(keep, scores, scores + LARGE_NEGATIVE)
        weights = activations.softmax(scores, axis=-1)
        dropped = weights
        if training and self._dropout_layer is not None:
            dropped = self._dropout_layer(weights, training=training)
        out = knp.matmul(dropped, v)
        if q_mask is not None:
            out = F.select(F.expand_dims(as_mask(q_mask), -1), out, 0.0)
        return (out, weights) if return_attention_scores else out

    def compute_mask(self, inputs, mask=None):
        self._validate_inputs(inputs, mask)
        if mask is None or mask[0] is None:
            return None
        return mask[0]

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape[0])[:-1], tuple(input_shape[1])[-1])

    def _validate_inputs(self, inputs, mask=None):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or (inputs and isinstance(inputs[0], int)):
            raise ValueError(f"{name} layer must be called on a list of inputs, namely "
                             f"[query, value] or [query, value, key]. Received: "
                             f"inputs={inputs}.")
        if len(inputs) < 2 or len(inputs) > 3:
            raise ValueError(f"{name} layer accepts inputs list of length 2 or 3, namely "
                             f"[query, value] or [query, value, key]. Received length: "
                             f"{len(inputs)}.")
        if mask is not None:
            if not isinstance(mask, (list, tuple)):
                raise ValueError(f"{name} layer mask must be a list, namely [query_mask, "
                                 f"value_mask]. Received: mask={mask}.")
            if len(mask) < 2 or len(mask) > 3:
                raise ValueError(f"{name} layer accepts mask list of length 2 or 3. "
                                 f"Received: inputs={inputs}, mask={mask}.")

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale,
                "score_mode": self.score_mode, "dropout": self.dropout, "seed": self.seed}
