"""Batch-1 latency of an exported library called from C, vs predict_on_batch in Python,
vs ONNX Runtime on the same model (same weights), and the library's size on disk.

    PYTHONPATH=. python examples/benchmarks/export_latency.py [--calls N] [--models mlp,lstm]

Each model is exported (cpu=host and cpu=generic, batch 1, one thread) and a small C
program linked
against libmodel.a times model_predict. ONNX Runtime runs in a separate interpreter
(default /work/kenv/bin/python, --peer-python to change; a row says "n/a" without it)
where torch builds the same network from the weights saved here and exports it to
ONNX; its outputs are checked against kcompile's before it is timed. All rows use one
thread. Medians over repeats of N calls; a shared machine makes single runs noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent

C_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                          return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b;
                                               return (x > y) - (x < y); }
int main(int argc, char **argv) {
    int calls = atoi(argv[1]), repeats = 15;
    model_t *m;
    if (model_create(&m, NULL)) { fprintf(stderr, "%s\n", model_last_error()); return 1; }
    float *x = calloc(MODEL_INPUT_SIZE, sizeof(float)), *y = calloc(MODEL_OUTPUT_SIZE, 4);
    for (int i = 0; i < MODEL_INPUT_SIZE; i++) x[i] = (float)(i % 7) / 7.0f;
    double t[15];
    for (int r = -2; r < repeats; r++) {
        double t0 = now();
        for (int i = 0; i < calls; i++)
            if (model_predict(m, 1, x, MODEL_INPUT_SIZE, y, MODEL_OUTPUT_SIZE)) return 1;
        if (r >= 0) t[r] = (now() - t0) / calls;
    }
    qsort(t, repeats, sizeof t[0], cmp);
    printf("%.3f\n", 1e6 * t[repeats / 2]);
    model_destroy(m);
    return 0;
}
"""


