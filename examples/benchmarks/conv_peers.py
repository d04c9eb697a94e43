"""The convolutional workloads (W7, W8, W9) on each system: each function returns a `step()`.

kcompile and Keras 3 build the same Sequential model from the same code (their APIs
match) and are timed through `train_on_batch` / `predict_on_batch`. PyTorch runs its
usual channels-first modules, JAX a jitted step written with lax, ONNX Runtime a
hand-built ONNX graph. All take the same weights (convnets.weights, converted to each
layout) and the same data.
"""
from __future__ import annotations

import os

import numpy as np

from convnets import data, flat_weights, in_shapes, out_shapes, weights
from unavailable import Unavailable


def _rank(w):
    return len(w["input"]) - 1 if w["kind"] == "convnet" else 2


# ------------------------------------------------------------------- kcompile and Keras 3
def build_sequential(k, w):
    """The workload's model with the Keras API of module `k` (kcompile or keras)."""
    L = k.layers
    rank = _rank(w)
    if w["kind"] == "conv":
        return k.Sequential([k.Input((*w["hw"], w["cin"])),
                             L.Conv2D(w["cout"], w["k"], padding="same", use_bias=False)])
    conv, pool, gap = ((L.Conv1D, L.MaxPooling1D, L.GlobalAveragePooling1D) if rank == 1
                       else (L.Conv2D, L.MaxPooling2D, L.GlobalAveragePooling2D))
    made = {"conv": lambda f, ks, pad, act: conv(f, ks, padding=pad, activation=act),
            "maxpool": lambda s: pool(s), "flatten": L.Flatten, "dropout": L.Dropout,
            "batchnorm": L.BatchNormalization, "relu": L.ReLU, "gap": gap,
            "dense": lambda units, act: L.Dense(units, activation=act)}
    return k.Sequential([k.Input(w["input"])] + [made[layer[0]](*layer[1:]) for layer in w["net"]])


def _compiled(k, w, **compile_args):
    model = build_sequential(k, w)
    if w["kind"] == "conv":
        model.set_weights([weights(w)])
        model.compile(optimizer="sgd", loss="mse", **compile_args)
    else:
        model.set_weights(flat_weights(w))
        model.compile(optimizer=k.optimizers.Adam(1e-3), loss=w["loss"], **compile_args)
    return model


def _public_step(model, w):
    x, y = data(w)
    if w["mode"] == "train":
        model.train_on_batch(x, y)
        return lambda: model.train_on_batch(x, y)
    if w["mode"] in ("predict", "forward"):
        model.predict_on_batch(x)
        return lambda: model.predict_on_batch(x)
    raise Unavailable("no public call returns a layer's input gradient")


def kcompile_step(w, backend="native", nthreads=None, native=False):
    """Through the public calls; `native=True` times the compiled entry alone (diagnosis)."""
    import kcompile
    if native and w["kind"] == "conv":
        return _kcompile_conv_native(w, nthreads)
    model = _compiled(kcompile, w, backend=backend, nthreads=nthreads)
    step = _public_step(model, w)
    if not native:
        return step
    x, y = data(w)
    exe = next(iter(model._executables.values()))
    n = len(x)
    if w["mode"] == "train":
        feeds = {"x0": x, "y0": y, "mask": np.ones(n, np.float32),
                 "sample_weight": np.ones(n, np.float32)}
        return lambda: exe.run("train_step", feeds)
    return lambda: exe.run("predict", {"x0": x})


