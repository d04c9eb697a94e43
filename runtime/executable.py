"""Executables: run a model's entry points (train_step, eval_step, predict).

Both backends take the same entry graphs and the same `State`:
  NativeExecutable     the graphs compiled to one native module; a step copies
                       the batch into the arena, makes one native call and
                       reads the outputs back
  ReferenceExecutable  the same graphs on the numpy reference interpreter
"""
from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from ir.graph import Graph
from ir.interpret import interpret
from ir.passes import simplify
from ir.passes.fuse import fuse
from ir.passes.plan_memory import plan_memory
from codegen.jit import compile_ir
from codegen.module import Entry, build_module, scratch_bytes
from .arena import aligned_bytes, view
from .state import State

_STEP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _debug() -> int:
    return int(os.environ.get("KC_DEBUG", "0") or 0)


def _io_leaves(g: Graph):
    return [v for v in g.leaves() if g.nodes[v].role in ("input", "target")]


class ReferenceExecutable:
    backend = "reference"

    def __init__(self, graphs: dict[str, Graph], state: State):
        self.graphs = {name: simplify(g) for name, g in graphs.items()}
        self.state = state
        self.compile_seconds = 0.0

    def run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = self.graphs[entry]
        values = dict(feeds)
        for v in g.leaves():
            n = g.nodes[v]
            if n.role in ("param", "state"):
                values[n.name] = self.state[n.name]
        outputs, updates = interpret(g, values)
        for name, value in updates.items():
            self.state.assign(name, value)
        return outputs


class NativeExecutable:
    backend = "native"

    def __init__(self, graphs: dict[str, Graph], state: State):
        t0 = time.perf_counter()
        self.state = state
        entries = []
        for name, g in graphs.items():
            g = simplify(g)
            fg = fuse(g)
            plan = plan_memory(fg, state.offsets, lambda k, g=g: scratch_bytes(g, k))
            entries.append(Entry(name, fg, plan))
            if _debug() >= 2:
                print(f"[kcompile] {name}: {len(g)} values, {len(fg.kernels)} kernels, "
                      f"arena {plan.work_bytes} bytes\n{fg}")
        self.entries = {e.name: e for e in entries}
        self.module = build_module(entries)
        self.llvm_ir = str(self.module)
        self.compiled = compile_ir(self.llvm_ir, [e.name for e in entries])
        self.work = aligned_bytes(max([e.plan.work_bytes for e in entries] + [64]))
        self._fns = {n: _STEP(a) for n, a in self.compiled.addresses.items()}
        self._args = (state.address, self.work.ctypes.data)
        self._inputs = {}
        self._outputs = {}
        for e in entries:
            g = e.fused.graph
            locs = e.plan.locations
            self._inputs[e.name] = {g.nodes[v].name: self._view(locs[v], g.type(v)) for v in _io_leaves(g)}
            self._outputs[e.name] = {k: self._view(locs[v], g.type(v)) for k, v in g.outputs.items()}
        self.compile_seconds = time.perf_counter() - t0

    def _view(self, loc, type):
        if loc.region == "work":
            return view(self.work, loc.offset, type)
        if loc.region == "state":
            return view(self.state.buffer, loc.offset, type)
        raise ValueError("an entry output cannot be a module constant")

    def run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, dst in self._inputs[entry].items():
            np.copyto(dst, feeds[name], casting="unsafe")
        self._fns[entry](*self._args)
        return {k: v.copy() for k, v in self._outputs[entry].items()}


def make_executable(graphs: dict[str, Graph], state: State, backend: str = "native"):
    if backend == "native":
        return NativeExecutable(graphs, state)
    if backend == "reference":
        return ReferenceExecutable(graphs, state)
    raise ValueError(f"unknown backend {backend!r}; expected 'native' or 'reference'")
