"""The `keras.ops` math ops: rsqrt, erf, logsumexp, top_k, in_top_k."""
from __future__ import annotations

from kcompile.ir import builder as F
from .dispatch import keras_op
from .numpy import top_k_impl
from .operation_utils import reduce_axes, to_float


@keras_op("x")
def rsqrt(x):
    return 1.0 / F.sqrt(to_float(x))


@keras_op("x")
def erf(x):
    return F.erf(to_float(x))


@keras_op("x")
def logsumexp(x, axis=None, keepdims=False):
    # max + log(sum(exp(x - max))): the shift keeps exp in range; its gradient cancels
    x = to_float(x)
    axes = reduce_axes(x, axis)
    m = F.stop_gradient(F.max(x, axis=axes, keepdims=True))
    out = m + F.log(F.sum(F.exp(x - m), axis=axes, keepdims=True))
    return out if keepdims else F.reshape(out, tuple(d for i, d in enumerate(x.shape)
                                                     if i not in axes))


@keras_op("x")
def top_k(x, k, sorted=True):
    return top_k_impl(x, k, sorted)


@keras_op("targets", "predictions", bool_result=True)
def in_top_k(targets, predictions, k):
    """Whether each target's prediction is among the k largest of its row (ties count
    as in, as Keras' JAX backend does)."""
    p = to_float(predictions)
    t = F.cast(targets, "int32")
    own = F.sum(p * F.one_hot(t, p.shape[-1]), axis=-1, keepdims=True)
    better = F.sum(F.greater(p, own), axis=-1)
    return F.less(better, float(k))
