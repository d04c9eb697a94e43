"""The benchmark suite: every peer on every workload, each in its own process.

    python examples/benchmarks/run.py [--workloads W1,W5] [--peers kcompile,jax-jit] [--json out.json]

Prints, per workload, the median time per step of each peer and its ratio to
kcompile measured in the same run (above 1: kcompile is faster), then
kcompile's compile times (cold, and warm from the disk cache) and peak memory.
Peers that are not installed are skipped with a note.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from workloads import WORKLOADS, flops  # noqa: E402

DEFAULT_PEERS = ["kcompile", "kcompile-1t", "kcompile-reference", "numpy", "torch-eager-1t",
                 "torch-eager-2t", "torch-compile", "jax-jit", "keras3", "onnxruntime"]


def measure(peer, workload, steps, env=None):
    out = subprocess.run([sys.executable, os.path.join(HERE, "measure.py"), peer, workload,
                          "--steps", str(steps)], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=900)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"skipped": f"failed: {(out.stderr.strip().splitlines() or ['?'])[-1][:120]}"}
    return json.loads(lines[-1])


def compile_times():
    """kcompile W1 (train, eval and predict together): cold compile, then from the cache."""
    code = ("import time, sys; sys.path.insert(0, %r); from peers import _kcompile_model; "
            "from workloads import WORKLOADS, data; w = WORKLOADS['W1']; x, y = data(w); "
            "m = _kcompile_model(w, 'native', None); t = time.perf_counter(); "
            "m.train_on_batch(x, y); print(time.perf_counter() - t, m.compile_time)") % HERE
    with tempfile.TemporaryDirectory() as d:
        res = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**os.environ, "KCOMPILE_CACHE_DIR": d}, cwd=HERE)
            first, comp = map(float, out.stdout.split())
            res.append((first, comp))
    return {"cold_first_step_s": res[0][0], "cold_compile_s": res[0][1],
            "warm_first_step_s": res[1][0], "warm_compile_s": res[1][1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--peers", default=",".join(DEFAULT_PEERS))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    names = []
    for wname in args.workloads.split(","):
        # "W2" names both of its measurements (W2a, W2b)
        group = [n for n in WORKLOADS if n == wname or (n[:-1] == wname and n[-1] in "ab")]
        if not group:
            ap.error(f"unknown workload {wname!r}; the workloads are {', '.join(WORKLOADS)}")
        names += group
    results = {}
    for wname in names:
        w = WORKLOADS[wname]
        results[wname] = {p: measure(p, wname, args.steps) for p in args.peers.split(",")}
        base = results[wname].get("kcompile", {}).get("median_s")
        print(f"\n{wname}  {w['title']}  ({flops(w) / 1e6:.1f} MFLOP per step)")
        print(f"  {'peer':<20}{'median':>12}{'min':>12}{'GFLOP/s':>10}{'vs kcompile':>13}{'peak RSS':>11}")
        for p, r in results[wname].items():
            if "skipped" in r:
                print(f"  {p:<20}  skipped: {r['skipped']}")
                continue
            ratio = f"{r['median_s'] / base:.2f}x" if base else "-"
            print(f"  {p:<20}{r['median_s'] * 1e3:>10.3f}ms{r['min_s'] * 1e3:>10.3f}ms"
                  f"{flops(w) / r['median_s'] / 1e9:>10.1f}{ratio:>13}{r['maxrss_mb']:>9.0f}MB")
    if "kcompile" in args.peers:
        ct = compile_times()
        results["compile"] = ct
        print(f"\ncompile W1 (train+eval+predict): cold {ct['cold_compile_s'] * 1e3:.0f} ms, "
              f"from cache {ct['warm_compile_s'] * 1e3:.1f} ms "
              f"(first step incl. tracing: {ct['cold_first_step_s'] * 1e3:.0f} / "
              f"{ct['warm_first_step_s'] * 1e3:.0f} ms)")
    print("\nratios: a peer's median over kcompile's (above 1: kcompile is faster)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