def _kcompile_conv_native(w, nthreads):
    """The convolution and its two gradients as one compiled graph, run alone."""
    from kcompile.ir import builder as F
    from kcompile.ir.builder import Sym
    from kcompile.ir.graph import Graph, TensorType
    from kcompile.ir.passes.autodiff import backprop
    from kcompile.runtime.executable import NativeExecutable
    from kcompile.runtime.state import State
    x, dy = data(w)
    kern = weights(w)
    pad = (w["k"] - 1) // 2
    g = Graph()
    xs = Sym(g, g.leaf("input", TensorType(x.shape), "x"))
    ks = Sym(g, g.leaf("input", TensorType(kern.shape), "w"))
    y = F.conv(xs, ks, (1, 1), ((pad, pad), (pad, pad)))
    g.outputs["y"] = y.id
    feeds = {"x": x, "w": kern}
    if w["mode"] == "grad":
        dys = Sym(g, g.leaf("input", TensorType(dy.shape), "dy"))
        grads = backprop(g, {y.id: dys}, [xs.id, ks.id])
        g.outputs["dx"], g.outputs["dw"] = grads[xs.id].id, grads[ks.id].id
        feeds["dy"] = dy
    exe = NativeExecutable({"conv": g}, State([]), nthreads=nthreads)
    exe.run("conv", feeds)              # the operands stay in the arena
    return lambda: exe._fns["conv"]()


def keras_step(w):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        raise Unavailable("keras is not installed") from None
    return _public_step(_compiled(keras, w), w)


# -------------------------------------------------------------------------------- numpy
def numpy_step(w):
    """The W9 convolution in numpy (patches x kernel as one tensordot)."""
    if w["kind"] != "conv":
        raise Unavailable("no hand-written numpy convnet")
    from numpy.lib.stride_tricks import sliding_window_view
    x, dy = data(w)
    kern = weights(w)
    k, p = w["k"], (w["k"] - 1) // 2

    def patches(a):         # (N, H, W, C, kh, kw) views of the zero-padded input
        return sliding_window_view(np.pad(a, ((0, 0), (p, p), (p, p), (0, 0))), (k, k), axis=(1, 2))

    def forward():
        return np.tensordot(patches(x), kern, axes=([4, 5, 3], [0, 1, 2]))
    if w["mode"] == "forward":
        return forward

    flipped = kern[::-1, ::-1].transpose(0, 1, 3, 2)

    def grad():
        y = forward()
        dx = np.tensordot(patches(dy), flipped, axes=([4, 5, 3], [0, 1, 2]))
        dw = np.tensordot(patches(x), dy, axes=([0, 1, 2], [0, 1, 2])).transpose(1, 2, 0, 3)
        return y, dx, dw
    return grad


# -------------------------------------------------------------------------------- torch
def _torch_layout(a, rank):
    """A channels-last kernel (*k, in, out) as torch's (out, in, *k)."""
    return np.ascontiguousarray(a.transpose(rank + 1, rank, *range(rank)))


def _torch_net(torch, w):
    nn = torch.nn
    rank = _rank(w)
    conv, pool, bn = ((nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d) if rank == 1
                      else (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d))
    mods, flattened_from = [], None

    def put(param, value):
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    for layer, sin, ps in zip(w["net"], in_shapes(w), weights(w)):
        kind = layer[0]
        if kind == "conv":
            m = conv(sin[-1], layer[1], layer[2], padding=layer[3])
            put(m.weight, _torch_layout(ps[0], rank)), put(m.bias, ps[1])
            mods += [m] + ([nn.ReLU()] if layer[4] == "relu" else [])
        elif kind == "maxpool":
            mods.append(pool(layer[1]))
        elif kind == "flatten":
            flattened_from = sin
            mods.append(nn.Flatten())
        elif kind == "dropout":
            mods.append(nn.Dropout(layer[1]))
        elif kind == "batchnorm":
            # Keras' momentum 0.99 is torch's 0.01 (the weight of the new batch)
            m = bn(sin[-1], eps=1e-3, momentum=0.01)
            for param, value in zip((m.weight, m.bias, m.running_mean, m.running_var), ps):
                put(param, value)
            mods.append(m)
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "gap":
            mods += [(nn.AdaptiveAvgPool1d if rank == 1 else nn.AdaptiveAvgPool2d)(1), nn.Flatten()]
        elif kind == "dense":
            kern = ps[0]
            if flattened_from is not None:      # channels-first flatten order
                kern = kern.reshape(*flattened_from, -1)
                kern = np.moveaxis(kern, -2, 0).reshape(-1, kern.shape[-1])
            m = nn.Linear(*kern.shape)
            put(m.weight, kern.T), put(m.bias, ps[1])
            mods.append(m)          # the softmax is in the loss (or applied in predict)
    return nn.Sequential(*mods)


