"""The gamma/beta options every normalization layer shares: Keras' arguments, weights
and config entries, written once."""
from __future__ import annotations

from ... import constraints, initializers, regularizers


def set_affine_options(layer, beta_initializer, gamma_initializer, beta_regularizer,
                       gamma_regularizer, beta_constraint, gamma_constraint):
    layer.beta_initializer = initializers.get(beta_initializer)
    layer.gamma_initializer = initializers.get(gamma_initializer)
    layer.beta_regularizer = regularizers.get(beta_regularizer)
    layer.gamma_regularizer = regularizers.get(gamma_regularizer)
    layer.beta_constraint = constraints.get(beta_constraint)
    layer.gamma_constraint = constraints.get(gamma_constraint)


def add_gamma(layer, shape):
    return layer.add_weight(shape, layer.gamma_initializer, name="gamma",
                            regularizer=layer.gamma_regularizer,
                            constraint=layer.gamma_constraint)


def add_beta(layer, shape):
    return layer.add_weight(shape, layer.beta_initializer, name="beta",
                            regularizer=layer.beta_regularizer,
                            constraint=layer.beta_constraint)


def affine_config(layer) -> dict:
    return {"beta_initializer": initializers.serialize(layer.beta_initializer),
            "gamma_initializer": initializers.serialize(layer.gamma_initializer),
            "beta_regularizer": regularizers.serialize(regularizers.get(layer.beta_regularizer)),
            "gamma_regularizer": regularizers.serialize(regularizers.get(layer.gamma_regularizer)),
            "beta_constraint": constraints.serialize(constraints.get(layer.beta_constraint)),
            "gamma_constraint": constraints.serialize(constraints.get(layer.gamma_constraint))}


def check_axes(layer, axes, ndim, input_shape):
    """Keras' wording for an axis outside the input."""
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"Axis {a} is out of bounds for input shape {tuple(input_shape)}. "
                             f"Received: axis={layer.axis}")


def normalized_shape(layer, input_shape) -> tuple:
    """The shape of the axes a layer normalizes over (its weights' shape), after setting
    `layer.axis` to their sorted list, as Keras does once the layer is built."""
    axes = layer.axis if isinstance(layer.axis, list) else [layer.axis]
    check_axes(layer, axes, len(input_shape), input_shape)
    layer.axis = sorted(axes)
    shape = tuple(input_shape[a] for a in layer.axis)
    if None in shape:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: the normalized axes "
                         f"{layer.axis} of the input must be known, received "
                         f"input_shape={tuple(input_shape)}")
    return shape
