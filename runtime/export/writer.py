"""Write an export directory: libmodel.so, libmodel.a, model.h, README.md and, with a
separate weights file, model.weights.

The model's object code (codegen/aot.py), an object holding the weights and the C
entry layer (runtime.c behind a generated preamble) are compiled and linked by the
system C compiler. The library needs libc only (libm when the code calls a libm
function, pthread when it runs on several threads).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import struct
import subprocess
import tempfile
import zlib

from ...ir.graph import Graph
from .header import model_header, runtime_preamble
from .program import ExportPlan, compile_plan, weights_state
from .readme import readme

RUNTIME_C = pathlib.Path(__file__).with_name("runtime.c")
MAGIC = b"KCWEIGHT"
FORMAT_VERSION = 1
HEADER_BYTES = 64

# What the compiled code may call besides LLVM intrinsics: libc, and libm's float math.
LIBC = {"sched_yield", "usleep", "syscall", "memcpy", "memmove", "memset"}
LIBM_PREFIXES = ("exp", "log", "pow", "sin", "cos", "tan", "atan", "asin", "acos", "sinh",
                 "cosh", "tanh", "erf", "sqrt", "fmod", "round", "floor", "ceil", "trunc",
                 "fmin", "fmax", "rint", "nearbyint", "cbrt", "hypot", "ldexp", "frexp")

FILES = ("libmodel.so", "libmodel.a", "model.h", "README.md", "model.weights")


def weights_blob(payload: bytes, model_id: int) -> bytes:
    """The weights with their 64-byte header: magic, version, header size, model id,
    payload size, CRC-32 of the payload (little-endian)."""
    head = MAGIC + struct.pack("<IIQQQ", FORMAT_VERSION, HEADER_BYTES, model_id, len(payload),
                               zlib.crc32(payload))
    return head.ljust(HEADER_BYTES, b"\0") + payload


def weights_assembly(symbol: str, blob_path: pathlib.Path) -> str:
    """An assembler file defining `symbol` as the blob's bytes, read-only, 64-byte aligned
    and hidden (the library's C layer reads it; nothing outside sees it). The assembler
    copies the file in: no pass over the bytes in Python or LLVM, whatever their size."""
    return (f'\t.section .rodata\n\t.balign 64\n\t.globl {symbol}\n\t.hidden {symbol}\n'
            f'\t.type {symbol}, @object\n{symbol}:\n\t.incbin "{blob_path}"\n'
            f'\t.size {symbol}, . - {symbol}\n\t.section .note.GNU-stack,"",@progbits\n')


def c_compiler() -> str:
    for cand in ([os.environ["CC"]] if os.environ.get("CC") else []) + ["cc", "gcc", "clang"]:
        path = shutil.which(cand.split()[0])
        if path:
            return path
    raise RuntimeError("exporting a native library needs a C compiler and linker: none of "
                       "$CC, cc, gcc, clang is on PATH")


def _check_calls(external: list[str]) -> None:
    """Refuse code calling anything but libc and libm's float math."""
    other = [s for s in external
             if s not in LIBC and not s.rstrip("f").startswith(LIBM_PREFIXES)]
    if other:
        raise RuntimeError(f"the compiled model calls {', '.join(other)}, which an exported "
                           f"library cannot provide")


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd)}):\n{res.stderr.strip()}")


def write_export(plan: ExportPlan, graphs: dict[int, Graph], values: dict,
                 directory) -> pathlib.Path:
    """Compile `graphs` (batch size -> predict graph) with the weights `values` into
    `directory`; the directory's path."""
    out = pathlib.Path(directory)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    cc = c_compiler()
    state = weights_state(list(graphs.values()), values)
    obj, external = compile_plan(plan, graphs, state)
    _check_calls(external)
    blob = weights_blob(state.buffer.tobytes(), plan.model_id)
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (out / name).unlink(missing_ok=True)
    (out / "model.h").write_text(model_header(plan))
    with tempfile.TemporaryDirectory(prefix="kcompile-export-") as tmp:
        build = pathlib.Path(tmp)
        objects = [build / "runtime.o", build / "model.o"]
        objects[1].write_bytes(obj)
        if plan.embedded:
            (build / "weights.bin").write_bytes(blob)
            asm = build / "weights.S"
            asm.write_text(weights_assembly(plan.symbols["weights"], build / "weights.bin"))
            objects.append(build / "weights.o")
            _run([cc, "-c", str(asm), "-o", str(objects[2])], "assembling the weights")
        source = build / "model_runtime.c"
        source.write_text(runtime_preamble(plan) + RUNTIME_C.read_text())
        _run([cc, "-std=gnu11", "-O2", "-fPIC", "-fvisibility=hidden", "-Wall",
              f"-I{out}", "-c", str(source), "-o", str(objects[0])], "compiling the C layer")
        threads = ["-pthread"] if plan.threads > 1 else []
        # libm as needed: LLVM's code generator may call it (fmaf) where the module did not.
        _run([cc, "-shared", "-o", str(out / "libmodel.so"), *map(str, objects),
              "-Wl,-z,noexecstack", "-Wl,--no-undefined", "-Wl,--as-needed", "-lm", *threads],
             "linking libmodel.so")
        ar = shutil.which("ar") or shutil.which("gcc-ar")
        if ar is None:
            raise RuntimeError("writing libmodel.a needs `ar` (binutils) on PATH")
        _run([ar, "rcs", str(out / "libmodel.a"), *map(str, objects)], "writing libmodel.a")
    if not plan.embedded:
        (out / "model.weights").write_bytes(blob)
    (out / "README.md").write_text(readme(plan))
    return out