# -- the models ------------------------------------------------------------------------
def build(kind):
    import kcompile
    from kcompile import layers, models
    rng = np.random.default_rng(0)
    if kind == "mlp":           # the seed model
        m = models.Sequential([kcompile.Input((784,)), layers.Dense(32, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    elif kind == "mlp-wide":
        m = models.Sequential([kcompile.Input((784,)), layers.Dense(512, activation="relu"),
                               layers.Dense(512, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    elif kind == "lstm":
        m = models.Sequential([kcompile.Input((20, 8)), layers.LSTM(32), layers.Dense(1)])
    elif kind == "convnet":
        m = models.Sequential([kcompile.Input((28, 28, 1)),
                               layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(2),
                               layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                               layers.Flatten(), layers.Dense(10, activation="softmax")])
    else:
        raise ValueError(f"unknown model {kind!r}")
    m.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in m.get_weights()])
    return m


def input_shape(kind):
    return {"mlp": (784,), "mlp-wide": (784,), "lstm": (20, 8), "convnet": (28, 28, 1)}[kind]


# -- the ONNX Runtime peer (runs in the peer interpreter) -------------------------------
def torch_net(kind, w):
    import torch
    from torch import nn
    t = lambda a: torch.tensor(np.asarray(a))

    def linear(k, b):
        lin = nn.Linear(*k.shape)
        lin.weight.data, lin.bias.data = t(k.T.copy()), t(b)
        return lin
    if kind in ("mlp", "mlp-wide"):
        mods = []
        for i in range(0, len(w), 2):
            mods += [linear(w[i], w[i + 1]), nn.ReLU() if i + 2 < len(w) else nn.Softmax(-1)]
        return nn.Sequential(*mods)
    if kind == "lstm":
        lstm = nn.LSTM(8, 32, batch_first=True)     # Keras' and torch's gate order: i f c o
        lstm.weight_ih_l0.data, lstm.weight_hh_l0.data = t(w[0].T.copy()), t(w[1].T.copy())
        lstm.bias_ih_l0.data, lstm.bias_hh_l0.data = t(w[2]), torch.zeros(128)
        head = linear(w[3], w[4])

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm, self.head = lstm, head

            def forward(self, x):
                return self.head(self.lstm(x)[0][:, -1])
        return Net()
    convs = []
    for i in (0, 2):
        c = nn.Conv2d(w[i].shape[2], w[i].shape[3], 3)
        c.weight.data, c.bias.data = t(w[i].transpose(3, 2, 0, 1).copy()), t(w[i + 1])
        convs.append(c)
    head = linear(w[4], w[5])

    class Convnet(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.head = convs[0], convs[1], head

        def forward(self, x):                       # NHWC in, as the Keras model
            x = x.permute(0, 3, 1, 2)
            x = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
            x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
            return torch.softmax(self.head(x.permute(0, 2, 3, 1).flatten(1)), -1)
    return Convnet()


def onnx_peer(spec_path):
    import onnxruntime as ort
    import torch
    spec = json.loads(pathlib.Path(spec_path).read_text())
    data = np.load(spec["weights"])
    w = [data[f"w{i}"] for i in range(len(data.files) - 2)]
    x, expected = data["x"], data["y"]
    net = torch_net(spec["kind"], w).eval()
    onnx_path = str(pathlib.Path(spec_path).with_suffix(".onnx"))
    torch.onnx.export(net, (torch.tensor(x),), onnx_path, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = sess.run(None, {name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)    # the same model
    times = []
    for r in range(17):
        t0 = time.perf_counter()
        for _ in range(spec["calls"]):
            sess.run(None, {name: x})
        if r >= 2:
            times.append((time.perf_counter() - t0) / spec["calls"])
    print(json.dumps({"us": 1e6 * statistics.median(times),
                      "onnx_bytes": os.path.getsize(onnx_path)}))


# -- the kcompile rows ---------------------------------------------------------------------
def c_latency(export_dir: pathlib.Path, calls: int, cc: str) -> float:
    src = export_dir.parent / "bench.c"
    exe = export_dir.parent / "bench"
    src.write_text(C_HARNESS)
    subprocess.run([cc, "-O2", str(src), f"-I{export_dir}", str(export_dir / "libmodel.a"),
                    "-lm", "-pthread", "-o", str(exe)], check=True)
    return float(subprocess.run([str(exe), str(calls)], check=True, capture_output=True,
                                text=True).stdout)


def python_latency(model, x, calls: int) -> float:
    model.predict_on_batch(x)
    times = []
    for r in range(15):
        t0 = time.perf_counter()
        for _ in range(calls):
            model.predict_on_batch(x)
        times.append((time.perf_counter() - t0) / calls)
    return 1e6 * statistics.median(times)


def row(kind, calls, cc, peer_python, work: pathlib.Path):
    os.environ.setdefault("KCOMPILE_NUM_THREADS", "1")
    model = build(kind)
    x = np.random.default_rng(1).random((1, *input_shape(kind))).astype(np.float32)
    y = model.predict_on_batch(x)
    t0 = time.perf_counter()
    out = model.export(work / kind, batch_size=1, threads=1, cpu="host", verbose=False)
    export_s = time.perf_counter() - t0
    result = {"model": kind, "params": model.count_params(), "export_s": export_s,
              "so_bytes": (out / "libmodel.so").stat().st_size,
              "a_bytes": (out / "libmodel.a").stat().st_size,
              "c_us": c_latency(out, calls, cc), "py_us": python_latency(model, x, calls // 4 or 1)}
    generic = model.export(work / f"{kind}-generic", batch_size=1, cpu="generic", verbose=False)
    result["c_generic_us"] = c_latency(generic, calls, cc)
    result["generic_so_bytes"] = (generic / "libmodel.so").stat().st_size
    if peer_python and (shutil.which(peer_python) or os.path.exists(peer_python)):
        weights = work / f"{kind}.npz"
        np.savez(weights, **{f"w{i}": w for i, w in enumerate(model.get_weights())}, x=x, y=y)
        spec = work / f"{kind}.json"
        spec.write_text(json.dumps({"kind": kind, "weights": str(weights), "calls": calls}))
        res = subprocess.run([peer_python, __file__, "--onnx-peer", str(spec)],
                             capture_output=True, text=True)
        if res.returncode == 0:
            result.update(json.loads(res.stdout.strip().splitlines()[-1]))
            result["ort_us"] = result.pop("us")
        else:
            result["ort_error"] = res.stderr.strip().splitlines()[-1]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mlp,mlp-wide,lstm,convnet")
    ap.add_argument("--calls", type=int, default=2000, help="calls per timed repeat")
    ap.add_argument("--peer-python", default="/work/kenv/bin/python",
                    help="an interpreter with torch and onnxruntime")
    ap.add_argument("--onnx-peer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.onnx_peer:
        return onnx_peer(args.onnx_peer)
    cc = next((shutil.which(c) for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None:
        sys.exit("no C compiler (cc, gcc or clang) on PATH: the export links with it")
    print("| model | params | C, host (us) | C, generic (us) | predict_on_batch (us) "
          "| ONNX Runtime (us) | libmodel.so host / generic | libmodel.a | export (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="kc-export-bench-") as tmp:
        for kind in args.models.split(","):
            r = row(kind, args.calls, cc, args.peer_python, pathlib.Path(tmp))
            ort = f"{r['ort_us']:.1f}" if "ort_us" in r else "n/a"
            print(f"| {kind} | {r['params']} | {r['c_us']:.1f} | {r['c_generic_us']:.1f} | "
                  f"{r['py_us']:.1f} | {ort} | {r['so_bytes'] / 1024:.0f} / "
                  f"{r['generic_so_bytes'] / 1024:.0f} KiB | {r['a_bytes'] / 1024:.0f} KiB | "
                  f"{r['export_s']:.1f} |", flush=True)
            if "ort_error" in r:
                print(f"  (ONNX Runtime: {r['ort_error']})")


if __name__ == "__main__":
    main()
