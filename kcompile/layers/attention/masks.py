"""The masked softmax of attention scores and the masks attention layers combine.

Masks are float32 0/1 values (1: attend). The softmax is written as exp(x - max) /
sum over the scores' last axis, so the pass that merges row-wise kernels
(ir/passes/fuse_rows.py) runs the masking, max, exp, sum and division of a row of
scores, and their gradient, in one rows kernel.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ... import activations

# As Keras: masked scores are replaced by -1e9 (float32), whose exp underflows to 0.
LARGE_NEGATIVE = -1e9


def as_mask(m):
    """A mask of any dtype as float 0/1: nonzero (True) attends, as Keras' cast to bool."""
    return F.not_equal(m, 0)


def both(a, b):
    """The logical and of two 0/1 masks (either may be None)."""
    if a is None:
        return b
    if b is None:
        return a
    return a * b


def causal_mask(g, q_len, v_len):
    """(1, T, S): position i attends to j <= i (Keras' cumsum comparison)."""
    rows = np.arange(q_len)[:, None]
    cols = np.arange(v_len)[None, :]
    return F.lift(g, (rows >= cols)[None].astype(np.float32))


def masked_softmax(scores, mask, axes, zero_masked):
    """softmax over `axes` (the trailing ones) of the scores where the mask is 1.

    zero_masked: the weights at masked positions are 0 even when a whole row is
    masked (Keras' Softmax layer); otherwise a fully masked row is uniform (Keras'
    fused dot-product attention)."""
    if mask is not None:
        scores = F.select(mask, scores, LARGE_NEGATIVE)
    n = len(axes)
    if n == 1:
        weights = activations.softmax(scores, axis=-1)
    else:
        # one softmax over the flattened trailing axes
        lead = scores.shape[:scores.ndim - n]
        flat = F.reshape(scores, lead + (-1,))
        weights = F.reshape(activations.softmax(flat, axis=-1), scores.shape)
    if mask is not None and zero_masked:
        weights = F.select(mask, weights, 0.0)
    return weights


def combined_mask(query, value, query_mask=None, value_mask=None, key_mask=None,
                  attention_mask=None, use_causal_mask=False, sliding_window=None):
    """The (B, T, S) mask of an attention layer, as Keras combines it: the query's mask
    (B, T, 1), the value's and key's (B, 1, S), the causal (1, T, S) and sliding-window
    bands, and `attention_mask`, and-ed (None when there is none)."""
    mask = None
    if query_mask is not None:
        mask = F.expand_dims(as_mask(query_mask), -1)
    for m in (value_mask, key_mask):
        if m is not None:
            mask = both(mask, F.expand_dims(as_mask(m), -2))
    if use_causal_mask:
        mask = both(mask, causal_mask(query.g, query.shape[1], value.shape[1]))
    if sliding_window is not None:
        rows = np.arange(query.shape[1])[:, None]
        cols = np.arange(value.shape[1])[None, :]
        band = (np.abs(rows - cols) < sliding_window)[None].astype(np.float32)
        mask = both(mask, F.lift(query.g, band))
    if attention_mask is not None:
        mask = both(as_mask(attention_mask), mask)
    return mask
