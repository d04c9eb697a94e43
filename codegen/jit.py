"""The one JIT path: verify, optimize at O3 for the host, emit an object, load it.

Facts this relies on (llvmlite >= 0.45): the new pass manager only; a
ModulePassManager must not be run twice (it aborts), so each module gets a
fresh one; invalid IR can crash the optimizer, so `verify()` comes first.
Objects are loaded with ORC (LLJIT), the same way whether they were just
compiled or read from the disk cache, so a cached model needs no LLVM pass.

On a machine with several cores a module is cut into partitions
(codegen/partition.py) compiled at the same time, each on its own thread with
its own LLVM context and TargetMachine; the objects, packed into one byte
string, are linked together when loaded. llvmlite serializes every call into
LLVM behind one lock (for the shared global context); the two long calls here,
the optimizer and the code generator, touch only the partition's own context,
module and TargetMachine, so they are made without that lock (the GIL is
released during them): LLVM compiles independent contexts on parallel threads.
A program's big kernels start compiling while the rest is still being lowered
(Stream), and its cold kernels (codegen/cold.py) are compiled apart at O1.
"""
from __future__ import annotations

import ctypes
import os
import struct
import threading
import time
from dataclasses import dataclass, field

import llvmlite.binding as llvm
from llvmlite.binding import ffi

from . import mathfns, partition, sync
from .cold import COLD_LEVEL, HOT_LEVEL
from .target import _init, target_machine


def _debug() -> int:
    return int(os.environ.get("KC_DEBUG", "0") or 0)


@dataclass
class ObjectCode:
    obj: bytes
    optimized_parts: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def optimized_ir(self) -> str:
        """The optimized module, the partitions' texts one after another."""
        return "\n\n".join(self.optimized_parts)


@dataclass
class LoadedCode:
    addresses: dict[str, int]
    _keepalive: tuple = ()


