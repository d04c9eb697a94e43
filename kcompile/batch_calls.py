"""The fast path of the calls on one batch: predict_on_batch, train_on_batch,
test_on_batch and predict of one batch.

The first call with a given signature (the arrays' types, shapes and dtypes) takes
the full path: the data is validated and adapted, the model traced and compiled.
It leaves behind a `PreparedCall`: the entry's native function and the arena
slots its inputs and outputs live in. A later call with the same signature is
then: one check that the model kept its executables and its variables their
places, the id/label bounds check where the graph has one, the inputs, the native
call and the outputs. No data source, batch, callback or dictionary of feeds is made.

Inputs and outputs of at least IN_PLACE_BYTES are bound (codegen/io_pointers.py):
an input that is already float32 (the slot's dtype), C-contiguous and aligned is
read where it is, and an output is written straight into the array returned,
made fresh for each call (the caller keeps it; the next call does not touch it).
Smaller ones, and inputs of another dtype or layout, are copied (once, converting
on the way): for them a copy costs less than finding the array's address.

A signature is prepared only where that copy is all the full path would do with
the data: plain numpy arrays whose dtype is the arena's, or a float array for a
float32 slot, or integers for an int32 slot whose range the graph checks.
"""
from __future__ import annotations

import ctypes

import numpy as np

from kcompile.runtime.executable import NativeExecutable, check_input_bounds
from . import distribute
from .data import row_mask
from .variables import placements

# Inputs and outputs from this size on are bound rather than copied: finding an
# array's address costs ~1 us, about a 16 KiB copy.
IN_PLACE_BYTES = 16384


def signature(arrays) -> tuple | None:
    """The key of a call on these arrays, or None when one is not a plain ndarray."""
    key = []
    for a in arrays:
        if type(a) is not np.ndarray:
            return None
        key.append(a.shape)
        key.append(a.dtype)
    return tuple(key)


# A writable, C-contiguous array's address is _addressof(_as_bytes(a)), through the
# buffer protocol: ~0.3 us, where `a.ctypes.data` makes a ctypes helper object (~1 us).
_addressof, _as_bytes = ctypes.addressof, ctypes.c_char.from_buffer


