"""The one JIT path: verify, optimize at O3 for the host, emit an object, load it.

Facts this relies on (llvmlite >= 0.45): the new pass manager only; a
ModulePassManager must not be run twice (it aborts), so each module gets a
fresh one; invalid IR can crash the optimizer, so `verify()` comes first.
Objects are loaded with ORC (LLJIT), the same way whether they were just
compiled or read from the disk cache, so a cached model needs no LLVM pass.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import llvmlite.binding as llvm

from . import mathfns, sync
from .target import _init, target_machine


def _debug() -> int:
    return int(os.environ.get("KC_DEBUG", "0") or 0)


@dataclass
class ObjectCode:
    obj: bytes
    optimized_ir: str = ""
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadedCode:
    addresses: dict[str, int]
    _keepalive: tuple = ()


def optimize(mod, tm, level: int = 3) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_interleaving = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def parse(llvm_ir: str):
    """Parse module text, link the vector math in, and verify."""
    _init()
    mod = llvm.parse_assembly(llvm_ir)
    mod.link_in(llvm.parse_assembly(mathfns.IR))
    mod.link_in(llvm.parse_assembly(sync.ir_text()))
    mod.verify()
    return mod


def build_object(llvm_ir: str, keep_ir: bool = False) -> ObjectCode:
    t0 = time.perf_counter()
    mod = parse(llvm_ir)
    t1 = time.perf_counter()
    tm = target_machine()
    mod.triple = llvm.get_process_triple()
    mod.data_layout = str(tm.target_data)
    optimize(mod, tm)
    t2 = time.perf_counter()
    obj = tm.emit_object(mod)
    t3 = time.perf_counter()
    if _debug() >= 1:
        print(f"[kcompile] llvm parse {1e3*(t1-t0):.1f} ms, O3 {1e3*(t2-t1):.1f} ms, "
              f"codegen {1e3*(t3-t2):.1f} ms")
    if _debug() >= 3:
        print(str(mod))
    if _debug() >= 4:
        print(tm.emit_assembly(mod))
    return ObjectCode(obj, str(mod) if keep_ir else "",
                      {"parse": t1 - t0, "optimize": t2 - t1, "codegen": t3 - t2})


def load_object(obj: bytes, symbols: list[str], name: str = "kcompile") -> LoadedCode:
    _init()
    lljit = llvm.create_lljit_compiler(target_machine())
    builder = llvm.JITLibraryBuilder().add_object_img(obj).add_current_process()
    for s in symbols:
        builder = builder.export_symbol(s)
    lib = builder.link(lljit, name)
    addresses = {s: lib[s] for s in symbols}
    missing = [s for s, a in addresses.items() if not a]
    if missing:
        raise RuntimeError(f"compiled module lacks symbols {missing}")
    return LoadedCode(addresses, (lljit, lib))


def emit_assembly(optimized_ir: str) -> str:
    """Host assembly of a module already optimized (`build_object(..., keep_ir=True)`'s
    text): the code generator alone, no pass runs again."""
    _init()
    return target_machine().emit_assembly(llvm.parse_assembly(optimized_ir))

