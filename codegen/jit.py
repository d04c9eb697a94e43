"""The one JIT path: verify, optimize at O3 for the host, compile with MCJIT.

Facts this relies on (llvmlite >= 0.45): the new pass manager only; a
ModulePassManager must not be run twice (it aborts), so each module gets a
fresh one; invalid IR can crash the optimizer, so `verify()` comes first;
MCJIT takes ownership of its TargetMachine, so each engine gets a new one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import llvmlite.binding as llvm

from . import mathfns
from .target import _init, target_machine


@dataclass
class CompiledModule:
    engine: object
    addresses: dict[str, int]
    llvm_ir: str
    optimized_ir: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    _tm: object = None

    def assembly(self) -> str:
        mod = llvm.parse_assembly(self.optimized_ir)
        return target_machine().emit_assembly(mod)


def optimize(mod, tm, level: int = 3) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_interleaving = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def compile_ir(llvm_ir: str, symbols: list[str]) -> CompiledModule:
    """Compile module text and return the addresses of `symbols`."""
    _init()
    t0 = time.perf_counter()
    mod = llvm.parse_assembly(llvm_ir)
    mod.link_in(llvm.parse_assembly(mathfns.IR))
    mod.verify()
    t1 = time.perf_counter()
    tm = target_machine()
    mod.triple = llvm.get_process_triple()
    mod.data_layout = str(tm.target_data)
    optimize(mod, tm)
    t2 = time.perf_counter()
    optimized = str(mod)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    t3 = time.perf_counter()
    addresses = {s: engine.get_function_address(s) for s in symbols}
    missing = [s for s, a in addresses.items() if not a]
    if missing:
        raise RuntimeError(f"compiled module lacks symbols {missing}")
    if int(os.environ.get("KC_DEBUG", "0") or 0) >= 1:
        print(f"[kcompile] llvm parse {1e3*(t1-t0):.1f} ms, O3 {1e3*(t2-t1):.1f} ms, "
              f"codegen {1e3*(t3-t2):.1f} ms")
    return CompiledModule(engine, addresses, llvm_ir, optimized,
                          {"parse": t1 - t0, "optimize": t2 - t1, "codegen": t3 - t2})
