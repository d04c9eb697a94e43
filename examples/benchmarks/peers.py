"""One setup function per system compared: each returns a `step()` to time.

Every peer runs the same workload (shapes, weights, data) and is imported only
in its own process, so one peer's threads or allocator never disturb another.
"""
from __future__ import annotations

import os
import sys

import numpy as np

import conv_peers
from unavailable import Unavailable
from workloads import data, weights

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
CONV_KINDS = ("convnet", "conv")


# ----------------------------------------------------------------------------- kcompile
def _kcompile_model(w, backend, nthreads):
    from kcompile import layers, models, optimizers
    model = models.Sequential()
    for i, (a, b, act) in enumerate(w["layers"]):
        kw = {"input_shape": (a,)} if i == 0 else {}
        model.add(layers.Dense(b, activation=act, **kw))
    opt = {"adam": optimizers.Adam(1e-3), "rmsprop": optimizers.RMSprop()}.get(w.get("optimizer"), "sgd")
    model.compile(optimizer=opt, loss="categorical_crossentropy", backend=backend, nthreads=nthreads)
    model.set_weights(weights(w))
    return model


def _kcompile_rnn(w, backend, nthreads):
    from kcompile import layers, models, optimizers
    if w["model"] == "imdb":
        model = models.Sequential([layers.Embedding(w["vocab"], w["embed"]), layers.LSTM(w["units"]),
                                   layers.Dense(1, activation="sigmoid")])
        model.build((None, w["steps"]))
        loss = "binary_crossentropy"
    else:
        model = models.Sequential([layers.LSTM(w["units"], input_shape=(w["steps"], 1)),
                                   layers.Dense(1)])
        loss = "mse"
    model.compile(optimizer=optimizers.Adam(1e-3), loss=loss, backend=backend, nthreads=nthreads)
    return model


def kcompile_peer(w, backend="native", nthreads=None, native=False):
    """Through the public calls a user makes (train_on_batch, predict_on_batch);
    `native=True` times the compiled entry alone, without the call around it (diagnosis)."""
    if w["kind"] in CONV_KINDS:
        return conv_peers.kcompile_step(w, backend, nthreads, native)
    x, y = data(w)
    if w["kind"] == "sgemm":
        return _kcompile_sgemm(x, y, backend, nthreads)
    model = _kcompile_rnn(w, backend, nthreads) if w["kind"] == "rnn" else \
        _kcompile_model(w, backend, nthreads)
    n = len(x)
    if w["kind"] in ("train", "rnn"):
        model.train_on_batch(x, y)
        if not native:
            return lambda: model.train_on_batch(x, y)
        exe = next(iter(model._executables.values()))
        feeds = {"x0": x, "y0": y, "mask": np.ones(n, np.float32),
                 "sample_weight": np.ones(n, np.float32)}
        return lambda: exe.run("train_step", feeds)
    model.predict_on_batch(x)
    if not native:
        return lambda: model.predict_on_batch(x)
    exe = next(iter(model._executables.values()))
    return lambda: exe.run("predict", {"x0": x})


def _kcompile_sgemm(x, y, backend, nthreads):
    """One matmul primitive, compiled and run alone (no public call exists for it)."""
    if backend != "native":
        raise Unavailable("sgemm is measured on the native backend only")
    from kcompile.ir import builder as F
    from kcompile.ir.builder import Sym
    from kcompile.ir.graph import Graph, TensorType
    from kcompile.runtime.executable import NativeExecutable
    from kcompile.runtime.state import State
    g = Graph()
    a = Sym(g, g.leaf("input", TensorType(x.shape), "a"))
    b = Sym(g, g.leaf("input", TensorType(y.shape), "b"))
    g.outputs["c"] = F.matmul(a, b).id
    exe = NativeExecutable({"mm": g}, State([]), nthreads=nthreads or 1)
    exe.run("mm", {"a": x, "b": y})       # the operands stay in the arena
    return lambda exe=exe: exe._fns["mm"]()


def kcompile_native_peer(w, nthreads):
    """The compiled entry alone, without the public call around it (for diagnosis)."""
    if w["kind"] == "sgemm":
        raise Unavailable("the kcompile row is already the native step on this workload")
    return kcompile_peer(w, "native", nthreads, native=True)


