"""Activation functions (Keras names), usable by name or as functions on traced values."""
from __future__ import annotations

from kcompile.ir import builder as F


def linear(x):
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return F.relu(x)
    y = F.select(F.greater(x, threshold), x, 0.0 if negative_slope == 0.0 else negative_slope * (x - threshold))
    return F.minimum(y, float(max_value)) if max_value is not None else y


def sigmoid(x):
    return F.sigmoid(x)


def tanh(x):
    return F.tanh(x)


def softmax(x, axis=-1):
    # exp(x - max) / sum: the max shift keeps exp in range; its gradient cancels
    # exactly, so it is not differentiated (as jax.nn.softmax does).
    m = F.stop_gradient(F.max(x, axis=axis, keepdims=True))
    e = F.exp(x - m)
    return e / F.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    m = F.stop_gradient(F.max(x, axis=axis, keepdims=True))
    s = x - m
    return s - F.log(F.sum(F.exp(s), axis=axis, keepdims=True))


def softplus(x):
    # max(x, 0) + log(1 + exp(-|x|)): no overflow for large |x|
    return F.relu(x) + F.log(1.0 + F.exp(-F.abs(x)))


def softsign(x):
    return x / (F.abs(x) + 1.0)


def elu(x, alpha=1.0):
    return F.select(F.greater(x, 0.0), x, alpha * (F.exp(F.minimum(x, 0.0)) - 1.0))


def selu(x):
    alpha, scale = 1.67326324, 1.05070098
    return scale * elu(x, alpha)


def silu(x):
    return x * F.sigmoid(x)


swish = silu


def exponential(x):
    return F.exp(x)


def gelu(x, approximate=False):
    if approximate:
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return 0.5 * x * (1.0 + F.tanh(0.7978845608028654 * (x + 0.044715 * (x * x * x))))
    return 0.5 * x * (1.0 + F.erf(x * 0.7071067811865476))


def hard_silu(x):
    return x * hard_sigmoid(x)


hard_swish = hard_silu


def log_sigmoid(x):
    return -softplus(-x)


def mish(x):
    return x * F.tanh(softplus(x))


def leaky_relu(x, negative_slope=0.2):
    return F.select(F.greater_equal(x, 0.0), x, x * negative_slope)     # slope 1 at 0, as Keras


def relu6(x):
    return F.minimum(F.relu(x), 6.0)


def hard_sigmoid(x):
    return F.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


_REGISTRY = {f.__name__: f for f in [linear, relu, sigmoid, tanh, softmax, log_softmax, softplus,
                                     softsign, elu, selu, silu, exponential, leaky_relu, relu6,
                                     hard_sigmoid, gelu, hard_silu, log_sigmoid, mish]}
_REGISTRY["swish"] = silu
_REGISTRY["hard_swish"] = hard_silu


def get(identifier):
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier]
    raise ValueError(f"Unknown activation function: {identifier!r}. "
                     f"Valid names: {sorted(_REGISTRY)}")


def serialize(fn) -> str:
    for name, f in _REGISTRY.items():
        if f is fn:
            return name
    return getattr(fn, "__name__", str(fn))
