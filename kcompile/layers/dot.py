"""Dot: the per-sample dot product of two tensors along one axis of each (Keras'
batch_dot), optionally of their L2-normalized values (cosine proximity)."""
from __future__ import annotations

from kcompile.ir import builder as F
from .layer import Layer


def _check_axes(axes):
    if isinstance(axes, int) and not isinstance(axes, bool):
        return
    if not isinstance(axes, (list, tuple)):
        raise TypeError(f"Invalid type for argument `axes`: it should be a list or an int. "
                        f"Received: axes={axes}")
    if len(axes) != 2:
        raise ValueError(f"Invalid format for argument `axes`: it should contain two "
                         f"elements. Received: axes={axes}")
    if not all(isinstance(a, int) for a in axes):
        raise ValueError(f"Invalid format for argument `axes`: list elements should be "
                         f"integers. Received: axes={axes}")


def batch_dot(x, y, ax, ay):
    """out[b, i..., j...] = sum_k x[b, i..., k (at ax), ...] y[b, j..., k (at ay), ...]."""
    x = F.transpose(x, tuple(d for d in range(x.ndim) if d != ax) + (ax,))
    y = F.transpose(y, (0, ay) + tuple(d for d in range(1, y.ndim) if d != ay))
    B, K = x.shape[0], x.shape[-1]
    left, right = x.shape[1:-1], y.shape[2:]
    nl = 1
    for d in left:
        nl *= d
    nr = 1
    for d in right:
        nr *= d
    x3 = F.reshape(x, (B, nl, K, 1))
    y3 = F.reshape(y, (B, 1, K, nr))
    out = F.sum(x3 * y3, axis=2)                     # (B, nl, nr)
    shape = (B, *left, *right)
    return F.reshape(out, shape if len(shape) > 1 else (B, 1))


class Dot(Layer):
    supports_masking = True

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        _check_axes(axes)
        self.axes = list(axes) if isinstance(axes, tuple) else axes
        self.normalize = normalize

    def _axes(self, shapes):
        if isinstance(self.axes, int):
            return [self.axes % len(s) if self.axes < 0 else self.axes for s in shapes]
        return [a % len(s) if a < 0 else a for a, s in zip(self.axes, shapes)]

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"A `Dot` layer should be called on exactly 2 inputs. "
                             f"Received: inputs={inputs}")

    def call(self, inputs):
        from .. import ops
        self._check_inputs(inputs)
        x, y = inputs
        ax, ay = self._axes([x.shape, y.shape])
        if ax == 0 or ay == 0:
            raise ValueError(f"Dot {self.name!r}: the batch axis (0) cannot be a dot-product "
                             f"axis. Received: axes={self.axes}")
        if x.shape[ax] != y.shape[ay]:
            raise ValueError(f"Incompatible input shapes: axis values {x.shape[ax]} (at axis "
                             f"{ax}) != {y.shape[ay]} (at axis {ay}). Full input shapes: "
                             f"{(None, *x.shape[1:])}, {(None, *y.shape[1:])}")
        if self.normalize:
            x = ops.normalize(x, axis=ax)
            y = ops.normalize(y, axis=ay)
        return batch_dot(x, y, ax, ay)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        s1, s2 = list(input_shape[0]), list(input_shape[1])
        ax, ay = self._axes([s1, s2])
        s1.pop(ax)
        s2.pop(ay)
        s2.pop(0)
        out = s1 + s2
        return tuple(out if len(out) > 1 else out + [1])

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def dot(inputs, axes=-1, **kwargs):
    """Functional interface to the `Dot` layer."""
    return Dot(axes=axes, **kwargs)(inputs)
