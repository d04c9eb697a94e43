"""PReLU: x for x >= 0, alpha * x below, with a learned alpha per input element
(shared along `shared_axes`), as Keras: relu(x) - alpha * relu(-x)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ... import constraints, initializers, regularizers
from ..layer import Layer


class PReLU(Layer):
    supports_masking = True

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        elif not isinstance(shared_axes, (list, tuple)):
            self.shared_axes = [shared_axes]
        else:
            self.shared_axes = list(shared_axes)

    def build(self, input_shape):
        param_shape = list(input_shape[1:])
        for i in self.shared_axes or ():
            if not 1 <= i < len(input_shape):
                raise ValueError(f"PReLU {self.name!r}: shared_axes must name non-batch axes "
                                 f"of the input (1..{len(input_shape) - 1}). Received: "
                                 f"shared_axes={self.shared_axes}")
            param_shape[i - 1] = 1
        if any(d is None for d in param_shape):
            raise ValueError(f"PReLU {self.name!r}: every non-shared axis must have a known "
                             f"size. Received: input_shape={tuple(input_shape)}")
        self.alpha = self.add_weight(tuple(param_shape), self.alpha_initializer, name="alpha",
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)
        self.built = True

    def call(self, inputs):
        return F.relu(inputs) - self.alpha * F.relu(-inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": constraints.serialize(self.alpha_constraint),
                "shared_axes": self.shared_axes}