# -------------------------------------------------------------------------------- numpy
def numpy_peer(w):
    """A hand-written numpy MLP (forward, backward, optimizer), the plain baseline."""
    if w["kind"] in CONV_KINDS:
        return conv_peers.numpy_step(w)
    if w["kind"] == "rnn":
        raise Unavailable("no hand-written numpy LSTM")
    x, y = data(w)
    if w["kind"] == "sgemm":
        return lambda: x @ y
    ws = weights(w)
    acts = [act for _, _, act in w["layers"]]
    slots = [[np.zeros_like(p), np.zeros_like(p)] for p in ws]
    t = [0]

    def forward(x):
        hs = [x]
        for i, act in enumerate(acts):
            z = hs[-1] @ ws[2 * i] + ws[2 * i + 1]
            if act == "relu":
                z = np.maximum(z, 0)
            else:
                z = np.exp(z - z.max(axis=1, keepdims=True))
                z /= z.sum(axis=1, keepdims=True)
            hs.append(z)
        return hs

    if w["kind"] == "predict":
        return lambda: forward(x)[-1]

    def step():
        hs = forward(x)
        g = (hs[-1] - y) / len(x)
        grads = [None] * len(ws)
        for i in reversed(range(len(acts))):
            grads[2 * i] = hs[i].T @ g
            grads[2 * i + 1] = g.sum(axis=0)
            if i:
                g = (g @ ws[2 * i].T) * (hs[i] > 0)
        t[0] += 1
        for p, gr, (m, v) in zip(ws, grads, slots):
            if w["optimizer"] == "adam":
                m += (gr - m) * 0.1
                v += (gr * gr - v) * 0.001
                alpha = 1e-3 * np.sqrt(1 - 0.999 ** t[0]) / (1 - 0.9 ** t[0])
                p -= m * alpha / (np.sqrt(v) + 1e-7)
            else:
                v *= 0.9
                v += 0.1 * gr * gr
                p -= 1e-3 * gr / np.sqrt(v + 1e-7)
    return step


# -------------------------------------------------------------------------------- torch
def torch_peer(w, threads=1, compiled=False):
    try:
        import torch
    except ImportError:
        raise Unavailable("torch is not installed") from None
    torch.set_num_threads(threads)
    if w["kind"] in CONV_KINDS:
        return conv_peers.torch_step(w, threads, compiled)
    if w["kind"] == "rnn":
        return _torch_rnn(torch, w, compiled)
    x, y = (torch.from_numpy(a) for a in data(w))
    if w["kind"] == "sgemm":
        return lambda: x @ y
    ws = weights(w)
    mods = []
    for i, (a, b, act) in enumerate(w["layers"]):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(ws[2 * i].T.copy()))
            lin.bias.copy_(torch.from_numpy(ws[2 * i + 1]))
        mods.append(lin)
        if act == "relu":
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods)
    if w["kind"] == "predict":
        fwd = torch.compile(net) if compiled else net

        def predict():
            with torch.no_grad():
                return torch.softmax(fwd(x), dim=1)
        return predict
    opt = (torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7) if w["optimizer"] == "adam"
           else torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7))
    labels = y.argmax(dim=1)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()
        return loss
    return torch.compile(step) if compiled else step


def _torch_rnn(torch, w, compiled):
    x, y = (torch.from_numpy(a) for a in data(w))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(w["vocab"], w["embed"]) if w["model"] == "imdb" else None
            self.lstm = torch.nn.LSTM(w.get("embed", 1), w["units"], batch_first=True)
            self.out = torch.nn.Linear(w["units"], 1)

        def forward(self, x):
            h = self.emb(x.long()) if self.emb is not None else x
            _, (hT, _) = self.lstm(h)
            return self.out(hT[-1])
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    lossf = torch.nn.BCEWithLogitsLoss() if w["model"] == "imdb" else torch.nn.MSELoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(x), y)
        loss.backward()
        opt.step()
    return step


