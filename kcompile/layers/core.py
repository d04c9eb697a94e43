"""Dense, Activation, Input and the other core layers."""
from __future__ import annotations

import math

from kcompile.ir import builder as F
from .. import activations, constraints, initializers, regularizers
from .layer import Layer


class Dense(Layer):
    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units!r}")
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.activity_regularizer = regularizers.get(activity_regularizer)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"Dense {self.name!r}: the last dimension of the input must be "
                             f"known, received input_shape={input_shape}")
        self.kernel = self.add_weight((in_dim, self.units), self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.units,), self.bias_initializer, name="bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def call(self, inputs):
        x = inputs
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                             f"expected axis -1 of input shape to have value "
                             f"{self.kernel.shape[0]}, but received input with shape "
                             f"{(None, *x.shape[1:])}")
        lead = x.shape[:-1]
        if x.ndim != 2:
            x = F.reshape(x, (math.prod(lead), x.shape[-1]))
        y = F.matmul(x, self.kernel)
        if self.use_bias:
            y = y + self.bias
        if len(lead) != 1:
            y = F.reshape(y, (*lead, self.units))
        return self.activation(y)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint)}


class Activation(Layer):
    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs):
        return self.activation(inputs)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class InputLayer(Layer):
    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, **kwargs):
        if shape is None and kwargs.get("input_shape") is not None:
            shape = kwargs.pop("input_shape")
        if shape is None and kwargs.get("batch_shape") is not None:
            batch_shape = tuple(kwargs.pop("batch_shape"))
            shape = batch_shape[1:]
            batch_size = batch_shape[0] if batch_size is None else batch_size
        kwargs.pop("batch_shape", None)
        super().__init__(name=name or None, dtype=dtype, **kwargs)
        if shape is None:
            raise ValueError("InputLayer needs `shape=`")
        self._input_shape_arg = tuple(shape)
        self._batch_size = batch_size      # a stateful RNN's states need it
        self.built = True

    def get_config(self):
        return {"name": self.name, "batch_shape": (self._batch_size, *self._input_shape_arg),
                "dtype": self.dtype}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False):
    """A symbolic input for functional models (and the first entry of a Sequential)."""
    from ..functional import KerasTensor
    if shape is None and batch_shape is not None:
        shape = tuple(batch_shape)[1:]
        batch_size = tuple(batch_shape)[0] if batch_size is None else batch_size
    if shape is None:
        raise ValueError("Input() needs `shape=` (the shape of one sample, without the batch)")
    if isinstance(shape, int):
        shape = (shape,)
    layer = InputLayer(shape=tuple(shape), batch_size=batch_size, dtype=dtype, name=name)
    # As Keras: a batch size given here stays in the tensors' shapes.
    return KerasTensor((batch_size, *shape), dtype or "float32", layer, [])
