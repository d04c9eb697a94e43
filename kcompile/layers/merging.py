"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum."""
from __future__ import annotations

from kcompile.ir import builder as F
from kcompile.ir.ops import broadcast_shapes
from .layer import Layer


class _Merge(Layer):
    def _check(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError(f"A merge layer ({type(self).__name__}) should be called on a list "
                             f"of at least 2 inputs. Received: {inputs!r}")

    def call(self, inputs):
        self._check(inputs)
        shapes = {x.shape for x in inputs}
        if len(shapes) > 1 and not isinstance(self, Concatenate):
            try:
                broadcast_shapes(*shapes)
            except ValueError:
                raise ValueError(f"{type(self).__name__}: inputs with incompatible shapes "
                                 f"{[(None, *s[1:]) for s in shapes]}") from None
        out = inputs[0]
        for x in inputs[1:]:
            out = self.combine(out, x)
        return self.finish(out, len(inputs))

    def finish(self, out, n):
        return out


class Add(_Merge):
    def combine(self, a, b):
        return a + b


class Subtract(_Merge):
    def _check(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("A `Subtract` layer should be called on exactly 2 inputs")

    def combine(self, a, b):
        return a - b


class Multiply(_Merge):
    def combine(self, a, b):
        return a * b


class Average(_Merge):
    def combine(self, a, b):
        return a + b

    def finish(self, out, n):
        return out * (1.0 / n)


class Maximum(_Merge):
    def combine(self, a, b):
        return F.maximum(a, b)


class Minimum(_Merge):
    def combine(self, a, b):
        return F.minimum(a, b)


class Concatenate(_Merge):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs):
        self._check(inputs)
        rank = inputs[0].ndim
        axis = self.axis % rank
        for x in inputs:
            if x.ndim != rank or any(d != e for i, (d, e) in enumerate(zip(x.shape, inputs[0].shape))
                                     if i != axis):
                raise ValueError(f"A `Concatenate` layer requires inputs with matching shapes "
                                 f"except for the concatenation axis. Received: input_shape="
                                 f"{[(None, *x.shape[1:]) for x in inputs]}")
        return F.concatenate(list(inputs), axis=axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)
