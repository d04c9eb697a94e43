"""The compile pipeline: one program's entry graphs, stage by stage, each stage kept.

    pipeline = Pipeline({"train_step": Traced(g, rule), "predict": Traced(p)}, state)
    pipeline.trace("train_step")      the graph as traced from the layers, before any pass
    pipeline.grad("train_step")       after autodiff (entries traced with an update rule)
    pipeline.update("train_step")     with the optimizer's update rule appended
    pipeline.optimized(entry)         after simplify: the graph that is fused and compiled
    pipeline.fused(entry)             the kernels (fuse, merge_rows, merge_updates, schedule)
    pipeline.memory(entry)            the kernels with their arena plan (a codegen Entry)
    pipeline.llvm()                   the LLVM module of every entry, as text (one function
                                      per distinct kernel body, shared by the entries)
    pipeline.object()                 the module optimized at O3 for the host (its cold kernels
                                      at O1: codegen/cold.py), as object code (compiled in
                                      partitions on several cores, the big kernels while the
                                      rest is lowered: codegen/jit.py)
    pipeline.executable()             the program loaded to run (native or reference)

Every stage is computed at most once, on first use, and kept: the executable is
built from these objects and inspection (kcompile/inspect) reads the same ones,
so what is shown is what runs. An executable whose object comes from the disk
cache skips every stage after `update` until something asks for it.

Stages that depend on the thread count (memory and after) belong to one count;
`with_threads(n)` gives the pipeline of the same program for n threads, sharing
the stages before them. This is the one place that decides the default count.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable

from ..ir.cost import barrier_estimate, flops, leaf_bytes, scan_step_flops, updated_bytes
from ..ir.fingerprint import graph_fingerprint
from ..ir.graph import Graph
from ..ir.passes import autodiff, optimizer_step, simplify
from ..ir.passes.fuse import fuse
from ..ir.passes.reach import upstream
from ..ir.passes.plan_memory import plan_memory
from ..codegen import cache, io_pointers, jit, tuning
from ..codegen.module import Entry, build_module, module_text, scratch_bytes, step_barriers
from ..codegen.lower.matmul import product_splits_along_k
from ..codegen.target import fingerprint
from .state import State
from .threads import available_cpus, default_threads

#: the stages in order; `executable` is the last
STAGES = ("trace", "grad", "update", "optimized", "fused", "memory", "llvm", "object",
          "executable")


@dataclass(frozen=True)
class Traced:
    """One entry point as traced: its graph before any pass and, for a training step,
    the update rule `optimizer_step` appends after the gradients (the optimizer's) and
    a pass to run on the result (the trainer's variable-length binding, which masks the
    backward pass's sums over padded steps)."""
    graph: Graph
    update_rule: Callable | None = None
    after_update: Callable | None = None


@dataclass(frozen=True)
class LLVMProgram:
    """The LLVM module of all entries. Its text only: the llvmlite module, many times
    larger, is not kept."""
    text: str
    kernel_symbols: dict[str, str]      # "entry.kernel" -> the function it calls
    cold_functions: frozenset = frozenset()     # compiled at O1 (codegen/cold.py)

    def __str__(self):
        return self.text


@dataclass(frozen=True)
class Compiled:
    """The object code of a program and the place of each entry's inputs and outputs."""
    obj: bytes
    layout: dict
    from_cache: bool
    timings: dict


def _debug() -> int:
    return int(os.environ.get("KC_DEBUG", "0") or 0)


def _kept(table: dict, key, compute):
    """table[key], computed on first use."""
    if key not in table:
        table[key] = compute()
    return table[key]


def _read_by_own_rows(g: Graph, v: int, nthreads: int, live: set) -> bool:
    """Whether every live product reading weight v takes it as the B of a product split
    along K (codegen/lower/matmul.py): each thread then reads the rows of v it updates
    (the update splits them the same way), and no update crosses between cores. (The
    first layer's input gradient, dead code until simplify, does not count.)"""
    products = [u for u in g.users(v) if g.nodes[u].op == "matmul" and u in live]

    def reads_as_b(u):          # (v @ v would read it as A too)
        a, b = g.nodes[u].inputs
        return b == v != a
    return bool(products) and all(reads_as_b(u) and product_splits_along_k(g, u, nthreads)
                                  for u in products)


def _busy_key(key: str) -> str:
    """The cache key of the marker of a program form whose thread count was chosen
    while the host's other cores were taken."""
    return hashlib.sha256(f"chosen-busy:{key}".encode()).hexdigest()


class Pipeline:
    """The stages of one program (a set of entry points over one State), each computed
    once on first use and kept."""

    def __init__(self, entries: dict[str, Traced | Graph], state: State,
                 nthreads: int | None = None, backend: str = "native", use_cache: bool = True):
        if backend not in ("native", "reference"):
            raise ValueError(f"unknown backend {backend!r}; expected 'native' or 'reference'")
        self.traced = {name: t if isinstance(t, Traced) else Traced(t)
                       for name, t in entries.items()}
        self.state = state
        self.backend = backend
        self.use_cache = use_cache
        self._nthreads = nthreads
        # the thread count was measured on a host whose other cores were taken (its
        # compiled form is stored with a marker: chosen again at the next load)
        self._chosen_busy = False
        self._graphs: dict = {}         # (stage, entry) -> graph or fused graph: any thread count
        self._stages: dict = {}         # stage (, entry) -> product for this thread count
        self._siblings: dict[int, Pipeline] = {}

    @property
    def entries(self) -> list[str]:
        return list(self.traced)

    def _traced(self, entry) -> Traced:
        if entry not in self.traced:
            raise KeyError(f"no entry {entry!r} in this program; it has {', '.join(self.traced)}")
        return self.traced[entry]

    def differentiated(self, entry) -> bool:
        return self._traced(entry).update_rule is not None

    # -- graph stages (the same for any thread count) --------------------------------------
    def trace(self, entry) -> Graph:
        return self._traced(entry).graph

    def grad(self, entry) -> Graph:
        if not self.differentiated(entry):
            raise ValueError(f"entry {entry!r} is not differentiated: it has no grad stage")
        # The stable log-softmax rewrite of simplify must happen before differentiation.
        return _kept(self._graphs, ("grad", entry),
                     lambda: autodiff(simplify(self.trace(entry))))

    def update(self, entry) -> Graph:
        rule = self._traced(entry).update_rule
        if rule is None:
            raise ValueError(f"entry {entry!r} is not differentiated: it has no update stage")
        finish = self._traced(entry).after_update or (lambda g: g)
        return _kept(self._graphs, ("update", entry),
                     lambda: finish(optimizer_step(self.grad(entry), rule)))

    def graph(self, entry) -> Graph:
        """The entry's whole program before optimization: update for a training step,
        trace otherwise (what the cache key and the thread count are computed from)."""
        return self.update(entry) if self.differentiated(entry) else self.trace(entry)

    def optimized(self, entry) -> Graph:
        return _kept(self._graphs, ("optimized", entry), lambda: simplify(self.graph(entry)))

    def fused(self, entry):
        return _kept(self._graphs, ("fused", entry), lambda: fuse(self.optimized(entry)))

    # -- the thread count ------------------------------------------------------------------
    @property
    def nthreads(self) -> int:
        if self._nthreads is None:
            graphs = [self.graph(e) for e in self.traced]
            work = (max(flops(g) for g in graphs), [f for g in graphs for f in scan_step_flops(g)],
                    max(leaf_bytes(g) for g in graphs), max(barrier_estimate(g) for g in graphs))
            n, stale = default_threads(*work, measure=False), None
            if n is None and self.use_cache and self.backend == "native":
                n, stale = self._cached_thread_count()
            if n is None:
                seen = {}
                cpus = available_cpus()
                moved = max(updated_bytes(g, lambda v, g=g, live=upstream(g.dag, g.roots()):
                                          _read_by_own_rows(g, v, cpus, live))
                            for g in graphs)
                # the host's costs decide: counted on the fused steps, the barriers are
                # those the step makes, not one per op (W5's training step: 4, not 15)
                barriers = max(step_barriers(self.fused(e), cpus) for e in self.traced)
                n = default_threads(*work[:3], barriers, moved_bytes=moved, seen=seen)
                self._chosen_busy = seen.get("busy", False)
            self._nthreads = n
            if stale is not None and not self._chosen_busy:
                self._forget_stale_form(stale)
        return self._nthreads

    def _cached_thread_count(self) -> tuple[int | None, str | None]:
        """(thread count, None) of the one compiled form of this program the disk cache
        holds, if it holds one: a cached program loads without measuring the host
        (runtime/barrier_probe.py), so its first step stays a few milliseconds. Not a
        form whose count was chosen while other processes held the cores (a busy
        marker beside it): (None, its key), the choice made again, and the form it
        chose replaced once a choice is made on a host with free cores (a batch-1
        predict kept on one thread by a moment's load is 4x slower for good otherwise)."""
        found = []
        for n in sorted({1, available_cpus()}):
            self._nthreads = n
            if cache.contains(self.cache_key()):
                found.append(n)
        key = None
        if len(found) == 1:
            self._nthreads = found[0]
            key = self.cache_key()
        self._nthreads = None
        if key is not None and cache.contains(_busy_key(key)):
            return None, key
        return (found[0] if len(found) == 1 else None), None

    def _forget_stale_form(self, stale: str):
        """After a choice made again on a host with free cores: the form chosen while
        they were taken (cache key `stale`) goes, unless it is the one chosen now, and
        so does its marker."""
        cache.remove(_busy_key(stale))
        if stale != self.cache_key():
            cache.remove(stale)

    def with_threads(self, nthreads: int) -> "Pipeline":
        """This program for `nthreads` threads: the graph stages are shared."""
        if nthreads == self.nthreads:
            return self
        if nthreads not in self._siblings:
            other = Pipeline(self.traced, self.state, nthreads, self.backend, self.use_cache)
            other._graphs = self._graphs
            self._siblings[nthreads] = other
        return self._siblings[nthreads]

    # -- stages for one thread count -------------------------------------------------------
    def memory(self, entry) -> Entry:
        """The fused graph with its memory plan: what codegen compiles for the entry."""
        def compute():
            fg = self.fused(entry)
            n = self.nthreads
            plan = plan_memory(fg, self.state.offsets, lambda k: scratch_bytes(fg.graph, k, n))
            if _debug() >= 2:
                print(f"[kcompile] {entry}: {len(fg.graph)} values, {len(fg.kernels)} kernels, "
                      f"arena {plan.work_bytes} bytes\n{fg}")
            return Entry(entry, fg, plan)
        return _kept(self._stages, ("memory", entry), compute)

    def llvm(self) -> LLVMProgram:
        return _kept(self._stages, "llvm", self._build_llvm)

    def _build_llvm(self, on_kernel=None) -> LLVMProgram:
        module = build_module([self.memory(e) for e in self.traced], self.nthreads,
                              bind_io=True, on_kernel=on_kernel)
        return LLVMProgram(module_text(module), module.kernel_symbols,
                           frozenset(f for f, cold in module.cold_functions.items() if cold))

    def llvm_ir(self) -> str:
        return self.llvm().text

    def object(self) -> jit.ObjectCode:
        """The module after LLVM's O3 passes (its text kept) and as object code."""
        return _kept(self._stages, "object", self._compile_object)

    def _compile_object(self) -> jit.ObjectCode:
        threads = jit.compile_threads()
        if threads == 1 or "llvm" in self._stages:
            return jit.build_object(self.llvm_ir(), keep_ir=True, threads=threads,
                                    cold=self.llvm().cold_functions)
        # The big kernels compile on the other cores while the rest is lowered.
        stream = jit.Stream(threads, keep_ir=True)
        try:
            program = self._build_llvm(on_kernel=stream.kernel)
        except BaseException:
            stream.abort()
            raise
        self._stages["llvm"] = program
        return stream.finish(program.text, program.cold_functions)

    def optimized_llvm_ir(self) -> str:
        return self.object().optimized_ir

    def assembly(self) -> str:
        """The host assembly of the optimized module."""
        return _kept(self._stages, "asm",
                     lambda: jit.emit_assembly(self.object().optimized_parts))

    def compiled(self) -> Compiled:
        """The object code to load: from the disk cache when it holds this program
        (then no stage after `update` runs), else compiled and stored there."""
        def compute():
            key = self.cache_key()
            hit = cache.load(key) if self.use_cache else None
            if hit is not None:
                return Compiled(hit[0], hit[1], True, {})
            code = self.object()
            layout = self.layout()
            if self.use_cache:
                cache.store(key, code.obj, layout)
                if self._chosen_busy:
                    cache.store(_busy_key(key), b"", {})
            return Compiled(code.obj, layout, False, code.timings)
        return _kept(self._stages, "compiled", compute)

    def executable(self):
        def compute():
            from .executable import NativeExecutable, ReferenceExecutable
            if self.backend == "reference":
                return ReferenceExecutable(self)
            return NativeExecutable(self)
        return _kept(self._stages, "executable", compute)

    # -- what the executable needs besides the code ----------------------------------------
    def layout(self) -> dict:
        """The arena size and, per entry, where each input and output lives."""
        def describe(g, plan, v):
            loc = plan.locations[v]
            t = g.type(v)
            if loc.region == "const":
                return ["const", g.nodes[v].value.tolist(), list(t.shape), t.dtype]
            return [loc.region, loc.offset, list(t.shape), t.dtype]
        entries = [self.memory(e) for e in self.traced]
        slots = io_pointers.slots(entries)      # (build_module(bind_io=True) reads them)
        layout = {"work_bytes": max(slots.work_bytes, 64), "entries": {}}
        for e in entries:
            g = e.fused.graph
            io = [v for v in g.leaves() if g.nodes[v].role in ("input", "target")]
            layout["entries"][e.name] = {
                "inputs": {g.nodes[v].name: describe(g, e.plan, v) for v in io},
                "outputs": {k: describe(g, e.plan, v) for k, v in g.outputs.items()},
                "pointer_slots": {"inputs": {g.nodes[v].name: off
                                             for v, off in slots.inputs[e.name].items()},
                                  "outputs": slots.outputs[e.name]}}
        return layout

    def cache_key(self) -> str:
        h = hashlib.sha256()
        h.update(f"threads={self.nthreads}".encode())
        h.update(self._program_fingerprint().encode())
        return h.hexdigest()

    def _program_fingerprint(self) -> str:
        """Everything the key holds besides the thread count (computed once: the key
        is asked for each thread count the cache may hold)."""
        def compute():
            h = hashlib.sha256()
            h.update(cache.compiler_version().encode())
            h.update(fingerprint().encode())
            h.update(tuning.key_salt().encode())    # tuned and constant tilings differ
            st = self.state
            h.update(repr(sorted((n, st.offsets[n], st.types[n].shape, st.types[n].dtype)
                                 for n in st.offsets)).encode())
            for name in sorted(self.traced):
                h.update(name.encode())
                h.update(graph_fingerprint(self.graph(name)).encode())
            return h.hexdigest()
        return _kept(self._graphs, "program fingerprint", compute)