# ---------------------------------------------------------------------------------- jax
def jax_peer(w):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise Unavailable("jax is not installed") from None
    if w["kind"] in CONV_KINDS:
        return conv_peers.jax_step(w)
    if w["kind"] == "rnn":
        raise Unavailable("no JAX LSTM peer written yet")
    x, y = (jnp.asarray(a) for a in data(w))
    if w["kind"] == "sgemm":
        mm = jax.jit(lambda a, b: a @ b)
        return lambda: mm(x, y).block_until_ready()
    params = [jnp.asarray(p) for p in weights(w)]
    acts = [act for _, _, act in w["layers"]]

    def forward(params, x):
        h = x
        for i, act in enumerate(acts):
            z = h @ params[2 * i] + params[2 * i + 1]
            h = jax.nn.relu(z) if act == "relu" else z
        return h

    if w["kind"] == "predict":
        f = jax.jit(lambda p, x: jax.nn.softmax(forward(p, x)))
        return lambda: f(params, x).block_until_ready()

    def loss_fn(params):
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(forward(params, x)), axis=1))

    adam = w["optimizer"] == "adam"

    @jax.jit
    def step(params, m, v, t):
        grads = jax.grad(loss_fn)(params)
        t = t + 1
        new_p, new_m, new_v = [], [], []
        for p, g, mi, vi in zip(params, grads, m, v):
            if adam:
                mi = mi + (g - mi) * 0.1
                vi = vi + (g * g - vi) * 0.001
                alpha = 1e-3 * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
                p = p - mi * alpha / (jnp.sqrt(vi) + 1e-7)
            else:
                vi = 0.9 * vi + 0.1 * g * g
                p = p - 1e-3 * g / jnp.sqrt(vi + 1e-7)
            new_p.append(p), new_m.append(mi), new_v.append(vi)
        return new_p, new_m, new_v, t

    state = [params, [jnp.zeros_like(p) for p in params], [jnp.zeros_like(p) for p in params],
             jnp.zeros((), jnp.float32)]

    def run():
        state[:] = step(*state)
        state[0][0].block_until_ready()
    return run


# -------------------------------------------------------------------------------- keras
def keras_peer(w):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        raise Unavailable("keras is not installed") from None
    if w["kind"] in CONV_KINDS:
        return conv_peers.keras_step(w)
    if w["kind"] == "sgemm":
        raise Unavailable("sgemm is not a Keras workload")
    x, y = data(w)
    if w["kind"] == "rnn":
        if w["model"] == "imdb":
            model = keras.Sequential([keras.Input((w["steps"],)), keras.layers.Embedding(w["vocab"], w["embed"]),
                                      keras.layers.LSTM(w["units"]), keras.layers.Dense(1, activation="sigmoid")])
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        else:
            model = keras.Sequential([keras.Input((w["steps"], 1)), keras.layers.LSTM(w["units"]),
                                      keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        model.train_on_batch(x, y)
        return lambda: model.train_on_batch(x, y)
    model = keras.Sequential([keras.Input((w["layers"][0][0],))] + [
        keras.layers.Dense(b, activation=act) for _, b, act in w["layers"]])
    opt = keras.optimizers.Adam(1e-3) if w.get("optimizer") == "adam" else keras.optimizers.RMSprop()
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    model.set_weights(weights(w))
    if w["kind"] == "predict":
        model.predict_on_batch(x)
        return lambda: model.predict_on_batch(x)
    model.train_on_batch(x, y)
    return lambda: model.train_on_batch(x, y)


# ------------------------------------------------------------------------- onnxruntime
def onnxruntime_peer(w, threads=2):
    """The MLP as an ONNX graph (Gemm, Relu, Softmax) run by ONNX Runtime: predict only."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise Unavailable("onnxruntime/onnx are not installed") from None
    if w["kind"] in CONV_KINDS:
        return conv_peers.onnxruntime_step(w, threads)
    if w["kind"] != "predict":
        raise Unavailable("ONNX Runtime is measured on predict only")
    x, _ = data(w)
    ws = weights(w)
    nodes, inits, h = [], [], "x"
    for i, (_, _, act) in enumerate(w["layers"]):
        inits += [numpy_helper.from_array(ws[2 * i], f"W{i}"), numpy_helper.from_array(ws[2 * i + 1], f"b{i}")]
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [f"z{i}"]))
        h = f"h{i}"
        nodes.append(helper.make_node("Relu" if act == "relu" else "Softmax", [f"z{i}"], [h],
                                      **({} if act == "relu" else {"axis": 1})))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, x.shape[1]])],
                              [helper.make_tensor_value_info(h, TensorProto.FLOAT, [None, w["layers"][-1][1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})


PEERS = {
    "kcompile": lambda w: kcompile_peer(w, "native", None),
    "kcompile-1t": lambda w: kcompile_peer(w, "native", 1),
    "kcompile-2t": lambda w: kcompile_peer(w, "native", 2),
    "kcompile-reference": lambda w: kcompile_peer(w, "reference"),
    "kcompile-native": lambda w: kcompile_native_peer(w, None),
    "kcompile-native-1t": lambda w: kcompile_native_peer(w, 1),
    "numpy": numpy_peer,
    "torch-eager-1t": lambda w: torch_peer(w, 1),
    "torch-eager-2t": lambda w: torch_peer(w, 2),
    "torch-compile": lambda w: torch_peer(w, 2, compiled=True),
    "torch-compile-1t": lambda w: torch_peer(w, 1, compiled=True),
    "jax-jit": jax_peer,
    "keras3": keras_peer,
    "onnxruntime": onnxruntime_peer,
}
