"""Executables: run a model's entry points (train_step, eval_step, predict).

Both backends are built from a compile pipeline (runtime/pipeline.py) over one `State`:
  NativeExecutable     the pipeline's object code, loaded; a step copies the batch
                       into the arena, makes one native call and reads the outputs back
  ReferenceExecutable  the pipeline's optimized graphs on the numpy reference interpreter
Either also takes plain entry graphs (a pipeline is made for them).
"""
from __future__ import annotations

import ctypes
import functools
import time

import numpy as np

from ..ir.graph import Graph, TensorType
from ..ir.interpret import interpret
from ..codegen import sync
from ..codegen.jit import load_object
from .arena import aligned_bytes, view
from .pipeline import Pipeline
from .state import State
from .threads import WorkerPool

_STEP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


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
            if _role(g, name) == "target":
                raise ValueError(f"target {name!r}: label {shown} at position {pos} is out of "
                                 f"range: class labels must be integers in [0, {bound})")
            raise ValueError(f"input {name!r}: id {shown} at position {pos} is out of "
                             f"range: ids must be integers in [0, {bound})")


def _role(g: Graph, name: str):
    return next((g.nodes[v].role for v in g.leaves() if g.nodes[v].name == name), None)


def _pipeline(program, state, nthreads, backend, use_cache=True) -> Pipeline:
    if isinstance(program, Pipeline):
        return program
    return Pipeline(program, state, nthreads, backend, use_cache)


class ReferenceExecutable:
    backend = "reference"

    def __init__(self, program: Pipeline | dict[str, Graph], state: State | None = None):
        self.pipeline = _pipeline(program, state, 1, "reference")
        self.graphs = {name: self.pipeline.optimized(name) for name in self.pipeline.entries}
        self.state = self.pipeline.state
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
    """A pipeline's object code, loaded (from the disk cache when it holds it)."""
    backend = "native"

    def __init__(self, program: Pipeline | dict[str, Graph], state: State | None = None,
                 use_cache: bool = True, nthreads: int = 1):
        t0 = time.perf_counter()
        self.pipeline = p = _pipeline(program, state, nthreads, "native", use_cache)
        self.graphs = {name: p.graph(name) for name in p.entries}
        self.state = p.state
        self.nthreads = p.nthreads
        code = p.compiled()
        self.from_cache = code.from_cache
        self.llvm_timings = code.timings
        meta = code.layout
        self._code = load_object(code.obj, [*meta["entries"], *sync.SYMBOLS])
        self.work = aligned_bytes(max(meta["work_bytes"], 64))
        self._sync = aligned_bytes(128)
        addresses = self._code.addresses
        if self.nthreads > 1:
            self._pool = WorkerPool(self._code, self.nthreads, self.state.address,
                                    self.work.ctypes.data)
            self._fns = {n: functools.partial(self._pool.run, addresses[n]) for n in meta["entries"]}
        else:
            self._pool = None
            args = (self.state.address, self.work.ctypes.data, 0, self._sync.ctypes.data)
            self._fns = {n: functools.partial(_STEP(addresses[n]), *args) for n in meta["entries"]}
        self._inputs = {n: {k: self._view(v) for k, v in e["inputs"].items()}
                        for n, e in meta["entries"].items()}
        self._outputs = {n: {k: self._view(v) for k, v in e["outputs"].items()}
                         for n, e in meta["entries"].items()}
        # The pointer slots of bound inputs and outputs (codegen/io_pointers.py), as
        # indices into the arena read as 8-byte words: zero (the arena's own place)
        # but during a call that binds the caller's arrays (kcompile/batch_calls.py).
        self.pointers = self.work[:len(self.work) // 8 * 8].view(np.uint64)
        self._slots = {n: {side: {k: off // 8 for k, off in e["pointer_slots"][side].items()}
                           for side in ("inputs", "outputs")}
                       for n, e in meta["entries"].items()}
        self.compile_seconds = time.perf_counter() - t0

    # -- the compiler's products: the pipeline's stages (built on demand after a cache hit)
    @property
    def entries(self):
        return {name: self.pipeline.memory(name) for name in self.pipeline.entries}

    @property
    def llvm_ir(self) -> str:
        return self.pipeline.llvm_ir()

    def assembly(self) -> str:
        return self.pipeline.assembly()

    @property
    def compiled(self):
        return self     # compatibility: exe.compiled.assembly()

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


def make_executable(graphs: dict[str, Graph], state: State, backend: str = "native",
                    nthreads: int = 1):
    return Pipeline(graphs, state, nthreads, backend).executable()