def torch_step(w, threads, compiled):
    try:
        import torch
    except ImportError:
        raise Unavailable("torch is not installed") from None
    torch.set_num_threads(threads)
    if w["kind"] == "conv":
        return _torch_conv(torch, w, compiled)
    x, y = data(w)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    net = _torch_net(torch, w)
    if w["mode"] == "predict":
        net.eval()
        fwd = torch.compile(net) if compiled else net

        def predict():
            with torch.no_grad():
                return torch.softmax(fwd(x), dim=1)
        return predict
    labels = torch.from_numpy(y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()
        return loss
    return torch.compile(step) if compiled else step


def _torch_conv(torch, w, compiled):
    x, dy = (torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1))) for a in data(w))
    kern = torch.from_numpy(_torch_layout(weights(w), 2))
    pad = (w["k"] - 1) // 2

    def conv(x, kern):
        return torch.nn.functional.conv2d(x, kern, padding=pad)
    conv = torch.compile(conv) if compiled else conv
    if w["mode"] == "forward":
        def forward():
            with torch.no_grad():
                return conv(x, kern)
        return forward
    xg, kg = x.clone().requires_grad_(), kern.clone().requires_grad_()

    def grad():
        xg.grad = kg.grad = None
        y = conv(xg, kg)
        y.backward(dy)
        return y
    return grad


# ---------------------------------------------------------------------------------- jax
def jax_step(w):
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError:
        raise Unavailable("jax is not installed") from None
    if w["kind"] == "conv":
        return _jax_conv(jax, lax, w)
    rank = _rank(w)
    dims = ("NWC", "WIO", "NWC") if rank == 1 else ("NHWC", "HWIO", "NHWC")
    x, y = (jnp.asarray(a) for a in data(w))
    ws = weights(w)
    # trainable: conv/dense (kernel, bias), batchnorm (gamma, beta); moving stats apart
    params = [[jnp.asarray(a) for a in ps[:2]] for ps in ws]
    stats = [[jnp.asarray(a) for a in ps[2:]] for ps in ws]
    net = w["net"]

    def forward(params, stats, x, key, training):
        h, new_stats = x, []
        for layer, ps, st in zip(net, params, stats):
            kind = layer[0]
            if kind == "conv":
                h = lax.conv_general_dilated(h, ps[0], (1,) * rank, layer[3].upper(),
                                             dimension_numbers=dims) + ps[1]
                h = jax.nn.relu(h) if layer[4] == "relu" else h
            elif kind == "maxpool":
                s = (1,) + (layer[1],) * rank + (1,)
                h = lax.reduce_window(h, -jnp.inf, lax.max, s, s, "VALID")
            elif kind == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif kind == "dropout" and training:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1 - layer[1], h.shape)
                h = jnp.where(keep, h / (1 - layer[1]), 0)
            elif kind == "batchnorm":
                axes = tuple(range(h.ndim - 1))
                if training:
                    mean, var = h.mean(axis=axes), h.var(axis=axes)
                    st = [0.99 * st[0] + 0.01 * mean, 0.99 * st[1] + 0.01 * var]
                else:
                    mean, var = st
                h = (h - mean) * lax.rsqrt(var + 1e-3) * ps[0] + ps[1]
            elif kind == "relu":
                h = jax.nn.relu(h)
            elif kind == "gap":
                h = h.mean(axis=tuple(range(1, h.ndim - 1)))
            elif kind == "dense":
                h = h @ ps[0] + ps[1]
            new_stats.append(st)
        return h, new_stats

    if w["mode"] == "predict":
        f = jax.jit(lambda p, s, x: jax.nn.softmax(forward(p, s, x, None, False)[0]))
        return lambda: f(params, stats, x).block_until_ready()

    def loss_fn(params, stats, key):
        logits, new_stats = forward(params, stats, x, key, True)
        logp = jax.nn.log_softmax(logits)
        if y.ndim == 2:
            return -jnp.mean(jnp.sum(y * logp, axis=1)), new_stats
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), new_stats

    @jax.jit
    def step(params, stats, m, v, t, key):
        key, sub = jax.random.split(key)
        grads, stats = jax.grad(loss_fn, has_aux=True)(params, stats, sub)
        t = t + 1
        alpha = 1e-3 * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        m = jax.tree_util.tree_map(lambda mi, g: mi + (g - mi) * 0.1, m, grads)
        v = jax.tree_util.tree_map(lambda vi, g: vi + (g * g - vi) * 0.001, v, grads)
        params = jax.tree_util.tree_map(lambda p, mi, vi: p - mi * alpha / (jnp.sqrt(vi) + 1e-7),
                                        params, m, v)
        return params, stats, m, v, t, key

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = [params, stats, zeros, zeros, jnp.zeros((), jnp.float32), jax.random.PRNGKey(0)]

    def run():
        state[:] = step(*state)
        jax.block_until_ready(state[0])
    return run


