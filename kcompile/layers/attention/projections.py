"""The EinsumDense projections an attention layer owns, made as Keras makes them: the
layer's kernel/bias options passed on, the variables named "<layer>/<sublayer>/kernel"."""
from __future__ import annotations

from ... import constraints, initializers, regularizers
from ..einsum_dense import EinsumDense


def check_sliding_window(sliding_window):
    if sliding_window is not None and (not isinstance(sliding_window, int)
                                       or sliding_window <= 0):
        raise ValueError(f"`sliding_window` must be `None` or a positive integer. "
                         f"Received: sliding_window={sliding_window}")


class EinsumProjections:
    """Mixed into MultiHeadAttention and GroupedQueryAttention."""

    def _set_projection_options(self, use_bias, kernel_initializer, bias_initializer,
                                kernel_regularizer, bias_regularizer, activity_regularizer,
                                kernel_constraint, bias_constraint):
        self._use_bias = use_bias
        self._kernel_initializer = initializers.get(kernel_initializer)
        self._bias_initializer = initializers.get(bias_initializer)
        self._kernel_regularizer = regularizers.get(kernel_regularizer)
        self._bias_regularizer = regularizers.get(bias_regularizer)
        self._activity_regularizer = regularizers.get(activity_regularizer)
        self._kernel_constraint = constraints.get(kernel_constraint)
        self._bias_constraint = constraints.get(bias_constraint)

    def _projection_options_config(self) -> dict:
        return {"use_bias": self._use_bias,
                "kernel_initializer": initializers.serialize(self._kernel_initializer),
                "bias_initializer": initializers.serialize(self._bias_initializer),
                "kernel_regularizer": regularizers.serialize(self._kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self._bias_regularizer),
                "activity_regularizer": regularizers.serialize(self._activity_regularizer),
                "kernel_constraint": constraints.serialize(self._kernel_constraint),
                "bias_constraint": constraints.serialize(self._bias_constraint)}

    def _sublayer(self, equation, bias_axes, shape, name, activation=None):
        return EinsumDense(equation, output_shape=shape, activation=activation,
                           bias_axes=bias_axes if self._use_bias else None, name=name,
                           kernel_initializer=initializers.get(
                               initializers.serialize(self._kernel_initializer)),
                           bias_initializer=initializers.get(
                               initializers.serialize(self._bias_initializer)),
                           kernel_regularizer=self._kernel_regularizer,
                           bias_regularizer=self._bias_regularizer,
                           activity_regularizer=self._activity_regularizer,
                           kernel_constraint=self._kernel_constraint,
                           bias_constraint=self._bias_constraint)

    def _record_build_shapes(self, query_shape, value_shape, key_shape):
        """Keras' build_config of the layer: the shapes its build() takes (a key shape
        only when a key is given)."""
        self.build_shapes = {"query_shape": tuple(query_shape),
                             "value_shape": tuple(value_shape)}
        if key_shape is not None and tuple(key_shape) != tuple(value_shape):
            self.build_shapes["key_shape"] = tuple(key_shape)

    def _built_sublayer(self, equation, bias_axes, shape, name, input_shape,
                        activation=None):
        layer = self._sublayer(equation, bias_axes, shape, name, activation)
        layer._maybe_build(input_shape)
        # As Keras names them: built inside this layer, "<this layer>/query/kernel".
        for w in layer._weights:
            w.path = f"{self.name}/{w.path}"
        return layer
