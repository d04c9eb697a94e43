"""The host target: triple, CPU name and features, and a fresh TargetMachine."""
from __future__ import annotations

import contextlib
import functools

import llvmlite
import llvmlite.binding as llvm


@functools.cache
def _init() -> None:
    # llvm.initialize() is gone in llvmlite >= 0.45 (it raises); these two suffice.
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.cache
def _this_machine() -> tuple[str, str, str]:
    _init()
    return llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


_compiling_for: list[tuple[str, str, str]] = []


def host() -> tuple[str, str, str]:
    """(triple, cpu name, feature string) code is generated for: this machine, or the
    CPU of an ahead-of-time build inside `compiling_for`."""
    return _compiling_for[-1] if _compiling_for else _this_machine()


@contextlib.contextmanager
def compiling_for(cpu: str, features: str):
    """Lower code for another CPU of this triple (an exported library): the lowering
    choices that read host() (vector widths) follow it."""
    _compiling_for.append((_this_machine()[0], cpu, features))
    try:
        yield
    finally:
        _compiling_for.pop()


def target_machine(opt: int = 3):
    """A new TargetMachine for the host (MCJIT takes ownership of the one it gets)."""
    triple, cpu, features = host()
    target = llvm.Target.from_triple(triple)
    return target.create_target_machine(cpu=cpu, features=features, opt=opt, jit=True)


def fingerprint() -> str:
    """What compiled code depends on besides its IR: for cache keys."""
    triple, cpu, features = host()
    return f"{triple}|{cpu}|{features}|llvmlite {llvmlite.__version__}"
