"""Tracing: running layer code on symbolic values to build the model's graph.

While a `Trace` is active, a model variable used in layer code stands for a
leaf of the trace's graph (a param if trainable, state otherwise); the same
variable always maps to the same leaf.
"""
from __future__ import annotations

import contextlib

from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType

_active: list["Trace"] = []


class Trace:
    def __init__(self, shape_only: bool = False):
        self.shape_only = shape_only    # traced for output shapes only: never compiled
        self.graph = Graph()
        self._leaves: dict[int, Sym] = {}
        self.variables = []          # in first-use order
        self.updates = {}            # Variable -> Sym: state a layer updates in training
        self.masks: dict[int, Sym] = {}   # value id -> its Keras mask (batch, steps)
        self.sample_mask = None      # (batch,) 1 for real samples, 0 for padding
        self.losses = []             # extra loss terms (activity regularizers, add_loss)
        self.loss_owners = []        # (layer, scalar Sym) of each add_loss term, in call order
        self.call_training = None    # the `training` value of the layer call being traced
        self.call_depth = 0          # layer calls under way (a variable assign there is traced)
        self._assigned: dict[int, Sym] = {}   # variable id -> its value after the last assign
        self.seed_generator = None   # the model's generator for random ops given no seed

    def is_trainable(self, var) -> bool:
        return var.trainable

    def rebind(self, graph: Graph) -> None:
        """Continue tracing into `graph`, a pass's copy of this trace's graph (same value ids)."""
        self.graph = graph
        self._leaves = {k: Sym(graph, s.id) for k, s in self._leaves.items()}
        self._assigned = {k: Sym(graph, s.id) for k, s in self._assigned.items()}

    def variable(self, var) -> Sym:
        key = id(var)
        if key not in self._leaves:
            role = "param" if self.is_trainable(var) else "state"
            self._leaves[key] = Sym(self.graph, self.graph.leaf(
                role, TensorType(var.shape, var.dtype), var.path))
            self.variables.append(var)
        return self._leaves[key]

    def read(self, var) -> Sym:
        """The variable's current value: its leaf, or what layer code last assigned to it."""
        value = self._assigned.get(id(var))
        return value if value is not None else self.variable(var)

    def assign(self, var, value: Sym) -> None:
        """`var` takes `value` after the step; later reads in this trace see `value`."""
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"cannot assign a value of shape {value.shape} to variable "
                             f"{var.path!r} of shape {var.shape}")
        self.variable(var)                  # the leaf exists before its update
        self.updates[var] = value
        self._assigned[id(var)] = value

    def input(self, name: str, shape, dtype="float32", role="input") -> Sym:
        return Sym(self.graph, self.graph.leaf(role, TensorType(tuple(shape), graph_dtype(dtype)),
                                               name))

    @contextlib.contextmanager
    def scope(self, name: str):
        prev = self.graph.scope
        self.graph.scope = f"{prev}/{name}" if prev else name
        try:
            yield
        finally:
            self.graph.scope = prev


def graph_dtype(dtype) -> str:
    """The graph's type for a Keras input dtype: integer inputs (token ids: "int64",
    "int32", "uint8"...) are int32 values, everything else float32."""
    name = str(getattr(dtype, "name", dtype) or "float32")
    return "int32" if name.startswith(("int", "uint")) else "float32"


@contextlib.contextmanager
def tracing(trace: Trace):
    _active.append(trace)
    try:
        yield trace
    finally:
        _active.pop()


def current() -> Trace:
    if not _active:
        raise RuntimeError("model variables can only be used symbolically while a model is traced")
    return _active[-1]
