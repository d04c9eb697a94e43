"""Model variables: a named array that layers create and the compiled step updates.

Before a model runs, a variable keeps its own numpy array; once the model has a
`State`, the variable's value is a view into that buffer, so compiled updates
are seen here without copies.

In layer code being traced, a variable reads as a graph value, and
`assign` / `assign_add` / `assign_sub` with a traced value become state updates
of the compiled step (as BatchNormalization's moving statistics are); outside a
trace they change the array now.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from . import tracing


_created = 0


_placements = 0


def generation() -> int:
    """How many variables were ever made: a model whose State was made at the same
    generation has no variable it has not seen (the cheap check of a step's call)."""
    return _created


def placements() -> int:
    """Counts variables made and variables moved into a State: unchanged, every
    variable lives where it lived (the one check of a prepared batch call)."""
    return _placements


class Variable:
    def __init__(self, value, name: str, trainable: bool = True, path: str | None = None):
        global _created, _placements
        _created += 1
        _placements += 1
        self._value = np.array(value, dtype=np.float32 if np.asarray(value).dtype.kind == "f"
                               else np.int32)
        self.name = name
        self.path = path or name
        self.trainable = trainable
        self.constraint = None
        self.regularizer = None

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return str(self._value.dtype)

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    @property
    def value(self):
        return self._value

    @property
    def ndim(self):
        return self._value.ndim

    def assign(self, value):
        if _traced_assign(value):
            trace = tracing.current()
            value = F.lift(trace.graph, value, self.dtype)
            if value.dtype != self.dtype:
                value = F.cast(value, self.dtype)
            trace.assign(self, value)
            return self
        self._assign_array(value)
        return self

    def assign_add(self, delta):
        return self.assign(self + delta if _traced_assign(delta) else self._value + delta)

    def assign_sub(self, delta):
        return self.assign(self - delta if _traced_assign(delta) else self._value - delta)

    def _assign_array(self, value) -> None:
        value = np.asarray(value)
        if value.shape != self.shape:
            raise ValueError(f"cannot assign a value of shape {value.shape} to variable "
                             f"{self.path!r} of shape {self.shape}")
        np.copyto(self._value, value, casting="unsafe")

    def bind(self, view: np.ndarray) -> None:
        """Move the value into `view` (a slice of a State buffer) and live there."""
        global _placements
        np.copyto(view, self._value)
        self._value = view
        _placements += 1

    def __sym__(self, g):
        return tracing.current().read(self)

    def __float__(self):
        return float(self._value)

    def __int__(self):
        return int(self._value)

    def __index__(self):
        if self._value.dtype.kind == "f" and self._value != np.round(self._value):
            raise TypeError(f"variable {self.path!r} holds a non-integer value")
        return int(self._value)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._value, dtype=dtype)

    def __repr__(self):
        return f"<Variable path={self.path} shape={self.shape} dtype={self.dtype}>"

    # arithmetic as on Keras variables: symbolic while a model is traced (the
    # variable's leaf), on its current value otherwise; `==` stays identity, so
    # variables remain usable as dict keys and in lists
    def __add__(self, o): return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o): return _ops().subtract(self, o)
    def __rsub__(self, o): return _ops().subtract(o, self)
    def __mul__(self, o): return _ops().multiply(self, o)
    def __rmul__(self, o): return _ops().multiply(o, self)
    def __truediv__(self, o): return _ops().divide(self, o)
    def __rtruediv__(self, o): return _ops().divide(o, self)
    def __floordiv__(self, o): return _ops().floor_divide(self, o)
    def __rfloordiv__(self, o): return _ops().floor_divide(o, self)
    def __mod__(self, o): return _ops().mod(self, o)
    def __rmod__(self, o): return _ops().mod(o, self)
    def __pow__(self, o): return _ops().power(self, o)
    def __rpow__(self, o): return _ops().power(o, self)
    def __neg__(self): return _ops().negative(self)
    def __pos__(self): return self
    def __abs__(self): return _ops().abs(self)
    def __matmul__(self, o): return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __lt__(self, o): return _ops().less(self, o)
    def __le__(self, o): return _ops().less_equal(self, o)
    def __gt__(self, o): return _ops().greater(self, o)
    def __ge__(self, o): return _ops().greater_equal(self, o)

    def __getitem__(self, key):
        if tracing._active:
            return tracing.current().read(self)[key]
        return self._value[key]


def _ops():
    from . import ops
    return ops


def _traced_assign(value) -> bool:
    """Whether an assign is part of the layer code being traced: a traced value, or any
    value assigned inside a layer's call (a constant reset of a counter, say)."""
    if not tracing._active:
        return False
    if isinstance(value, F.Sym) or hasattr(value, "__sym__"):
        return True
    return tracing.current().call_depth > 0


def state_over(variables, owner: str):
    """A State holding `variables` (each moved into it, keeping its value); two variables
    with one path are an error naming `owner` (the model or layer)."""
    from kcompile.ir.graph import TensorType
    from kcompile.runtime.state import State
    names = [v.path for v in variables]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{owner}: two variables share the path(s) {dup}: give the layers "
                         f"distinct names")
    state = State([(v.path, TensorType(v.shape, v.dtype)) for v in variables])
    for v in variables:
        v.bind(state[v.path])
    return state
