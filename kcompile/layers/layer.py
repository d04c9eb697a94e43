"""The Layer base class: weights, building from an input shape, calling on traced values."""
from __future__ import annotations

import inspect
import re

import numpy as np

from kcompile.ir.builder import Sym
from .. import initializers
from ..tracing import Trace, tracing
from ..variables import Variable

_name_counts: dict[str, int] = {}


def unique_name(base: str) -> str:
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def snake_case(name: str) -> str:
    """Keras' to_snake_case: LSTM -> lstm, SimpleRNN -> simple_rnn, BatchNormalization ->
    batch_normalization."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_BASE_KWARGS = ("input_shape", "input_dim", "batch_input_shape", "batch_size", "dtype",
                "name", "trainable", "input_length", "weights")


class Layer:
    def __init__(self, *, name=None, trainable=True, dtype=None, **kwargs):
        unknown = set(kwargs) - set(_BASE_KWARGS)
        if unknown:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                            f"{sorted(unknown)}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.trainable = trainable
        self.dtype = dtype or "float32"
        self.built = False
        self._weights: list[Variable] = []
        shape = kwargs.get("input_shape")
        if kwargs.get("batch_input_shape") is not None:
            shape = tuple(kwargs["batch_input_shape"])[1:]
        if kwargs.get("input_dim") is not None:
            shape = (kwargs["input_dim"],)
        self._input_shape_arg = tuple(shape) if shape is not None else None
        self._initial_weights = kwargs.get("weights")
        self._call_has_training = "training" in inspect.signature(self.call).parameters
        self.input_shape = None     # (None, ...) once built
        self.output_shape = None

    # -- weights ------------------------------------------------------------
    def add_weight(self, shape=None, initializer="glorot_uniform", dtype=None, trainable=True,
                   name=None, regularizer=None, constraint=None, autocast=True):
        shape = tuple(int(d) for d in (shape or ()))
        init = initializers.get(initializer)
        value = init(shape, dtype or "float32")
        name = name or f"variable_{len(self._weights)}"
        var = Variable(value, name, trainable=trainable, path=f"{self.name}/{name}")
        var.regularizer = regularizer
        var.constraint = constraint
        self._weights.append(var)
        return var

    def add_update(self, variable, value) -> None:
        """While traced for training: `variable` takes `value` after the step."""
        from ..tracing import current
        current().updates[variable] = value

    @property
    def weights(self) -> list[Variable]:
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[Variable]:
        return [w for w in self._weights if w.trainable and self.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [w for w in self._weights if not (w.trainable and self.trainable)]

    @property
    def variables(self):
        return self.weights

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy() for w in self._weights]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(f"Layer {self.name!r} expects {len(self._weights)} weights, "
                             f"but the weights list has {len(weights)} elements")
        for var, w in zip(self._weights, weights):
            w = np.asarray(w)
            if w.shape != var.shape:
                raise ValueError(f"Layer {self.name!r} weight {var.name!r}: expected shape "
                                 f"{var.shape}, received {w.shape}")
        for var, w in zip(self._weights, weights):
            var.assign(w)

    def count_params(self) -> int:
        return int(sum(np.prod(w.shape) for w in self._weights))

    # -- building and calling ----------------------------------------------
    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=None):
        return inputs

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(tuple(input_shape))
            self.built = True
            if self._initial_weights is not None:
                self.set_weights(self._initial_weights)
                self._initial_weights = None
        if self.input_shape is None:
            self.input_shape = tuple(input_shape)

    def __call__(self, inputs, training=None, **kwargs):
        if isinstance(inputs, (Sym, list, tuple)) and _all_syms(inputs):
            shape = _shape_of(inputs)
            self._maybe_build(shape)
            if self._call_has_training:
                kwargs["training"] = training
            outputs = self.call(inputs, **kwargs)
            self._after_call(inputs, outputs)
            return outputs
        from ..functional import KerasTensor, call_symbolic
        if _any_keras_tensor(inputs):
            return call_symbolic(self, inputs, kwargs)
        raise TypeError(f"Layer {self.name!r} was called on {type(inputs).__name__}; call it on "
                        f"a `layers.Input` tensor, or use the model's predict() on arrays")

    supports_masking = False

    def _after_call(self, inputs, outputs):
        """Keras' bookkeeping after a traced call: mask propagation and activity losses."""
        from ..tracing import current
        trace = current()
        if isinstance(inputs, Sym) and isinstance(outputs, Sym):
            mask = trace.masks.get(inputs.id)
            if mask is not None and self.supports_masking and outputs.id not in trace.masks \
                    and outputs.shape[:mask.ndim] == mask.shape:
                trace.masks[outputs.id] = mask
        reg = getattr(self, "activity_regularizer", None)
        if reg is not None:
            for out in (outputs if isinstance(outputs, (list, tuple)) else [outputs]):
                # As Keras 3: the penalty of the activations, per sample of the batch.
                trace.losses.append(reg(out) / float(out.shape[0]))

    def compute_output_shape(self, input_shape):
        """Output shape (with None batch) found by tracing the layer on a batch of 1;
        axes given as None are traced at two sizes, and the output axes that follow
        them are None."""
        shapes = []
        for fill in ((1, 2) if _has_none(input_shape) else (1,)):
            trace = Trace()
            with tracing(trace):
                x = _placeholder(trace, input_shape, fill)
                shapes.append(_none_batch(self(x, training=False)))
        return _merge_shapes(shapes[0], shapes[-1])

    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            cfg["batch_input_shape"] = (None, *self._input_shape_arg)
        if getattr(self, "activity_regularizer", None) is not None:
            from .. import regularizers
            cfg["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return cfg

    @classmethod
    def from_config(cls, config):
        """The layer from `get_config()`'s dict, or from a Keras config of the same class
        (dtype policies, nested initializer / regularizer / constraint configs and
        Keras-only keys are translated: kcompile/saving/serialization.py)."""
        from ..saving.serialization import layer_kwargs
        return cls(**layer_kwargs(cls, config))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _all_syms(x):
    if isinstance(x, Sym):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(i, Sym) for i in x)


def _any_keras_tensor(x):
    from ..functional import KerasTensor
    if isinstance(x, KerasTensor):
        return True
    if isinstance(x, dict):
        x = list(x.values())
    return isinstance(x, (list, tuple)) and any(isinstance(i, KerasTensor) for i in x)


def _shape_of(x):
    if isinstance(x, Sym):
        return (None, *x.shape[1:])
    return [(None, *s.shape[1:]) for s in x]


def _has_none(shape):
    if isinstance(shape, list):
        return any(_has_none(s) for s in shape)
    return None in tuple(shape)[1:]


def _merge_shapes(a, b):
    if isinstance(a, list):
        return [_merge_shapes(x, y) for x, y in zip(a, b)]
    return tuple(d if d == e else None for d, e in zip(a, b))


def _placeholder(trace, shape, fill=1):
    if isinstance(shape, list):
        return [_placeholder(trace, s, fill) for s in shape]
    return trace.input(f"x{len(trace.graph)}", (1, *(fill if d is None else d for d in shape[1:])))


def _none_batch(y):
    if isinstance(y, (list, tuple)):
        return [_none_batch(i) for i in y]
    return (None, *y.shape[1:])
