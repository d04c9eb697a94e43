"""What the figures were measured on: the CPU, the load, and one core's FMA peak."""
from __future__ import annotations

import os
import subprocess


def cpu_line() -> str:
    """`CPU: <model name> (family F model M), N vCPUs, <widest vector FMA>` from /proc/cpuinfo."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return f"CPU: unknown (no /proc/cpuinfo), {os.cpu_count()} vCPUs"
    flags = set(fields.get("flags", "").split())
    isa = "AVX-512" if "avx512f" in flags else "AVX2 + FMA" if {"avx2", "fma"} <= flags else \
        "AVX" if "avx" in flags else "SSE"
    return (f"CPU: {fields.get('model name', '?')} (family {fields.get('cpu family', '?')} "
            f"model {fields.get('model', '?')}), {os.cpu_count()} vCPUs, {isa}")


def load_line() -> str:
    """The load average, as `uptime` shows it: figures from a loaded machine are noisy."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average: unknown"
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} vCPUs"


def peak_gflops(python: str, root: str) -> float:
    """One core's single-precision FMA peak measured by kcompile's probe, in a child process."""
    out = subprocess.run([python, "-c", "from kcompile.inspect import machine_peak; "
                          "print(machine_peak()['gflops'])"], capture_output=True, text=True,
                         cwd=root, timeout=300)
    return float(out.stdout.split()[-1])
