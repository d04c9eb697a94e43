"""The benchmark workloads (see WORKLOADS in the README): shapes and data, shared by every peer."""
from __future__ import annotations

import numpy as np

import convnets
from convnets import CONV1D_CLASSIFIER, MNIST_CONVNET

WORKLOADS = {
    "W1": dict(kind="train", layers=[(784, 512, "relu"), (512, 256, "relu"), (256, 10, "softmax")],
               optimizer="adam", batch=128, title="mlp-train: 784-512-256-10, Adam, batch 128"),
    "W2a": dict(kind="predict", layers=[(784, 512, "relu"), (512, 256, "relu"), (256, 10, "softmax")],
                batch=1, title="mlp-predict latency, batch 1"),
    "W2b": dict(kind="predict", layers=[(784, 512, "relu"), (512, 256, "relu"), (256, 10, "softmax")],
                batch=1024, title="mlp-predict throughput, batch 1024"),
    "W3": dict(kind="rnn", model="imdb", batch=64, steps=200, vocab=5000, embed=64, units=100,
               optimizer="adam", title="imdb-lstm-train: Embedding(5000,64)-LSTM(100)-Dense(1), Adam, batch 64, 200 steps"),
    "W4": dict(kind="rnn", model="ts", batch=32, steps=30, units=64, optimizer="adam",
               title="ts-lstm-train: LSTM(64) on (30, 1)-Dense(1), mse, Adam, batch 32"),
    "W5": dict(kind="train", layers=[(784, 32, "relu"), (32, 10, "softmax")], optimizer="rmsprop",
               batch=32, title="tiny-mlp-train: 784-32-10, RMSprop, batch 32"),
    "W6a": dict(kind="sgemm", m=128, k=784, n=512, title="sgemm (128x784)@(784x512)"),
    "W6b": dict(kind="sgemm", m=1024, k=1024, n=1024, title="sgemm 1024^3"),
    "W7a": dict(kind="convnet", mode="train", net=MNIST_CONVNET, input=(28, 28, 1), classes=10,
                loss="categorical_crossentropy", optimizer="adam", batch=128,
                title="mnist-convnet-train: Conv2D(32)-pool-Conv2D(64)-pool-Dropout-Dense(10), Adam, batch 128"),
    "W7b": dict(kind="convnet", mode="predict", net=MNIST_CONVNET, input=(28, 28, 1), classes=10,
                loss="categorical_crossentropy", batch=1, title="mnist-convnet predict latency, batch 1"),
    "W7c": dict(kind="convnet", mode="predict", net=MNIST_CONVNET, input=(28, 28, 1), classes=10,
                loss="categorical_crossentropy", batch=256, title="mnist-convnet predict throughput, batch 256"),
    "W8": dict(kind="convnet", mode="train", net=CONV1D_CLASSIFIER, input=(500, 1), classes=2,
               loss="sparse_categorical_crossentropy", optimizer="adam", batch=32,
               title="conv1d-classifier-train: 3 x [Conv1D(64,3)-BN-ReLU]-GAP-Dense(2), Adam, batch 32"),
    "W9a": dict(kind="conv", mode="forward", batch=128, hw=(14, 14), cin=64, cout=64, k=3,
                title="conv layer 3x3 64->64 on 128x14x14x64, forward"),
    "W9b": dict(kind="conv", mode="grad", batch=128, hw=(14, 14), cin=64, cout=64, k=3,
                title="conv layer 3x3 64->64 on 128x14x14x64, forward + both gradients"),
}


def data(w, seed=0):
    if w["kind"] in ("convnet", "conv"):
        return convnets.data(w, seed)
    rng = np.random.default_rng(seed)
    if w["kind"] == "rnn":
        if w["model"] == "imdb":
            x = rng.integers(1, w["vocab"], (w["batch"], w["steps"])).astype(np.int32)
            return x, rng.integers(0, 2, (w["batch"], 1)).astype(np.float32)
        x = rng.standard_normal((w["batch"], w["steps"], 1), dtype=np.float32)
        return x, rng.standard_normal((w["batch"], 1), dtype=np.float32)
    if w["kind"] == "sgemm":
        return (rng.standard_normal((w["m"], w["k"]), dtype=np.float32),
                rng.standard_normal((w["k"], w["n"]), dtype=np.float32))
    d_in, d_out = w["layers"][0][0], w["layers"][-1][1]
    x = rng.standard_normal((w["batch"], d_in), dtype=np.float32)
    y = np.eye(d_out, dtype=np.float32)[rng.integers(0, d_out, w["batch"])]
    return x, y


def weights(w, seed=1):
    """Glorot-uniform kernels and zero biases, the same for every peer."""
    rng = np.random.default_rng(seed)
    out = []
    for fan_in, fan_out, _ in w["layers"]:
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        out.append(rng.uniform(-lim, lim, (fan_in, fan_out)).astype(np.float32))
        out.append(np.zeros(fan_out, np.float32))
    return out


def flops(w):
    if w["kind"] in ("convnet", "conv"):
        return convnets.flops(w)
    if w["kind"] == "rnn":
        d_in = w.get("embed", 1)
        per_step = 2.0 * w["batch"] * (d_in + w["units"]) * 4 * w["units"]
        return 3 * per_step * w["steps"]
    if w["kind"] == "sgemm":
        return 2.0 * w["m"] * w["k"] * w["n"]
    fwd = sum(2.0 * w["batch"] * a * b for a, b, _ in w["layers"])
    return 3 * fwd if w["kind"] == "train" else fwd
