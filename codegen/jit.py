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
        objs, texts = [obj], [text]
    else:
        results: list = [None] * len(parts)
        errors: list = []
        todo = sorted(range(len(parts)), key=lambda i: -parts[i].cost)   # costliest first
        with_sync = todo[-1]        # the sync code (~15 ms) goes with the cheapest
        lock = threading.Lock()

        def work():
            while not errors:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                try:
                    p = parts[i]
                    results[i] = _compile(p.text, i == with_sync, keep_ir, own_context=True,
                                          level=COLD_LEVEL if p.cold else HOT_LEVEL)
                except BaseException as e:       # raised again on the calling thread
                    errors.append(e)
        workers = [threading.Thread(target=work, name=f"kcompile-llvm-{n}", daemon=True)
                   for n in range(1, min(threads, len(parts)))]
        for w in workers:
            w.start()
        work()
        for w in workers:
            w.join()
        if errors:
            raise errors[0]
        objs, texts = [r[0] for r in results], [r[1] for r in results]
        timings = {k: sum(r[2][k] for r in results) for k in results[0][2]}
    timings["total"] = time.perf_counter() - t0
    if _debug() >= 1:
        print(f"[kcompile] llvm {len(parts)} partition(s) on {min(threads, len(parts))} "
              f"thread(s): parse {1e3*timings['parse']:.1f} ms, O3 {1e3*timings['optimize']:.1f} "
              f"ms, codegen {1e3*timings['codegen']:.1f} ms (summed), wall "
              f"{1e3*timings['total']:.1f} ms")
    return ObjectCode(pack(objs), texts if keep_ir else [], timings)


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
