"""Numpy references of the normalization and attention layers, written from Keras 3's
documented formulas (float64, plain loops over heads; not kcompile code)."""
from __future__ import annotations

import numpy as np


def layer_norm(x, gamma, beta, axes, eps, rms_scaling=False):
    axes = tuple(sorted(a % x.ndim for a in axes))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    g = 1.0 if gamma is None else gamma.reshape(shape)
    if rms_scaling:
        return x / np.sqrt(var + eps) * g
    b = 0.0 if beta is None else beta.reshape(shape)
    return (x - mean) / np.sqrt(var + eps) * g + b


def rms_norm(x, scale, axes, eps):
    axes = tuple(sorted(a % x.ndim for a in axes))
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    return x / np.sqrt((x ** 2).mean(axis=axes, keepdims=True) + eps) * scale.reshape(shape)


def group_norm(x, groups, gamma, beta, eps):
    """Channels last."""
    c = x.shape[-1]
    xg = x.reshape(*x.shape[:-1], groups, c // groups)
    axes = tuple(range(1, xg.ndim - 2)) + (xg.ndim - 1,)
    mean = xg.mean(axis=axes, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=axes, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return y * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)


def unit_norm(x, axes):
    norm = np.sqrt((x ** 2).sum(axis=tuple(axes), keepdims=True))
    return x / np.maximum(norm, 1e-12)


def softmax(s, mask=None, zero_masked=True):
    if mask is not None:
        s = np.where(mask, s, -1e9)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    w = e / e.sum(axis=-1, keepdims=True)
    return np.where(mask, w, 0.0) if mask is not None and zero_masked else w


def multi_head_attention(q, v, k, weights, heads, key_dim, mask=None, causal=False,
                         use_bias=True, zero_masked=True):
    """q (B, T, Dq), v (B, S, Dv), k (B, S, Dk); weights in Keras' order (query kernel
    (Dq, N, H), bias (N, H), key..., value..., output kernel (N, Hv, Do), bias (Do,)).
    mask (B, T, S) booleans; zero_masked=False: a fully masked row attends uniformly
    (Keras' fused attention). Returns (output, scores (B, N, T, S))."""
    w = list(weights)
    take = lambda: w.pop(0)                                   # noqa: E731
    def proj(x):
        kernel = take()
        y = np.einsum("bsd,dnh->bsnh", x, kernel)
        return y + take() if use_bias else y
    qp, kp, vp = proj(q), proj(k), proj(v)
    T, S = q.shape[1], v.shape[1]
    m = np.ones((q.shape[0], T, S), bool) if mask is None else mask.astype(bool)
    if causal:
        m = m & np.tril(np.ones((T, S), bool))[None]
    scores = np.zeros((q.shape[0], heads, T, S))
    out = np.zeros((q.shape[0], T, heads, vp.shape[-1]))
    for n in range(heads):
        s = qp[:, :, n] @ kp[:, :, n].transpose(0, 2, 1) / np.sqrt(key_dim)
        scores[:, n] = softmax(s, m, zero_masked)
        out[:, :, n] = scores[:, n] @ vp[:, :, n]
    y = np.einsum("btnh,nho->bto", out, take())
    return (y + take() if use_bias else y), scores


def grouped_query_attention(q, v, k, weights, q_heads, kv_heads, head_dim, mask=None,
                            causal=False):
    """Keras' GroupQueryAttention: query head n uses key/value head n // (q_heads //
    kv_heads). weights: query kernel (D, Nq, H), bias, key (D, Nkv, H), bias, value...,
    output kernel (Nq, H, D), bias."""
    qk, qb, kk, kb, vk, vb, ok, ob = weights
    qp = np.einsum("btd,dnh->btnh", q, qk) + qb
    kp = np.einsum("bsd,dnh->bsnh", k, kk) + kb
    vp = np.einsum("bsd,dnh->bsnh", v, vk) + vb
    T, S = q.shape[1], v.shape[1]
    m = np.ones((q.shape[0], T, S), bool) if mask is None else mask.astype(bool)
    if causal:
        m = m & np.tril(np.ones((T, S), bool))[None]
    group = q_heads // kv_heads
    out = np.zeros((q.shape[0], T, q_heads, head_dim))
    scores = np.zeros((q.shape[0], q_heads, T, S))
    for n in range(q_heads):
        s = qp[:, :, n] @ kp[:, :, n // group].transpose(0, 2, 1) / np.sqrt(head_dim)
        scores[:, n] = softmax(s, m)
        out[:, :, n] = scores[:, n] @ vp[:, :, n // group]
    return np.einsum("btnh,nhd->btd", out, ok) + ob, scores


def dot_attention(q, v, k, scale=None, concat_weight=None, v_mask=None, q_mask=None,
                  causal=False):
    if concat_weight is None:
        s = q @ k.transpose(0, 2, 1) * (1.0 if scale is None else scale)
    else:
        t = q[:, :, None, :] + k[:, None, :, :]
        s = concat_weight * np.tanh((1.0 if scale is None else scale) * t).sum(-1)
    return _apply(s, v, v_mask, q_mask, causal)


def additive_attention(q, v, k, scale=None, v_mask=None, q_mask=None, causal=False):
    t = np.tanh(q[:, :, None, :] + k[:, None, :, :])
    s = (t * (1.0 if scale is None else scale)).sum(-1)
    return _apply(s, v, v_mask, q_mask, causal)


def _apply(s, v, v_mask, q_mask, causal):
    keep = np.ones(s.shape, bool)
    if v_mask is not None:
        keep = keep & v_mask[:, None, :]
    if causal:
        keep = keep & np.tril(np.ones(s.shape[-2:], bool))[None]
    s = np.where(keep, s, s - 1e9)
    w = softmax(s)
    out = w @ v
    if q_mask is not None:
        out = np.where(q_mask[:, :, None], out, 0.0)
    return out, w
