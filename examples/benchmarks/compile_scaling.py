"""Compile time as models grow: kcompile's cold compile beside Keras 3 on JAX.

    python examples/benchmarks/compile_scaling.py [--peer-python /work/kenv/bin/python]
                                                  [--depths 10,20,30] [--repeats 3]

Models: W1 (784-512-256-10, Adam, batch 128) and a deep narrow model, Input(64) ->
N x [Dense(64, relu), BatchNormalization, Dropout(0.1)] -> Dense(10, softmax), Adam,
batch 64, for each N of --depths. Each figure is the first `train_on_batch` of a
fresh process (the median of --repeats processes): kcompile with its disk cache off
(KCOMPILE_NO_CACHE=1: train, eval and predict compiled), Keras 3 with
KERAS_BACKEND=jax in --peer-python (tracing and XLA compilation of the train step).
Also kcompile from its disk cache (a fresh process after one filled an empty cache)
and each library's steady `train_on_batch` time (median of rounds, after warm-up).
Prints the CPU and the load first: figures from a loaded machine are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from machine import cpu_line, load_line  # noqa: E402

W1 = dict(layers=[(784, 512, "relu"), (512, 256, "relu"), (256, 10, "softmax")], batch=128)


def build(lib, model: str):
    """The model in `lib` (kcompile or keras: the same calls), its inputs and targets."""
    import numpy as np
    rng = np.random.default_rng(0)
    m = lib.models.Sequential()
    if model == "W1":
        m.add(lib.layers.Input((W1["layers"][0][0],)))
        for _, units, act in W1["layers"]:
            m.add(lib.layers.Dense(units, activation=act))
        batch, features = W1["batch"], W1["layers"][0][0]
    else:
        m.add(lib.layers.Input((64,)))
        for _ in range(int(model)):
            m.add(lib.layers.Dense(64, activation="relu"))
            m.add(lib.layers.BatchNormalization())
            m.add(lib.layers.Dropout(0.1))
        m.add(lib.layers.Dense(10, activation="softmax"))
        batch, features = 64, 64
    m.compile(optimizer=lib.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    x = rng.standard_normal((batch, features)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch)]
    return m, x, y


def child(lib_name: str, model: str, steps: bool) -> dict:
    """In a fresh process: the first train_on_batch, then (steps) the steady one."""
    if lib_name == "kcompile":
        import kcompile as lib
    else:
        import keras as lib
    m, x, y = build(lib, model)
    t0 = time.perf_counter()
    m.train_on_batch(x, y)
    out = {"first": time.perf_counter() - t0}
    if hasattr(m, "compile_time"):
        out["compile_time"] = m.compile_time
    if steps:
        for _ in range(20):
            m.train_on_batch(x, y)
        rounds = []
        for _ in range(9):
            t0 = time.perf_counter()
            for _ in range(25):
                m.train_on_batch(x, y)
            rounds.append((time.perf_counter() - t0) / 25)
        out["step"] = statistics.median(rounds)
    return out


def run(python, lib_name, model, env_extra, steps=False):
    env = {k: v for k, v in os.environ.items()
           if k not in ("KCOMPILE_NO_CACHE", "KCOMPILE_CACHE_DIR")}
    env.update(env_extra)
    if lib_name == "kcompile":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    else:
        env["KERAS_BACKEND"] = "jax"
    cmd = [python, os.path.abspath(__file__), "--child", lib_name, model]
    if steps:
        cmd.append("--steps")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
        return {"failed": tail}
    return json.loads(lines[-1])


def median_of(results, key):
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def fmt(seconds, unit="s"):
    if seconds is None:
        return "n/a"
    return f"{seconds:.2f} s" if unit == "s" else f"{seconds * 1e3:.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer-python", default="/work/kenv/bin/python",
                    help="the Python with Keras 3 and JAX (default: %(default)s)")
    ap.add_argument("--depths", default="10,20,30", help="deep model depths N")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per figure")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--steps", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps)))
        return
    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        ap.error(f"--depths must be integers separated by commas, got {args.depths!r}")
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    peer = args.peer_python if os.path.exists(args.peer_python) else None
    print(cpu_line())
    print(load_line())
    print(f"kcompile: {sys.executable}; Keras 3 on JAX: {peer or 'n/a (no --peer-python)'}")
    print()
    print(f"first train_on_batch, fresh process, median of {args.repeats}:")
    print(f"{'model':<22}{'kcompile cold':>15}{'(compile_time)':>16}{'kcompile cached':>17}"
          f"{'Keras-JAX':>12}{'JAX/kcompile':>14}")
    steps = {}
    for model in ["W1", *map(str, depths)]:
        label = "W1 784-512-256-10" if model == "W1" else f"deep N={model}"
        with_steps = model != "W1"
        cold = [run(sys.executable, "kcompile", model, {"KCOMPILE_NO_CACHE": "1"},
                    steps=with_steps and i == 0) for i in range(args.repeats)]
        with tempfile.TemporaryDirectory() as d:
            run(sys.executable, "kcompile", model, {"KCOMPILE_CACHE_DIR": d})
            cached = run(sys.executable, "kcompile", model, {"KCOMPILE_CACHE_DIR": d})
        keras = [run(peer, "keras", model, {}, steps=with_steps and i == 0)
                 for i in range(args.repeats)] if peer else []
        k, j = median_of(cold, "first"), median_of(keras, "first")
        ratio = f"{j / k:.2f}x" if k and j else "n/a"
        print(f"{label:<22}{fmt(k):>15}{fmt(median_of(cold, 'compile_time')):>16}"
              f"{fmt(cached.get('compile_time'), 'ms'):>17}{fmt(j):>12}{ratio:>14}")
        failed = [r["failed"] for r in cold + keras + [cached] if "failed" in r]
        if failed:
            print(f"{'':<22}failed: {failed[0]}")
        if with_steps:
            steps[label] = (median_of(cold, "step"), median_of(keras, "step"))
    print()
    print("steady train_on_batch (median of 9 rounds of 25 steps, default threads):")
    print(f"{'model':<22}{'kcompile':>12}{'Keras-JAX':>12}{'JAX/kcompile':>14}")
    for label, (k, j) in steps.items():
        ratio = f"{j / k:.2f}x" if k and j else "n/a"
        print(f"{label:<22}{fmt(k, 'ms'):>12}{fmt(j, 'ms'):>12}{ratio:>14}")


if __name__ == "__main__":
    main()
