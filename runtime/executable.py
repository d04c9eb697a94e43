"""Executables: run a model's entry points (train_step, eval_step, predict).

Both backends take the same entry graphs and the same `State`:
  NativeExecutable     the graphs compiled to one native module; a step copies
                       the batch into the arena, makes one native call and
                       reads the outputs back
  ReferenceExecutable  the same graphs on the numpy reference interpreter
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import time

import numpy as np

from ..ir.graph import Graph
from ..ir.interpret import interpret
from ..ir.passes import simplify
from ..ir.passes.fuse import fuse
from ..ir.passes.plan_memory import plan_memory
from ..codegen import cache, sync
from ..codegen.jit import assembly, build_object, load_object
from ..codegen.module import Entry, build_module, scratch_bytes
from ..codegen.target import fingerprint
from ..ir.fingerprint import graph_fingerprint
from ..ir.graph import TensorType
from .arena import aligned_bytes, view
from .state import State
from .threads import WorkerPool

_STEP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


def _debug() -> int:
    return int(os.environ.get("KC_DEBUG", "0") or 0)


def check_input_bounds(g: Graph, feeds: dict) -> None:
    """Reject ids outside [0, bound) before any step runs (they would index a table)."""
    for name, bound in g.input_bounds.items():
        arr = feeds.get(name)
        if arr is None:
            continue
        arr = np.asarray(arr)
        bad = (arr < 0) | (arr >= bound) | (arr != np.trunc(arr))
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            v = arr[pos]
            shown = int(v) if np.isfinite(v) and v == np.trunc(v) else float(v)
            raise ValueError(f"input {name!r}: id {shown} at position {pos} is out of "
                             f"range: ids must be integers in [0, {bound})")


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
        check_input_bounds(g, feeds)
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
    """Entry graphs compiled into one native module (or loaded from the disk cache)."""
    backend = "native"

    def __init__(self, graphs: dict[str, Graph], state: State, use_cache: bool = True,
                 nthreads: int = 1):
        t0 = time.perf_counter()
        self.graphs = graphs
        self.state = state
        self.nthreads = nthreads
        self._entries = None
        self._llvm_ir = None
        key = _cache_key(graphs, state, nthreads)
        hit = cache.load(key) if use_cache else None
        self.from_cache = hit is not None
        if hit is not None:
            obj, meta = hit
        else:
            code = build_object(self.llvm_ir)
            obj, meta = code.obj, self._metadata()
            self.llvm_timings = code.timings
            if use_cache:
                cache.store(key, obj, meta)
        self._code = load_object(obj, [*meta["entries"], *sync.SYMBOLS])
        self.work = aligned_bytes(max(meta["work_bytes"], 64))
        self._sync = aligned_bytes(128)
        addresses = self._code.addresses
        if nthreads > 1:
            self._pool = WorkerPool(self._code, nthreads, state.address, self.work.ctypes.data)
            self._fns = {n: functools.partial(self._pool.run, addresses[n]) for n in meta["entries"]}
        else:
            self._pool = None
            args = (state.address, self.work.ctypes.data, 0, self._sync.ctypes.data)
            self._fns = {n: functools.partial(_STEP(addresses[n]), *args) for n in meta["entries"]}
        self._inputs = {n: {k: self._view(v) for k, v in e["inputs"].items()}
                        for n, e in meta["entries"].items()}
        self._outputs = {n: {k: self._view(v) for k, v in e["outputs"].items()}
                         for n, e in meta["entries"].items()}
        self.compile_seconds = time.perf_counter() - t0

    # -- the compiler's products, built on demand (a cached executable skips them) --------
    @property
    def entries(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = {}
            for name, g in self.graphs.items():
                g = simplify(g)
                fg = fuse(g)
                plan = plan_memory(fg, self.state.offsets,
                                   lambda k, g=g: scratch_bytes(g, k, self.nthreads))
                self._entries[name] = Entry(name, fg, plan)
                if _debug() >= 2:
                    print(f"[kcompile] {name}: {len(g)} values, {len(fg.kernels)} kernels, "
                          f"arena {plan.work_bytes} bytes\n{fg}")
        return self._entries

    @property
    def llvm_ir(self) -> str:
        if self._llvm_ir is None:
            self._llvm_ir = str(build_module(list(self.entries.values()), self.nthreads))
        return self._llvm_ir

    def assembly(self) -> str:
        return assembly(self.llvm_ir)

    @property
    def compiled(self):
        return self     # compatibility: exe.compiled.assembly()

    def _metadata(self) -> dict:
        def describe(g, plan, v):
            loc = plan.locations[v]
            t = g.type(v)
            if loc.region == "const":
                return ["const", g.nodes[v].value.tolist(), list(t.shape), t.dtype]
            return [loc.region, loc.offset, list(t.shape), t.dtype]
        meta = {"work_bytes": max([e.plan.work_bytes for e in self.entries.values()] + [64]),
                "entries": {}}
        for name, e in self.entries.items():
            g = e.fused.graph
            meta["entries"][name] = {
                "inputs": {g.nodes[v].name: describe(g, e.plan, v) for v in _io_leaves(g)},
                "outputs": {k: describe(g, e.plan, v) for k, v in g.outputs.items()}}
        return meta

    def _view(self, desc):
        region, where, shape, dtype = desc
        t = TensorType(tuple(shape), dtype)
        if region == "const":
            return np.asarray(where, dtype=dtype).reshape(shape)
        return view(self.work if region == "work" else self.state.buffer, where, t)

    def run(self, entry: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = self.graphs[entry]
        if g.input_bounds:
            check_input_bounds(g, feeds)
        for name, dst in self._inputs[entry].items():
            np.copyto(dst, feeds[name], casting="unsafe")
        self._fns[entry]()
        # Copies: the arena is reused by the next step (a 0-d result as a numpy scalar).
        return {k: v[()] if v.ndim == 0 else v.copy() for k, v in self._outputs[entry].items()}


def _cache_key(graphs: dict[str, Graph], state: State, nthreads: int) -> str:
    h = hashlib.sha256()
    h.update(f"threads={nthreads}".encode())
    h.update(cache.compiler_version().encode())
    h.update(fingerprint().encode())
    h.update(repr(sorted((n, state.offsets[n], state.types[n].shape, state.types[n].dtype)
                         for n in state.offsets)).encode())
    for name in sorted(graphs):
        h.update(name.encode())
        h.update(graph_fingerprint(graphs[name]).encode())
    return h.hexdigest()


def make_executable(graphs: dict[str, Graph], state: State, backend: str = "native",
                    nthreads: int = 1):
    if backend == "native":
        return NativeExecutable(graphs, state, nthreads=nthreads)
    if backend == "reference":
        return ReferenceExecutable(graphs, state)
    raise ValueError(f"unknown backend {backend!r}; expected 'native' or 'reference'")
