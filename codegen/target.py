"""The host target: triple, CPU name and features, and a fresh TargetMachine."""
from __future__ import annotations

import functools

import llvmlite
import llvmlite.binding as llvm


@functools.cache
def _init() -> None:
    # llvm.initialize() is gone in llvmlite >= 0.45 (it raises); these two suffice.
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.cache
def host() -> tuple[str, str, str]:
    """(triple, cpu name, feature string) of this machine."""
    _init()
    return llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def target_machine(opt: int = 3):
    """A new TargetMachine for the host (MCJIT takes ownership of the one it gets)."""
    triple, cpu, features = host()
    target = llvm.Target.from_triple(triple)
    return target.create_target_machine(cpu=cpu, features=features, opt=opt, jit=True)


def fingerprint() -> str:
    """What compiled code depends on besides its IR: for cache keys."""
    triple, cpu, features = host()
    return f"{triple}|{cpu}|{features}|llvmlite {llvmlite.__version__}"
