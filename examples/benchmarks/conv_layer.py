"""GFLOP/s of the 3x3, 64->64, stride 1, "same" convolution on 128x14x14x64 (NHWC):
forward, dX and dW through the compiled primitives, against this core's measured
FMA peak; with a one-layer Conv2D model's public calls when the layer exists.

    PYTHONPATH=. python examples/benchmarks/conv_layer.py [--threads 1] [--reps 20]

Each figure is the median of --reps timed calls after warm-up. The primitives'
graphs read their operands from and write their result to model state, so a call
times the kernels alone (no copies of inputs or outputs).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from kcompile.inspect.profiling import machine_peak
from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.conv import input_grad
from kcompile.ir.cost import flops
from kcompile.ir.graph import Graph, TensorType
from kcompile.runtime.executable import NativeExecutable
from kcompile.runtime.state import State

N, H, W, C, K = 128, 14, 14, 64, 3
ATTRS = dict(strides=(1, 1), padding=((1, 1), (1, 1)))


def _graphs():
    """forward: y = conv(x, w); dX: the input gradient for cotangent gy; dW: the
    kernel gradient. Each result is a state update, written in place."""
    xs, ws, ys = (N, H, W, C), (K, K, C, C), (N, H, W, C)

    def graph(build, operands, result):
        g = Graph()
        syms = {name: Sym(g, g.leaf("state", TensorType(shape), name))
                for name, shape in operands}
        out = Sym(g, g.leaf("state", TensorType(result[1]), result[0]))
        g.updates[out.id] = build(**syms).id
        return g
    return {
        "forward": graph(lambda x, w: F.conv(x, w, **ATTRS), [("x", xs), ("w", ws)], ("y", ys)),
        "dX": graph(lambda gy, w: input_grad(F, xs, (K, K), gy, w, dict(ATTRS, lhs_dilation=(1, 1),
                                                                      rhs_dilation=(1, 1),
                                                                      groups=1)),
                    [("gy", ys), ("w", ws)], ("dx", xs)),
        "dW": graph(lambda x, gy: F.op("conv_weight_grad", x, gy, kernel_shape=(K, K), **ATTRS),
                    [("x", xs), ("gy", ys)], ("dw", ws)),
    }


def _seconds(call, reps, clock=time.perf_counter):
    """(median, best) of reps timed calls: on a shared machine the best is the
    least disturbed run, the median what a user sees."""
    for _ in range(3):
        call()
    times = []
    for _ in range(reps):
        t = clock()
        call()
        times.append(clock() - t)
    return float(np.median(times)), float(np.min(times))


def _primitives(threads, reps, peak):
    graphs = _graphs()
    rows = []
    rng = np.random.default_rng(0)
    for name, g in graphs.items():
        layout = [(g.nodes[v].name, g.nodes[v].type) for v in g.leaves("state")]
        state = State(layout)
        for k, t in layout:
            state.assign(k, rng.standard_normal(t.shape).astype(np.float32))
        exe = NativeExecutable({name: g}, state, nthreads=threads)
        t, best = _seconds(lambda: exe.run(name, {}), reps)
        gf, gf_best = flops(g) / t / 1e9, flops(g) / best / 1e9
        rows.append((name, t, gf))
        line = (f"  {name:8s} median {t * 1e3:7.2f} ms {gf:6.1f} GFLOP/s "
                f"{100 * gf / (peak * threads):5.1f}% of peak; best {gf_best:6.1f} "
                f"{100 * gf_best / (peak * threads):5.1f}%")
        if threads == 1:
            # CPU time: what the kernels cost when another process takes turns on the core
            cpu, _ = _seconds(lambda: exe.run(name, {}), reps, time.thread_time)
            gf_cpu = flops(g) / cpu / 1e9
            line += f"; CPU-time median {gf_cpu:6.1f} {100 * gf_cpu / peak:5.1f}%"
        print(line + f"  ({threads} thread(s))", flush=True)
    return rows


def _model(threads, reps, peak):
    import kcompile
    layers = kcompile.layers
    if not hasattr(layers, "Conv2D"):
        print("  (no Conv2D layer in this checkout: model figures skipped)")
        return
    inp = kcompile.Input((H, W, C))
    out = layers.Conv2D(C, K, padding="same", use_bias=False)(inp)
    model = kcompile.Model(inp, out)
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(1).standard_normal((N, H, W, C)).astype(np.float32)
    fwd = 2.0 * N * H * W * C * C * K * K
    t, _ = _seconds(lambda: model.predict_on_batch(x), reps)
    print(f"  model predict_on_batch {t * 1e3:8.2f} ms  {fwd / t / 1e9:7.1f} GFLOP/s "
          f"(forward FLOPs; includes the input copy)")
    t, _ = _seconds(lambda: model.train_on_batch(x, x), reps)
    print(f"  model train_on_batch   {t * 1e3:8.2f} ms  {3 * fwd / t / 1e9:7.1f} GFLOP/s "
          f"(forward + dX + dW FLOPs; dX is not needed for the first layer, so this "
          f"counts work not done)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    peak = machine_peak()
    print(f"CPU: {peak['cpu']}, {_cpu_model()}; load: {os.getloadavg()[0]:.2f}")
    print(f"measured FMA peak: {peak['gflops']:.1f} GFLOP/s per core ({peak['gflops_source']})")
    print(f"conv 3x3 {C}->{C} stride 1 same on {N}x{H}x{W}x{C}, "
          f"{2.0 * N * H * W * C * C * K * K / 1e9:.3f} GFLOP per pass; compiled primitives:")
    _primitives(args.threads, args.reps, peak["gflops"])
    _model(args.threads, args.reps, peak["gflops"])


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = {}
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v)
        return (f"{info['model name'].strip()} (family {info['cpu family'].strip()}, "
                f"model {info['model'].strip()})")
    except (OSError, KeyError):
        return "CPU model unknown"


if __name__ == "__main__":
    main()