def _jax_conv(jax, lax, w):
    x, dy = data(w)
    kern = weights(w)
    pad = (w["k"] - 1) // 2

    def conv(x, kern):
        return lax.conv_general_dilated(x, kern, (1, 1), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if w["mode"] == "forward":
        f = jax.jit(conv)
        return lambda: f(x, kern).block_until_ready()

    @jax.jit
    def grad(x, kern, dy):
        y, pullback = jax.vjp(conv, x, kern)
        return (y, *pullback(dy))
    return lambda: jax.block_until_ready(grad(x, kern, dy))


# ------------------------------------------------------------------------- onnxruntime
def onnxruntime_step(w, threads=2):
    """The model as a channels-first ONNX graph run by ONNX Runtime: inference only."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise Unavailable("onnxruntime/onnx are not installed") from None
    if w["mode"] not in ("predict", "forward"):
        raise Unavailable("ONNX Runtime is measured on inference only")
    x, _ = data(w)
    nodes, inits = [], []
    names = iter(range(10 ** 6))

    def add(op, inputs, arrays=(), **attrs):
        for a in arrays:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(a), f"c{next(names)}"))
            inputs = inputs + [inits[-1].name]
        out = f"v{next(names)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(h, kern, bias, k, padding, rank):
        p = (k - 1) // 2 if padding == "same" else 0
        return add("Conv", [h], [_torch_layout(kern, rank)] + ([bias] if bias is not None else []),
                   kernel_shape=[k] * rank, pads=[p] * (2 * rank))
    h = "x"
    if w["kind"] == "conv":
        h = conv(h, weights(w), None, w["k"], "same", 2)
        out_shape = [None, w["cout"], *w["hw"]]
    else:
        rank, flattened_from = _rank(w), None
        for layer, sin, ps in zip(w["net"], in_shapes(w), weights(w)):
            kind = layer[0]
            if kind == "conv":
                h = conv(h, ps[0], ps[1], layer[2], layer[3], rank)
                h = add("Relu", [h]) if layer[4] == "relu" else h
            elif kind == "maxpool":
                h = add("MaxPool", [h], kernel_shape=[layer[1]] * rank, strides=[layer[1]] * rank)
            elif kind == "flatten":
                flattened_from = sin
                h = add("Flatten", [h], axis=1)
            elif kind == "dense":
                kern = ps[0]
                if flattened_from is not None:
                    kern = np.moveaxis(kern.reshape(*flattened_from, -1), -2, 0).reshape(kern.shape)
                h = add("Gemm", [h], [kern, ps[1]])
                h = add("Softmax", [h], axis=1) if layer[2] == "softmax" else h
            elif kind != "dropout":
                raise Unavailable(f"no ONNX translation of {kind!r} written here")
        out_shape = [None, out_shapes(w)[-1][0]]
    x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, *x.shape[1:]])],
                              [helper.make_tensor_value_info(h, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})
