"""Ahead-of-time objects: a module compiled for a chosen CPU as position-independent
code, to be linked into a shared library or a static archive (model export).

The JIT path (jit.py) compiles for this machine and loads in-process; here the same
module text is optimized at O3 for `AotTarget`, every function but the exported ones
is made internal (a program may link two exported models: only prefixed names
leave the object), and the object is returned as bytes for the system linker.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm

from .jit import optimize, parse
from .target import _init, _this_machine

# The vector class of the CPUs --cpu accepts by name: what the lowering assumes
# (vector width) and what the library checks at load time.
_AVX2 = "+avx,+avx2,+fma,+bmi,+bmi2,+popcnt,+sse4.2"
_AVX512 = _AVX2 + ",+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512cd"
NAMED_CPUS = {
    "x86-64-v2": "+popcnt,+sse4.2",
    "x86-64-v3": _AVX2,
    "x86-64-v4": _AVX512,
    **{c: _AVX2 for c in ("haswell", "broadwell", "skylake", "alderlake", "znver1", "znver2",
                          "znver3")},
    **{c: _AVX512 for c in ("skylake-avx512", "cascadelake", "cooperlake", "icelake-client",
                            "icelake-server", "tigerlake", "rocketlake", "sapphirerapids",
                            "znver4")},
}
GENERIC = "x86-64-v2"       # SSE4.2: any x86-64 CPU made since about 2009

# Features the library checks with the C compiler's __builtin_cpu_supports before
# running code compiled for them (names both GCC and Clang know).
CHECKABLE = ("sse4.2", "popcnt", "avx", "avx2", "fma", "bmi", "bmi2", "avx512f", "avx512bw",
             "avx512vl", "avx512dq", "avx512cd", "avx512vnni", "avx512vbmi", "avx512ifma")


@dataclass(frozen=True)
class AotTarget:
    cpu: str
    features: str       # LLVM feature string ("+avx2,..."); the host's own for "host"

    @property
    def required(self) -> list[str]:
        """The features of CHECKABLE this code may use."""
        have = {f[1:] for f in self.features.split(",") if f.startswith("+")}
        return [f for f in CHECKABLE if f in have]


def aot_target(cpu: str) -> AotTarget:
    """The target of `--cpu`: 'host' (this machine, fastest here), 'generic'
    (x86-64-v2, runs on any recent x86-64), or a CPU name of NAMED_CPUS."""
    triple, host_cpu, host_features = _this_machine()
    if not triple.startswith("x86_64") and cpu not in ("host",):
        raise ValueError(f"cpu={cpu!r}: only cpu='host' is supported on {triple}")
    if cpu == "host":
        return AotTarget(host_cpu, host_features)
    if cpu == "generic":
        cpu = GENERIC
    if cpu not in NAMED_CPUS:
        raise ValueError(f"unknown cpu {cpu!r}; expected 'host', 'generic' or one of "
                         f"{', '.join(sorted(NAMED_CPUS))}")
    return AotTarget(cpu, NAMED_CPUS[cpu])


def _machine(target: AotTarget):
    _init()
    t = llvm.Target.from_triple(_this_machine()[0])
    return t.create_target_machine(cpu=target.cpu, features=target.features, opt=3,
                                   reloc="pic", codemodel="default")


def compile_object(llvm_ir: str, target: AotTarget, exported: dict[str, str]) -> tuple[bytes, list]:
    """(object bytes, external symbols it calls) of the module for `target`.

    exported: the module's function name -> the name it has in the object; every
    other function defined in the module becomes internal.
    """
    if "+fma" not in target.features.split(","):
        # Without FMA hardware llvm.fma is a call of libm's exact fmaf per lane (the
        # x86-64-v2 seed MLP: 156 us a prediction instead of 4): the kernels' multiply-adds
        # may round twice, so they become fmuladd (fused where the CPU can).
        for quote in ("", '"'):
            llvm_ir = llvm_ir.replace(f"@{quote}llvm.fma.", f"@{quote}llvm.fmuladd.")
    mod = parse(llvm_ir)
    tm = _machine(target)
    mod.triple = _this_machine()[0]
    mod.data_layout = str(tm.target_data)
    for fn in mod.functions:
        if fn.is_declaration:
            continue
        if fn.name in exported:
            fn.name = exported[fn.name]
            fn.visibility = llvm.Visibility.hidden     # seen by the library's C layer only
        else:
            fn.linkage = llvm.Linkage.internal
    optimize(mod, tm)
    external = sorted(fn.name for fn in mod.functions
                      if fn.is_declaration and not fn.name.startswith("llvm."))
    return tm.emit_object(mod), external
