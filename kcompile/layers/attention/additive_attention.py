"""AdditiveAttention (Bahdanau-style) with Keras 3's arguments and weights."""
from __future__ import annotations

from kcompile.ir import builder as F
from .attention import Attention


class AdditiveAttention(Attention):
    """Attention whose scores are sum(scale * tanh(query + key)) over the features,
    `scale` a (dim,) weight (glorot_uniform) when use_scale, else 1."""

    def __init__(self, use_scale=True, dropout=0.0, **kwargs):
        kwargs.pop("score_mode", None)
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape):
        self._validate_inputs(input_shape)
        dim = tuple(input_shape[0])[-1]
        self.scale = self.add_weight((dim,), "glorot_uniform", name="scale") \
            if self.use_scale else None
        self.concat_score_weight = None
        self.built = True

    def _calculate_scores(self, query, key):
        t = F.tanh(F.expand_dims(query, -2) + F.expand_dims(key, -3))
        return F.sum(t * self.scale if self.scale is not None else t, axis=-1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config