class PreparedCall:
    """One entry point of one native executable, bound to arrays of one signature."""
    __slots__ = ("table", "placed", "fn", "names", "shapes", "dtypes", "inputs", "outputs",
                 "bounded", "pointers", "bound_outputs", "ones", "fixed", "fixed_pointers", "cleared",
                 "logs")

    def __init__(self, model, exe, entry, names, arrays):
        inputs = exe._inputs[entry]
        self.table = model._executables
        self.placed = placements()
        self.fn = exe._fns[entry]
        self.names = names
        self.shapes = tuple(a.shape for a in arrays)
        self.dtypes = tuple(a.dtype for a in arrays)
        self.logs = None            # what the caller makes of the outputs (kcompile/trainer.py)
        slots = exe._slots[entry]
        self.pointers = exe.pointers
        # (arena slot, pointer slot index or -1) per input: an input that is float32
        # already, and large, is read where the caller keeps it when its layout allows
        self.inputs = []
        for name, a in zip(names, arrays):
            slot = inputs[name]
            bindable = (name in slots["inputs"] and a.dtype == np.float32 == slot.dtype
                        and slot.nbytes >= IN_PLACE_BYTES)
            self.inputs.append((slot, slots["inputs"][name] if bindable else -1))
        # Every row real, every weight 1: what the full path feeds a whole batch, read
        # where it is kept through the pointer slots (else copied in).
        self.ones = row_mask(len(arrays[0]), len(arrays[0]))
        fixed = [k for k in ("mask", "sample_weight") if k in inputs]
        self.fixed_pointers = [(slots["inputs"][k], self.ones.ctypes.data) for k in fixed
                               if k in slots["inputs"]]
        self.fixed = [inputs[k] for k in fixed if k not in slots["inputs"]]
        self.outputs = list(exe._outputs[entry].items())
        g = exe.graphs[entry]
        self.bounded = g if g.input_bounds else None
        # (name, slot index, shape, dtype) of the outputs written into the returned array
        self.bound_outputs = [(k, slots["outputs"][k], v.shape, v.dtype) for k, v in self.outputs
                              if k in slots["outputs"] and v.nbytes >= IN_PLACE_BYTES]
        bound = {k for k, *_ in self.bound_outputs}
        self.outputs = [(k, v) for k, v in self.outputs if k not in bound]
        # the pointer slots a call may set, zeroed after it (the other callers of the
        # entry copy into the arena)
        self.cleared = [index for _, index in self.inputs if index >= 0] + \
            [i for i, _ in self.fixed_pointers] + [i for _, i, _, _ in self.bound_outputs]

    @classmethod
    def make(cls, model, exe, entry, arrays, names):
        """A PreparedCall, or None where the full path does more than copy the data."""
        if type(exe) is not NativeExecutable:
            return None
        inputs = exe._inputs[entry]
        expected = set(names) | {"mask", "sample_weight"}
        if not set(inputs) <= expected or not set(names) <= set(inputs):
            return None
        bounds = exe.graphs[entry].input_bounds
        for name, a in zip(names, arrays):
            slot = inputs[name]
            if a.shape != slot.shape:
                return None
            same = a.dtype == slot.dtype
            widened = slot.dtype == np.float32 and a.dtype.kind == "f"
            checked = slot.dtype == np.int32 and a.dtype.kind in "iu" and name in bounds
            if not (same or widened or checked):
                return None
        return cls(model, exe, entry, names, arrays)

    @property
    def bound_inputs(self) -> list[tuple[int, int]]:
        """(position, pointer slot index) of the inputs that may be read in place."""
        return [(n, index) for n, (_, index) in enumerate(self.inputs) if index >= 0]

    def accepts(self, arrays) -> bool:
        """Whether these arrays have the signature this call was prepared for."""
        for a, shape, dtype in zip(arrays, self.shapes, self.dtypes):
            if type(a) is not np.ndarray or a.shape != shape or a.dtype != dtype:
                return False
        return True

    def current(self, model) -> bool:
        """Whether the model still runs this executable over variables where they were."""
        return self.table is model._executables and self.placed == placements()

    def run(self, arrays) -> dict:
        if self.bounded is not None:
            check_input_bounds(self.bounded, dict(zip(self.names, arrays)))
        pointers = self.pointers
        for (slot, index), a in zip(self.inputs, arrays):
            if index >= 0:
                flags = a.flags
                if flags.c_contiguous and flags.writeable and flags.aligned:
                    pointers[index] = _addressof(_as_bytes(a))
                    continue
            slot[...] = a           # (a float64 input converted on the way)
        for slot in self.fixed:
            slot[...] = self.ones
        for index, ones in self.fixed_pointers:
            pointers[index] = ones
        results = {}
        for name, index, shape, dtype in self.bound_outputs:
            out = results[name] = np.empty(shape, dtype)
            pointers[index] = _addressof(_as_bytes(out))
        try:
            self.fn()
        finally:
            for index in self.cleared:
                pointers[index] = 0
        # Copies: the arena is reused by the next step (a 0-d result as a numpy scalar).
        for k, v in self.outputs:
            results[k] = v[()] if v.ndim == 0 else v.copy()
        return results


def lookup(model, kind, key):
    """The prepared call for (kind, signature), if there is one still current."""
    calls = model.__dict__.get("_batch_calls")
    if calls is None or key is None or distribute.active() is not None:
        return None         # (across processes a step also averages the gradients)
    call = calls.get((kind, key))
    if call is None or not call.current(model):
        return None
    return call


def remember(model, kind, key, exe, entry, arrays, names, logs=None):
    """Prepare (kind, signature) for the next call, after a full-path call; `logs`:
    what the caller makes of its outputs, kept with it."""
    if key is None or distribute.active() is not None:
        return
    call = PreparedCall.make(model, exe, entry, arrays, names)
    calls = model.__dict__.setdefault("_batch_calls", {})
    if call is None:
        calls.pop((kind, key), None)
    else:
        call.logs = logs
        calls[(kind, key)] = call


