"""The benchmark suite: every peer on every workload, each in its own process.

    python examples/benchmarks/run.py [--workloads W1,W7] [--peers kcompile,jax-jit]
                                      [--peer-python /path/to/python] [--json out.json]

Prints the CPU and the load, then per workload the median time per step of each
peer and its ratio to kcompile measured in the same run (above 1: kcompile is
faster; the kcompile rows go through train_on_batch / predict_on_batch, the
"kcompile-native" rows time the compiled step alone, for diagnosis), then kcompile's compile times (cold, and warm from the disk cache) and
peak memory. kcompile runs in this interpreter; the other peers (PyTorch, JAX,
Keras 3, ONNX Runtime, numpy) in --peer-python (default: this one too), so they
need not be installed beside kcompile. Peers that are not installed there are
skipped with a note.
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
from machine import cpu_line, load_line, peak_gflops  # noqa: E402
from peers import PEERS  # noqa: E402
from workloads import WORKLOADS, flops  # noqa: E402

DEFAULT_PEERS = ["kcompile", "kcompile-1t", "kcompile-reference", "numpy", "torch-eager-1t",
                 "torch-eager-2t", "torch-compile", "jax-jit", "keras3", "onnxruntime"]
# The compiled step alone beside the public call (diagnosis: what the call around it costs)
NATIVE_ROWS = ["kcompile-native", "kcompile-native-1t"]


def measure(peer, workload, steps, python, seconds=2.0):
    python = python if not peer.startswith("kcompile") else sys.executable
    out = subprocess.run([python, os.path.join(HERE, "measure.py"), peer, workload,
                          "--steps", str(steps), "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=900)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"skipped": f"failed: {(out.stderr.strip().splitlines() or ['?'])[-1][:120]}"}
    result = json.loads(lines[-1])
    if "not installed" in result.get("skipped", ""):
        result["skipped"] += f" (in {python})"
    return result


def compile_times(wname):
    """kcompile's first train_on_batch of a workload (train, eval and predict compiled
    together): cold with the disk cache off, then cold into an empty cache, then from it."""
    code = ("import time, sys; sys.path.insert(0, %r); import peers, conv_peers, kcompile; "
            "from workloads import WORKLOADS, data; w = WORKLOADS[%r]; x, y = data(w); "
            "m = conv_peers._compiled(kcompile, w) if w['kind'] == 'convnet' else "
            "peers._kcompile_model(w, 'native', None); t = time.perf_counter(); "
            "m.train_on_batch(x, y); print(time.perf_counter() - t, m.compile_time)") % (HERE, wname)
    env = {k: v for k, v in os.environ.items() if k not in ("KCOMPILE_NO_CACHE", "KCOMPILE_CACHE_DIR")}
    with tempfile.TemporaryDirectory() as d:
        res = {}
        for name, extra in (("cold", {"KCOMPILE_NO_CACHE": "1"}), ("filling", {"KCOMPILE_CACHE_DIR": d}),
                            ("warm", {"KCOMPILE_CACHE_DIR": d})):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**env, **extra}, cwd=HERE, timeout=900)
            if out.returncode != 0:
                return {"failed": (out.stderr.strip().splitlines() or ["?"])[-1][:160]}
            first, comp = map(float, out.stdout.split()[-2:])
            res[f"{name}_first_step_s"], res[f"{name}_compile_s"] = first, comp
    return res


def print_compile(wname, ct):
    what = f"compile {wname} (train+eval+predict)"
    if "failed" in ct:
        print(f"{what}: failed: {ct['failed']}")
        return
    print(f"{what}: cold {ct['cold_compile_s'] * 1e3:.0f} ms (KCOMPILE_NO_CACHE=1), "
          f"from cache {ct['warm_compile_s'] * 1e3:.1f} ms "
          f"(first step incl. tracing: {ct['cold_first_step_s'] * 1e3:.0f} / "
          f"{ct['warm_first_step_s'] * 1e3:.0f} ms)")


def print_table(wname, w, rows, peak):
    # the ratio base: the public call, or the native step where no public call exists
    base_peer = next((p for p in ("kcompile", "kcompile-native") if "median_s" in rows.get(p, {})), None)
    base = rows[base_peer]["median_s"] if base_peer else None
    pct = peak is not None and w["kind"] == "conv"
    print(f"\n{wname}  {w['title']}  ({flops(w) / 1e6:.1f} MFLOP per step)")
    print(f"  {'peer':<20}{'median':>12}{'min':>12}{'GFLOP/s':>10}" + (f"{'%1-core':>9}" if pct else "")
          + f"{'vs ' + (base_peer or 'kcompile'):>22}{'peak RSS':>11}")
    for p, r in rows.items():
        if "skipped" in r:
            print(f"  {p:<20}  skipped: {r['skipped']}")
            continue
        gflops = flops(w) / r["median_s"] / 1e9
        ratio = f"{r['median_s'] / base:.2f}x" if base else "-"
        print(f"  {p:<20}{r['median_s'] * 1e3:>10.3f}ms{r['min_s'] * 1e3:>10.3f}ms{gflops:>10.1f}"
              + (f"{100 * gflops / peak:>8.0f}%" if pct else "")
              + f"{ratio:>22}{r['maxrss_mb']:>9.0f}MB")


def measured_peak():
    """This core's FMA peak as `kcompile profile` measures it (None if that fails)."""
    try:
        return peak_gflops(sys.executable, os.path.dirname(os.path.dirname(HERE)))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--peers", default=",".join(DEFAULT_PEERS))
    ap.add_argument("--steps", type=int, default=200, help="steps timed per peer, at least")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="time each peer's steps for at least this long (medians of "
                         "microsecond steps need thousands of samples)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="the Python interpreter that runs the peers other than kcompile "
                    "(one where PyTorch, JAX, Keras 3, ONNX Runtime are installed)")
    args = ap.parse_args()
    if not os.path.isfile(args.peer_python) or not os.access(args.peer_python, os.X_OK):
        ap.error(f"--peer-python {args.peer_python!r} is not an executable file")
    peers = args.peers.split(",")
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(map(repr, unknown))}; the peers are "
                 f"{', '.join(PEERS)}")
    names = []
    for wname in args.workloads.split(","):
        # "W2" names all of its measurements (W2a, W2b)
        group = [n for n in WORKLOADS if n == wname or (n[:-1] == wname and n[-1] in "abc")]
        if not group:
            ap.error(f"unknown workload {wname!r}; the workloads are {', '.join(WORKLOADS)}")
        names += group
    print(cpu_line())
    print(load_line())
    print(f"kcompile runs in {sys.executable}; the other peers in {args.peer_python}")
    peak = measured_peak() if any(WORKLOADS[n]["kind"] == "conv" for n in names) else None
    if peak:
        print(f"measured FMA peak of one core: {peak:.1f} GFLOP/s (as `kcompile profile` measures it)")
    results = {}
    for wname in names:
        w = WORKLOADS[wname]
        wpeers = list(peers)
        if w["kind"] != "sgemm" and "kcompile" in wpeers and args.peers == ap.get_default("peers"):
            at = wpeers.index("kcompile-1t") + 1 if "kcompile-1t" in wpeers else 1
            wpeers[at:at] = NATIVE_ROWS
        results[wname] = {p: measure(p, wname, args.steps, args.peer_python, args.seconds) for p in wpeers}
        print_table(wname, w, results[wname], peak)
    if any(p.startswith("kcompile") for p in peers):
        for wname in ["W1"] + [n for n in names if n == "W7a"]:
            results[f"compile {wname}"] = ct = compile_times(wname)
            print()
            print_compile(wname, ct)
    print("\nratios: a peer's median over kcompile's (above 1: kcompile is faster)")
    print(load_line())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
