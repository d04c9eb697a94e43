"""One compiled step for every length of a model's variable axis.

A model whose inputs have one axis declared None (time steps, token counts) is
traced at a capacity L (the longest length seen, rounded up to a power of two,
at least 8) and its graphs are rewritten by ir/passes/bind_length.py so that the
number of real steps T is a run-time input: scans run T steps, reductions over
the axis count T positions. A batch is padded to L (repeating its last step, so
padded ids and values are real ones) and the outputs that keep the axis are cut
back to T. A longer batch grows L and compiles again; shorter ones reuse the step.

Where the rewrite does not apply (the axis is flattened into a Dense, sliced,
reversed by a gather, ...) or the model has several variable axes, this module
returns None and the trainer compiles one step per concrete length, as before.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir.passes.bind_length import STEPS, NotPositionWise, bind_length
from .data import _variable_output_axes

MIN_CAPACITY = 8


def capacity(length: int) -> int:
    """The smallest power of two >= length (and >= MIN_CAPACITY)."""
    return max(MIN_CAPACITY, 1 << (int(length) - 1).bit_length())


def variable_axis(model):
    """(input index, axis of the batch array) of the model's one None axis, else None."""
    axes = [(i, j + 1) for i, (shape, _) in enumerate(model.input_specs)
            for j, d in enumerate(shape) if d is None]
    return axes[0] if len(axes) == 1 else None


class LengthBinding:
    """Applied by the trainer to each entry graph traced at capacity L."""

    def __init__(self, index: int, axis: int, length: int):
        self.variable = {f"x{index}": axis}
        self.length = length
        self.outputs: dict[str, dict[str, tuple[int, int]]] = {}

    def bind(self, graph, entry: str):
        g, outputs = bind_length(graph, self.variable, self.length)
        for name, (axis, inner) in outputs.items():
            if axis < 1 or inner != 1:
                raise NotPositionWise(f"output {name!r} holds the variable axis merged with "
                                      f"another one")
        self.outputs[entry] = {name: axis for name, (axis, _) in outputs.items()}
        return g


class PaddedExecutable:
    """An executable compiled at capacity L run on batches of any length T <= L."""

    def __init__(self, exe, binding: LengthBinding, index: int, axis: int, target_axes):
        self.exe, self.binding = exe, binding
        self.index, self.axis, self.target_axes = index, axis, target_axes
        self.length = binding.length
        self.compile_seconds = getattr(exe, "compile_seconds", 0.0)

    def __getattr__(self, name):          # graphs, entries, backend...: the compiled step's
        return getattr(self.exe, name)

    def run(self, entry: str, feeds: dict) -> dict:
        T = feeds[f"x{self.index}"].shape[self.axis]
        if T > self.length:
            raise ValueError(f"a batch of {T} steps does not fit the compiled capacity "
                             f"{self.length}")
        feeds = dict(feeds)
        feeds[f"x{self.index}"] = pad_steps(feeds[f"x{self.index}"], self.axis, self.length)
        for name, axes in self.target_axes.items():
            if name in feeds:
                for ax in axes:
                    feeds[name] = pad_steps(feeds[name], ax, self.length)
        feeds[STEPS] = np.asarray(T, np.int32)
        out = self.exe.run(entry, feeds)
        for name, ax in self.binding.outputs.get(entry, {}).items():
            if name in out:
                out[name] = np.ascontiguousarray(np.take(out[name], np.arange(T), axis=ax))
        return out


def pad_steps(a, axis, length):
    """`a` padded along `axis` to `length` by repeating its last step."""
    a = np.asarray(a)
    n = a.shape[axis]
    if n == length:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, length - n)
    return np.pad(a, widths, mode="edge")


def padded_executable(model, batch_size, y_specs):
    """The capacity-L executable for this batch shape, or None (compile per length)."""
    where = variable_axis(model)
    seen = getattr(model, "_data_input_shapes", None)
    if where is None or not seen:
        return None
    if getattr(model, "_padded_for", None) is not model._executables:
        model._padded_for, model._padded, model._padded_fails = model._executables, {}, False
    if model._padded_fails:
        return None
    index, axis = where
    T = seen[index][axis - 1]
    L = capacity(max(T, getattr(model, "_padded_capacity", 0)))
    target_axes, cap_specs = {}, None
    if y_specs is not None:
        variable = _variable_output_axes(model, len(y_specs))
        cap_specs = []
        for i, ((shape, dtype), axes) in enumerate(zip(y_specs, variable)):
            axes = [j for j in axes if j < len(shape)]
            if any(shape[j] != T for j in axes):
                return None             # targets whose variable axis is another length
            cap_specs.append((tuple(L if j in axes else d for j, d in enumerate(shape)), dtype))
            target_axes[f"y{i}"] = [j + 1 for j in axes]
    key = (batch_size, L, tuple(cap_specs) if cap_specs else None)
    if key in model._padded:
        return model._padded[key]
    if cap_specs is None:               # predict: any executable of this capacity has it
        for (bs, cap, _), exe in model._padded.items():
            if bs == batch_size and cap == L:
                return exe
    binding = LengthBinding(index, axis, L)
    table, pipelines, shapes = model._executables, model._pipelines, seen
    capacity_shapes = [tuple(s) for s in seen]
    capacity_shapes[index] = tuple(L if j == axis - 1 else d
                                   for j, d in enumerate(capacity_shapes[index]))
    # The capacity step is compiled apart: its signature must not stand for a batch
    # whose length is exactly L in the per-length tables.
    model._executables, model._pipelines, model._data_input_shapes = {}, {}, capacity_shapes
    model._length_binding = binding
    try:
        exe = model._executable(batch_size, cap_specs)
    except NotPositionWise:
        model._padded_fails = True
        return None
    finally:
        model._executables, model._pipelines, model._data_input_shapes = table, pipelines, shapes
        model._length_binding = None
    padded = PaddedExecutable(exe, binding, index, axis, target_axes)
    model._padded_capacity = L
    model._padded[key] = padded
    return padded