def find(model, kind, arrays):
    """The prepared call of `kind` for these arrays, if there is one still current:
    first the one the last call of this kind took, then by signature."""
    last = model.__dict__.get("_last_batch_call")
    if last is not None:
        call = last.get(kind)
        if call is not None and call.accepts(arrays) and call.current(model) \
                and distribute.active() is None:
            return call
    call = lookup(model, kind, signature(arrays))
    if call is not None:
        model.__dict__.setdefault("_last_batch_call", {})[kind] = call
    return call


class LoopStep:
    """The steps of a fit/evaluate/predict loop over in-memory arrays, on one entry of
    a native executable, without a feeds dictionary or a batch's arrays. A batch of
    consecutive rows (not shuffled, not padded) is read where the arrays keep it: each
    input's pointer slot is set to the batch's first row, and cleared after the step.
    A shuffled batch's rows are gathered straight into the arena. Inputs that cannot
    be read in place (another dtype or layout) are copied; a padded batch takes the
    full path."""
    __slots__ = ("fn", "pointers", "moves", "fixed", "gathers", "copies", "outputs")

    def __init__(self, exe, entry, moves, copies):
        self.fn = exe._fns[entry]
        self.pointers = exe.pointers
        # (pointer slot index, the array's address, bytes per row (0: one array for
        # every step), the array, its arena slot) of the inputs read in place
        self.moves = moves
        self.fixed = [(index, base) for index, base, row, _, _ in moves if not row]
        self.gathers = [(a, slot) for _, _, row, a, slot in moves if row]
        # (arena slot, array, whether it is a batch's rows) of the inputs copied
        self.copies = copies
        self.outputs = list(exe._outputs[entry].items())

    @classmethod
    def make(cls, exe, entry, source, size, targets):
        """A LoopStep, or None where the full path must run (a reference executable,
        ids or labels to check per batch, an input the arrays do not give)."""
        if type(exe) is not NativeExecutable or exe.graphs[entry].input_bounds:
            return None
        rows = {f"x{i}": a for i, a in enumerate(source.xs)}
        fixed = {}
        if targets:
            rows.update({f"y{i}": a for i, a in enumerate(source.ys)})
            if source.sw is not None:
                rows["sample_weight"] = source.sw
            else:
                fixed["sample_weight"] = row_mask(size, size)
            fixed["mask"] = row_mask(size, size)     # every row real: no padding here
        slots, pointer_slots = exe._inputs[entry], exe._slots[entry]["inputs"]
        fixed = {k: v for k, v in fixed.items() if k in slots}
        if set(rows) | set(fixed) != set(slots):
            return None
        moves, copies = [], []
        for name, a in [*rows.items(), *fixed.items()]:
            slot, per_row = slots[name], name in rows
            if per_row and (a.shape[1:] != slot.shape[1:] or len(a) < size):
                return None
            if (name in pointer_slots and a.dtype == slot.dtype and a.flags.c_contiguous
                    and a.flags.aligned):
                row = a.strides[0] if per_row and a.ndim else 0
                moves.append((pointer_slots[name], a.ctypes.data, row, a, slot))
            else:
                copies.append((slot, a, per_row))
        return cls(exe, entry, moves, copies)

    def run(self, rows) -> dict:
        """The step on `rows` of the arrays: a slice of a batch size, or their indices."""
        pointers = self.pointers
        if type(rows) is slice:
            start = rows.start
            for index, base, row, _, _ in self.moves:
                pointers[index] = base + start * row
        else:
            for index, base in self.fixed:
                pointers[index] = base
            # (same dtype: nothing to convert). The rows are a permutation's, in range:
            # mode="clip" skips the bounds check that makes `take` into `out` buffer
            # the result first (a 128-row batch of 784 floats: 26 -> 9 us).
            for a, slot in self.gathers:
                a.take(rows, 0, slot, mode="clip")
        for slot, a, per_row in self.copies:
            np.copyto(slot, a[rows] if per_row else a, casting="unsafe")
        try:
            self.fn()
        finally:
            for index, _, _, _, _ in self.moves:
                pointers[index] = 0
        return {k: v[()] if v.ndim == 0 else v.copy() for k, v in self.outputs}
