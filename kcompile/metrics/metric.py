"""The `Metric` base: state variables, `update_state`, `result`, `reset_state`.

A metric keeps its running statistics in variables made with `add_variable`. In a
model's compiled train/eval step, `update_state` is traced like a layer's call: its
`assign`s become state updates of the step (the variables live in the model's State),
and the trainer resets them at the start of every epoch and evaluation. Outside a
step the same calls run now on arrays (`m.update_state(y, p); m.result()`).

Built-in metrics write their per-batch statistics and their result as pure
functions of tensors (`stateless`): inside a step they emit graph values, and
called on arrays they run as one small cached graph on the reference interpreter.
"""
from __future__ import annotations

import inspect
import re

import numpy as np

from kcompile.ir.builder import Sym
from kcompile.ops.dispatch import keras_op, standardize_dtype
from .. import initializers
from ..variables import Variable


def to_snake_case(name: str) -> str:
    """Keras' default metric name of a class: "AUC" -> "auc", "F1Score" -> "f1_score"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class Metric:
    """Encapsulates a metric's logic and state (Keras 3's `keras.metrics.Metric`).

    Subclasses create their variables in `__init__` with `self.add_variable(...)`,
    update them in `update_state(...)` with `variable.assign(...)`, and compute the
    value from them in `result()`.
    """

    def __init__(self, dtype=None, name=None):
        self.name = name or to_snake_case(type(self).__name__)
        self._dtype = "float32" if dtype is None else standardize_dtype(dtype)
        self._variables = []
        self._metrics = []

    def __setattr__(self, name, value):
        # Sub-metrics held as attributes contribute their variables (Keras tracks them).
        if isinstance(value, Metric) and "_metrics" in self.__dict__ and \
                all(value is not m for m in self._metrics):
            self._metrics.append(value)
        super().__setattr__(name, value)

    def _check_super_called(self):
        if "_variables" not in self.__dict__:
            raise RuntimeError("You forgot to call `super().__init__()` in the `__init__()` "
                               "method. Go add it!")

    @property
    def dtype(self):
        return self._dtype

    def add_variable(self, shape, initializer, dtype=None, aggregation="sum", name=None):
        self._check_super_called()
        shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else
                                       (() if shape is None else (shape,))))
        dtype = standardize_dtype(dtype or self._dtype)
        init = initializers.get(initializer if initializer is not None else "zeros")
        value = np.asarray(init(shape, "int32" if dtype == "int32" else "float32"))
        value = value.astype(np.int32 if dtype == "int32" else np.float32)
        name = name or f"variable_{len(self._variables)}"
        variable = Variable(value, name, trainable=False,
                            path=f"{self.name.replace('/', '>')}/{name}")
        self._variables.append(variable)
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    @property
    def variables(self):
        self._check_super_called()
        out = list(self._variables)
        for m in self._metrics:
            out.extend(m.variables)
        return out

    def reset_state(self):
        """Set every state variable to zero (called between epochs and evaluations)."""
        for v in self.variables:
            v.assign(np.zeros(v.shape, v.value.dtype))

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement `update_state()`")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `result()`")

    def __call__(self, *args, **kwargs):
        self._check_super_called()
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

    __str__ = __repr__

    # -- built-in metrics: pure functions of tensors, symbolic or eager -------------------
    def stateless(self, fn, *tensors):
        """fn(*tensors) for a pure `fn` written on graph values: emitted into the graph
        being traced when a tensor is symbolic, else traced once per signature and run."""
        cache = self.__dict__.setdefault("_stateless_fns", {})
        # keyed by the function's code: a bound method or module function, never a
        # closure over per-call values
        key = (getattr(getattr(fn, "__func__", fn), "__code__", fn), len(tensors))
        wrapped = cache.get(key)
        if wrapped is None:
            names = [f"t{i}" for i in range(len(tensors))]

            def call(*args):
                return fn(*args)
            call.__signature__ = inspect.Signature(
                [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
            call.__name__ = f"{type(self).__name__}.{fn.__name__}"
            wrapped = cache[key] = keras_op(*names)(call)
        return wrapped(*tensors)

    def accumulate(self, variables, increments):
        """Each variable plus its increment (a step's state update when traced)."""
        for v, d in zip(variables, increments):
            v.assign(v + d)


def is_symbolic(x) -> bool:
    from kcompile.ops.dispatch import is_symbolic as symbolic
    return isinstance(x, Sym) or symbolic(x)


def as_tensor(x):
    """A symbolic value as is; anything else (lists, numbers, arrays) as a numpy array."""
    if x is None or is_symbolic(x):
        return x
    arr = np.asarray(x)
    return arr.astype(np.int32) if arr.dtype.kind in "iu" else arr.astype(np.float32)