def compile_threads() -> int:
    """How many threads compile one module: the cores this process may run on
    (KCOMPILE_COMPILE_THREADS overrides; 1 compiles the module whole)."""
    env = os.environ.get("KCOMPILE_COMPILE_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"KCOMPILE_COMPILE_THREADS must be a positive integer, "
                             f"got {env!r}") from None
        if n < 1:
            raise ValueError(f"KCOMPILE_COMPILE_THREADS must be a positive integer, got {n}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _unlocked(name: str):
    """The LLVM C function `name` called without llvmlite's global lock (see the
    module docstring); the locked one if llvmlite's wrapper is not as expected."""
    fn = getattr(ffi.lib, name)
    return getattr(fn, "_cfn", fn)


def _pass_builder(tm, level: int):
    # Each measured against the cheaper choice on W1 (784-512-256-10, Adam): without
    # loop unrolling the GEMM kernels' step took 2.36 ms instead of 2.17, at O2 2.61
    # instead of 2.40 (though each cut compile time by 15-40%).
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_interleaving = True
    pto.loop_unrolling = True
    return llvm.create_pass_builder(tm, pto)


def optimize(mod, tm, level: int = 3, unlocked: bool = False) -> None:
    pb = _pass_builder(tm, level)
    mpm = pb.getModulePassManager()
    if unlocked:
        _unlocked("LLVMPY_RunNewModulePassManager")(mpm, mod, pb)
    else:
        mpm.run(mod, pb)


def _emit_object(tm, mod, unlocked: bool) -> bytes:
    if not unlocked:
        return tm.emit_object(mod)
    with ffi.OutputString() as err:
        buf = _unlocked("LLVMPY_TargetMachineEmitToMemory")(tm, mod, 1, err)
        if not buf:
            raise RuntimeError(str(err))
    try:
        return ctypes.string_at(ffi.lib.LLVMPY_GetBufferStart(buf),
                                ffi.lib.LLVMPY_GetBufferSize(buf))
    finally:
        ffi.lib.LLVMPY_DisposeMemoryBuffer(buf)


def parse(llvm_ir: str, context=None, with_sync: bool = True):
    """Parse module text, link the vector math in (and the thread sync code), and verify."""
    _init()
    mod = llvm.parse_assembly(llvm_ir, context)
    if "@kc_" in llvm_ir or '@"kc_' in llvm_ir:     # a partition may use none of it
        mod.link_in(llvm.parse_assembly(mathfns.IR, context))
    if with_sync:
        mod.link_in(llvm.parse_assembly(sync.ir_text(), context))
    mod.verify()
    return mod


def _compile(llvm_ir: str, with_sync: bool, keep_ir: bool, own_context: bool,
             level: int = HOT_LEVEL):
    """(object, optimized text, timings) of one module, optimized at `level`; on its own
    LLVM context (and without llvmlite's lock around the long calls) when own_context."""
    t0 = time.perf_counter()
    context = llvm.create_context() if own_context else None
    mod = parse(llvm_ir, context, with_sync)
    t1 = time.perf_counter()
    tm = target_machine()
    mod.triple = llvm.get_process_triple()
    mod.data_layout = str(tm.target_data)
    optimize(mod, tm, level, unlocked=own_context)
    t2 = time.perf_counter()
    obj = _emit_object(tm, mod, unlocked=own_context)
    t3 = time.perf_counter()
    if _debug() >= 3:
        print(str(mod))
    if _debug() >= 4:
        print(tm.emit_assembly(mod))
    text = str(mod) if keep_ir else ""
    del mod         # before its context
    return obj, text, {"parse": t1 - t0, "optimize": t2 - t1, "codegen": t3 - t2}


# Partitions per compiling thread: more, smaller partitions even out the threads'
# loads (functions differ in cost per line) for a few milliseconds each. Simulated
# from the functions' own compile times (thread CPU), the busiest of 2 threads against
# half the total: W1 410 / 379 ms at 2 per thread, 405 / 379 at 3; the 10-block deep
# model 487 / 421 at 2, 425 / 421 at 3; 3 cost 0-14 ms more CPU than 2, 6 cost 14-60.
PARTITIONS_PER_THREAD = 3


def build_object(llvm_ir: str, keep_ir: bool = False, threads: int = 1,
                 cold: frozenset | set = frozenset()) -> ObjectCode:
    """The module's object code; with threads > 1, compiled in partitions on that many
    threads at once and returned as packed objects (load_object links them). The
    functions named in `cold` are compiled apart at COLD_LEVEL (codegen/cold.py)."""
    t0 = time.perf_counter()
    parts = partition.split_cold(llvm_ir, threads * PARTITIONS_PER_THREAD if threads > 1 else 1,
                                 cold)
    if len(parts) == 1:
        obj, text, timings = _compile(parts[0].text, True, keep_ir, own_context=False)
        return _object_code([(obj, text, timings)], keep_ir, t0, 1)
    pool = _Pool(threads, keep_ir)
    pool.add_last(parts)
    return _object_code(pool.finish(), keep_ir, t0, min(threads, len(parts)))


def _object_code(results, keep_ir, t0, threads) -> ObjectCode:
    timings = {k: sum(r[2][k] for r in results) for k in results[0][2]}
    timings["total"] = time.perf_counter() - t0
    if _debug() >= 1:
        print(f"[kcompile] llvm {len(results)} partition(s) on {threads} "
              f"thread(s): parse {1e3*timings['parse']:.1f} ms, O3 {1e3*timings['optimize']:.1f} "
              f"ms, codegen {1e3*timings['codegen']:.1f} ms (summed), wall "
              f"{1e3*timings['total']:.1f} ms")
    return ObjectCode(pack([r[0] for r in results]), [r[1] for r in results] if keep_ir else [],
                      timings)


class _Pool:
    """Partitions compiled on `threads` - 1 worker threads, started at once, and on the
    calling thread from `finish` on; the costliest waiting partition first."""

    def __init__(self, threads: int, keep_ir: bool):
        self.keep_ir = keep_ir
        self.cv = threading.Condition()
        self.todo: list = []            # (cost, index, part, with_sync), costliest first
        self.results: list = []
        self.errors: list = []
        self.closed = False
        self.workers = [threading.Thread(target=self._work, name=f"kcompile-llvm-{n}",
                                         daemon=True) for n in range(1, threads)]
        for w in self.workers:
            w.start()

    def add(self, part: partition.Part, with_sync: bool = False) -> None:
        with self.cv:
            self.results.append(None)
            self.todo.append((part.cost, len(self.results) - 1, part, with_sync))
            self.todo.sort(key=lambda t: -t[0])
            self.cv.notify()

    def add_last(self, parts: list) -> None:
        """The remaining partitions; the sync code (~15 ms) goes with the cheapest."""
        if not parts:
            return
        cheapest = min(range(len(parts)), key=lambda i: parts[i].cost)
        for i, p in enumerate(parts):
            self.add(p, with_sync=i == cheapest)

    def _work(self) -> None:
        while True:
            with self.cv:
                while not self.todo and not self.closed and not self.errors:
                    self.cv.wait()
                if self.errors or not self.todo:
                    return
                _, i, p, with_sync = self.todo.pop(0)
            try:
                self.results[i] = _compile(p.text, with_sync, self.keep_ir, own_context=True,
                                           level=COLD_LEVEL if p.cold else HOT_LEVEL)
            except BaseException as e:       # raised again on the calling thread
                with self.cv:
                    self.errors.append(e)
                    self.cv.notify_all()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def finish(self) -> list:
        """The results of every partition added, in order, once all are compiled."""
        self.close()
        self._work()
        for w in self.workers:
            w.join()
        if self.errors:
            raise self.errors[0]
        return self.results


class Stream:
    """A module compiled while it is being built: each hot kernel of STREAM_WEIGHT or
    more is handed over as soon as it is lowered (`kernel`, build_module's on_kernel)
    and compiled on the other cores while the calling thread lowers the rest (LLVM runs
    without the GIL); `finish` splits what remains of the whole module's text (entries,
    small and cold kernels) into partitions and compiles them on every thread.

    W1 on 2 cores: Python lowers for ~75 ms while the other core idled; simulated from
    the threads' CPU times the stream takes ~40 ms off its cold compile (465 ms, not
    ~505), the ideal being half of lowering plus LLVM (~435)."""

    STREAM_WEIGHT = 200         # lines: a GEMM kernel (W1's: 300-550, 60-70 ms each)

    def __init__(self, threads: int, keep_ir: bool = False):
        self.t0 = time.perf_counter()
        self.threads = threads
        self.pool = _Pool(threads, keep_ir)
        self.streamed: set[str] = set()

    def kernel(self, module, fn, cold: bool) -> None:
        """fn: a complete llvmlite Function of module, its text in `printed`; cold ones
        wait (another entry may still find them hot)."""
        f = partition.Function(fn.name, fn.printed.splitlines())
        if cold or f.weight < self.STREAM_WEIGHT:
            return
        self.pool.add(partition.Part(_kernel_module(module, f), False, f.weight))
        self.streamed.add(fn.name)

    def finish(self, module_text: str, cold: frozenset | set = frozenset()) -> ObjectCode:
        # the streamed kernels count among the partitions that even out the threads
        n = max(self.threads, self.threads * PARTITIONS_PER_THREAD - len(self.streamed))
        parts = partition.split_cold(module_text, n, cold, skip=self.streamed)
        self.pool.add_last(parts)
        return _object_code(self.pool.finish(), self.pool.keep_ir, self.t0,
                            min(self.threads, len(self.pool.results)))

    def abort(self) -> None:
        """Stop the workers (the module could not be built): what waits is dropped."""
        with self.pool.cv:
            self.pool.todo.clear()
        self.pool.close()
        for w in self.pool.workers:
            w.join()


def _kernel_module(module, f: partition.Function) -> str:
    """A module defining f (a function of the llvmlite `module`) and declaring what it
    uses of the rest."""
    body = f.definition()
    lines = ['; ModuleID = "%s"' % (module.name,), 'target triple = "%s"' % (module.triple,),
             'target datalayout = "%s"' % (module.data_layout,), '']
    for name in dict.fromkeys(partition.names(body)):
        g = module.globals.get(name)
        if g is None or name == f.name:
            continue
        if getattr(g, "blocks", None):          # a function defined in another partition
            text = getattr(g, "printed", None) or str(g)
            lines.append(partition.Function(name, text.splitlines()).declaration())
        else:                                   # a declaration or a constant
            lines.append(str(g))
    return "\n".join([*lines, "", body, ""])


# Several objects in one byte string (what the disk cache stores and load_object reads).
_PACKED = b"KCOBJS1\n"


def pack(objs: list[bytes]) -> bytes:
    if len(objs) == 1:
        return objs[0]
    return _PACKED + struct.pack("<I", len(objs)) + b"".join(
        struct.pack("<Q", len(o)) + o for o in objs)


def unpack(data: bytes) -> list[bytes]:
    if not data.startswith(_PACKED):
        return [data]
    pos = len(_PACKED)
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    objs = []
    for _ in range(n):
        (size,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + size > len(data):
            raise ValueError("packed object code is truncated")
        objs.append(data[pos:pos + size])
        pos += size
    return objs


def load_object(obj: bytes, symbols: list[str], name: str = "kcompile") -> LoadedCode:
    _init()
    lljit = llvm.create_lljit_compiler(target_machine())
    builder = llvm.JITLibraryBuilder()
    for o in unpack(obj):
        builder = builder.add_object_img(o)
    builder = builder.add_current_process()
    for s in symbols:
        builder = builder.export_symbol(s)
    lib = builder.link(lljit, name)
    addresses = {s: lib[s] for s in symbols}
    missing = [s for s, a in addresses.items() if not a]
    if missing:
        raise RuntimeError(f"compiled module lacks symbols {missing}")
    return LoadedCode(addresses, (lljit, lib))


def emit_assembly(optimized_parts: list[str] | str) -> str:
    """Host assembly of a module already optimized (`build_object(..., keep_ir=True)`'s
    texts, one per partition): the code generator alone, no pass runs again."""
    _init()
    if isinstance(optimized_parts, str):
        optimized_parts = [optimized_parts]
    return "\n".join(target_machine().emit_assembly(llvm.parse_assembly(t))
                     for t in optimized_parts)
