"""Model-level checks shared by the layer tests: trace a model with a random linear
loss, and compare the reference interpreter's float64 gradients with finite differences."""
from __future__ import annotations

import zlib

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff, simplify
from kcompile.tracing import Trace, tracing


def loss_trace(model, xs, training=False, seed=0):
    """The model traced on `xs`' shapes; outputs y_j and loss = sum_j <y_j, R_j> (R fixed random)."""
    trace = Trace()
    trainable = {id(w) for w in model.trainable_weights}
    trace.is_trainable = lambda v: id(v) in trainable
    rng = np.random.default_rng(seed)
    feeds = {}
    with tracing(trace):
        ins = []
        for i, a in enumerate(xs):
            a = np.asarray(a)
            ins.append(trace.input(f"x{i}", a.shape, "int32" if a.dtype.kind in "iu" else "float32"))
            feeds[f"x{i}"] = a
        outs = model.forward(ins, training=training)
        loss = None
        for j, o in enumerate(outs):
            trace.graph.outputs[f"y{j}"] = o.id
            r = trace.input(f"r{j}", o.shape)
            feeds[f"r{j}"] = rng.normal(size=o.shape)
            term = F.sum(o * r)
            loss = term if loss is None else loss + term
        trace.graph.outputs["loss"] = loss.id
    for v in trace.variables:
        feeds[v.path] = v.numpy().astype(np.float64)
    return trace, feeds


def check_gradients_fd(model, xs, training=False, per_weight=4, eps=1e-6, rtol=1e-5,
                       atol=1e-6, seed=0):
    """autodiff on the reference interpreter (float64) against central differences."""
    trace, feeds = loss_trace(model, xs, training, seed)
    g = simplify(trace.graph)
    outs, _ = interpret(autodiff(g), feeds, float64=True)
    rng = np.random.default_rng(seed + 1)
    checked = 0
    for v in model.trainable_weights:
        grad = outs[f"grad/{v.path}"]
        assert grad.shape == v.shape
        n = int(np.prod(v.shape))
        for flat in rng.choice(n, size=min(per_weight, n), replace=False):
            idx = np.unravel_index(flat, v.shape)
            vals = []
            for sgn in (1, -1):
                f2 = dict(feeds)
                w = feeds[v.path].copy()
                w[idx] += sgn * eps
                f2[v.path] = w
                vals.append(float(interpret(g, f2, float64=True)[0]["loss"]))
            fd = (vals[0] - vals[1]) / (2 * eps)
            ad = float(grad[idx])
            assert abs(fd - ad) <= atol + rtol * max(abs(fd), abs(ad)), \
                f"{v.path}{idx}: autodiff {ad!r} vs finite differences {fd!r}"
            checked += 1
    assert checked > 0


def graph_state(graphs, values):
    """A State holding the param/state leaves of `graphs`, set from `values` by name."""
    from kcompile.runtime.state import State
    layout = [(g.nodes[v].name, g.type(v)) for g in graphs for v in g.leaves()
              if g.nodes[v].role in ("param", "state")]
    st = State(layout)
    for name in st.views:
        st.assign(name, values[name])
    return st


def graph_feeds(g, values):
    """The input and target leaves of g, from `values` by name."""
    return {g.nodes[v].name: values[g.nodes[v].name] for v in g.leaves()
            if g.nodes[v].role in ("input", "target")}


def graph_rng(name: str) -> np.random.Generator:
    """A generator per graph: values do not depend on which tests run first."""
    return np.random.default_rng(zlib.crc32(name.encode()))


class G:
    """A graph under construction with the values of its leaves."""

    def __init__(self, prefix=""):
        self.g = Graph()
        self.prefix = prefix
        self.values: dict[str, np.ndarray] = {}
        self.rng = graph_rng(prefix)

    def leaf(self, role, value, name, dtype="float32"):
        value = np.asarray(value, dtype=dtype)
        name = self.prefix + name
        self.values[name] = value
        return Sym(self.g, self.g.leaf(role, TensorType(value.shape, dtype), name))

    def input(self, value, name, dtype="float32"):
        return self.leaf("input", value, name, dtype)

    def param(self, value, name):
        return self.leaf("param", value, name)

    def out(self, **outs):
        for k, s in outs.items():
            self.g.outputs[k] = s.id
        return self


def native_and_reference(build, nthreads, optimizer, **compile_args):
    """Two copies of build()'s model, compiled native on `nthreads` threads and on the
    reference interpreter, with the same weights. `optimizer`: a name, or a function
    making one (each model needs its own: an optimizer counts its steps)."""
    out = []
    for backend in ("native", "reference"):
        m = build()
        m.compile(optimizer=optimizer() if callable(optimizer) else optimizer,
                  **compile_args, backend=backend)
        m._nthreads = nthreads
        out.append(m)
    out[1].set_weights(out[0].get_weights())
    return out


def assert_trains_alike(nat, ref, x, y, steps, rtol=1e-4):
    """`steps` train_on_batch steps of both: the same losses, then the same weights."""
    for _ in range(steps):
        a, b = nat.train_on_batch(x, y), ref.train_on_batch(x, y)
        assert np.isclose(a, b, rtol=rtol, atol=1e-6), (a, b)
    for w, v in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(w, v, rtol=rtol, atol=1e-5)
