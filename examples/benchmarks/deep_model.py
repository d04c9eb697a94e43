"""A deep, narrow model's training step: kcompile against Keras 3 on JAX.

    python examples/benchmarks/deep_model.py [--blocks 30] [--peer-python /path/to/python]

Input(64) -> blocks x [Dense(64, relu), BatchNormalization, Dropout(0.1)] ->
Dense(10, softmax), Adam, batch 64: hundreds of small kernels per step, where
barriers between threads, not FLOPs, set the step time. Each row is the median
`train_on_batch` time of one process (kcompile with its chosen thread count, then
forced to 1 and 2 threads; Keras 3 with KERAS_BACKEND=jax in --peer-python).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from machine import cpu_line, load_line  # noqa: E402

BATCH = 64


def build(keras, blocks):
    m = keras.Sequential([keras.layers.Input((64,))])
    for _ in range(blocks):
        m.add(keras.layers.Dense(64, activation="relu"))
        m.add(keras.layers.BatchNormalization())
        m.add(keras.layers.Dropout(0.1))
    m.add(keras.layers.Dense(10, activation="softmax"))
    return m


def run_peer(peer, blocks, steps):
    """In this process: (compile seconds, median step seconds, threads)."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 64), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    if peer == "keras-jax":
        import keras
        m = build(keras, blocks)
        m.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy")
        threads = None
    else:
        import kcompile
        from kcompile import optimizers
        threads = {"kcompile": None, "kcompile-1t": 1, "kcompile-2t": 2}[peer]
        m = build(kcompile, blocks)
        m.compile(optimizer=optimizers.Adam(), loss="categorical_crossentropy", nthreads=threads)
    t = time.perf_counter()
    m.train_on_batch(x, y)
    first = time.perf_counter() - t
    for _ in range(10):
        m.train_on_batch(x, y)
    times = []
    deadline = time.perf_counter() + 20.0
    for _ in range(steps):
        t = time.perf_counter()
        m.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
        if time.perf_counter() > deadline and len(times) >= 20:
            break
    if peer != "keras-jax":
        threads = next(iter(m._executables.values())).nthreads
    return {"first_step_s": first, "median_s": float(np.median(times)), "threads": threads}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=30)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--peers", default="kcompile,kcompile-1t,kcompile-2t,keras-jax")
    ap.add_argument("--peer-python", default=sys.executable)
    ap.add_argument("--one", help=argparse.SUPPRESS)       # run one peer here, print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_peer(args.one, args.blocks, args.steps)))
        return
    print(cpu_line())
    print(load_line())
    print(f"deep narrow model: {args.blocks} x [Dense(64, relu), BatchNormalization, "
          f"Dropout(0.1)], Adam, batch {BATCH}, train_on_batch")
    rows = {}
    for peer in args.peers.split(","):
        python = args.peer_python if peer == "keras-jax" else sys.executable
        env = {**os.environ, **({"KERAS_BACKEND": "jax"} if peer == "keras-jax" else {})}
        out = subprocess.run([python, os.path.abspath(__file__), "--one", peer, "--blocks",
                              str(args.blocks), "--steps", str(args.steps)],
                             capture_output=True, text=True, env=env, timeout=900)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not lines:
            print(f"  {peer:12s} failed: {(out.stderr.strip().splitlines() or ['?'])[-1][:120]}")
            continue
        rows[peer] = r = json.loads(lines[-1])
        print(f"  {peer:12s} {r['median_s'] * 1e3:8.3f} ms/step  first step (compile) "
              f"{r['first_step_s']:6.2f} s" + (f"  threads {r['threads']}" if r["threads"] else ""))
    if "kcompile" in rows and "keras-jax" in rows:
        ratio = rows["keras-jax"]["median_s"] / rows["kcompile"]["median_s"]
        print(f"  Keras-JAX / kcompile: {ratio:.2f}x (above 1: kcompile is faster)")


if __name__ == "__main__":
    sys.exit(main())
