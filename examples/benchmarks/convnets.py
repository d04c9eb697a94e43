"""The convolutional workloads (W7, W8, W9): layer lists, shapes, data, weights, FLOPs.

A network is a list of layer tuples, read the same way by every peer:

    ("conv", filters, kernel, padding, activation)   Conv1D/Conv2D by the input's rank
    ("maxpool", size)  ("flatten",)  ("dropout", rate)  ("batchnorm",)  ("relu",)
    ("gap",)           GlobalAveragePooling over the spatial axes
    ("dense", units, activation)

Shapes are channels-last (Keras' layout); weights are in Keras' order and layout
(a conv kernel is (*kernel, in, out)); peers that use another layout convert them.
"""
from __future__ import annotations

import numpy as np

MNIST_CONVNET = [("conv", 32, 3, "valid", "relu"), ("maxpool", 2),
                 ("conv", 64, 3, "valid", "relu"), ("maxpool", 2),
                 ("flatten",), ("dropout", 0.5), ("dense", 10, "softmax")]

CONV1D_CLASSIFIER = [("conv", 64, 3, "same", None), ("batchnorm",), ("relu",)] * 3 + \
    [("gap",), ("dense", 2, "softmax")]


def out_shapes(w):
    """Per-sample shape after each layer of a "convnet" workload (channels last)."""
    shape, out = tuple(w["input"]), []
    for layer in w["net"]:
        kind = layer[0]
        if kind == "conv":
            _, filters, k, padding, _ = layer
            spatial = [d if padding == "same" else d - k + 1 for d in shape[:-1]]
            shape = (*spatial, filters)
        elif kind == "maxpool":
            shape = (*(d // layer[1] for d in shape[:-1]), shape[-1])
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
        elif kind == "gap":
            shape = (shape[-1],)
        elif kind == "dense":
            shape = (layer[1],)
        out.append(shape)
    return out


def in_shapes(w):
    return [tuple(w["input"])] + out_shapes(w)[:-1]


def data(w, seed=0):
    """Inputs and targets: one-hot targets for categorical crossentropy, int32 labels
    for the sparse loss; for W9 the input and the output cotangent."""
    rng = np.random.default_rng(seed)
    if w["kind"] == "conv":
        x = rng.standard_normal((w["batch"], *w["hw"], w["cin"]), dtype=np.float32)
        dy = rng.standard_normal((w["batch"], *w["hw"], w["cout"]), dtype=np.float32)
        return x, dy
    x = rng.standard_normal((w["batch"], *w["input"]), dtype=np.float32)
    labels = rng.integers(0, w["classes"], w["batch"])
    if w["loss"] == "sparse_categorical_crossentropy":
        return x, labels.astype(np.int32)
    return x, np.eye(w["classes"], dtype=np.float32)[labels]


def weights(w, seed=1):
    """Per layer, its weights in Keras' order and layout (Glorot-uniform kernels, zero
    biases; BatchNormalization's gamma, beta, moving mean, moving variance), the same
    for every peer. Layers without weights get an empty list."""
    rng = np.random.default_rng(seed)
    if w["kind"] == "conv":
        k, cin, cout = w["k"], w["cin"], w["cout"]
        lim = np.sqrt(6.0 / (k * k * (cin + cout)))
        return rng.uniform(-lim, lim, (k, k, cin, cout)).astype(np.float32)
    out = []
    for layer, shape in zip(w["net"], in_shapes(w)):
        if layer[0] == "conv":
            cin, cout, k = shape[-1], layer[1], layer[2]
            ksize = (k,) * (len(shape) - 1)
            recept = int(np.prod(ksize))
            lim = np.sqrt(6.0 / (recept * (cin + cout)))
            out.append([rng.uniform(-lim, lim, (*ksize, cin, cout)).astype(np.float32),
                        np.zeros(cout, np.float32)])
        elif layer[0] == "dense":
            lim = np.sqrt(6.0 / (shape[0] + layer[1]))
            out.append([rng.uniform(-lim, lim, (shape[0], layer[1])).astype(np.float32),
                        np.zeros(layer[1], np.float32)])
        elif layer[0] == "batchnorm":
            c = shape[-1]
            out.append([np.ones(c, np.float32), np.zeros(c, np.float32),
                        np.zeros(c, np.float32), np.ones(c, np.float32)])
        else:
            out.append([])
    return out


def flat_weights(w):
    return [a for per_layer in weights(w) for a in per_layer]


def flops(w):
    """Multiply-adds x 2 of the convolutions and dense layers. A training step counts
    the forward pass, the kernel gradient and the input gradient (none for the first
    layer: its input is data); W9's gradient step counts forward + both gradients."""
    if w["kind"] == "conv":
        fwd = 2.0 * w["batch"] * np.prod(w["hw"]) * w["cout"] * w["cin"] * w["k"] ** 2
        return 3 * fwd if w["mode"] == "grad" else fwd
    total, first = 0.0, True
    for layer, sin, sout in zip(w["net"], in_shapes(w), out_shapes(w)):
        if layer[0] == "conv":
            f = 2.0 * w["batch"] * np.prod(sout) * sin[-1] * layer[2] ** (len(sin) - 1)
        elif layer[0] == "dense":
            f = 2.0 * w["batch"] * sin[0] * sout[0]
        else:
            continue
        total += f if w["mode"] == "predict" else (2 * f if first else 3 * f)
        first = False
    return total
