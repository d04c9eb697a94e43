"""ir/passes/bind_length.py: a graph traced at capacity L, run for T steps read at run
time, equals the graph traced at length T (reference interpreter, float64), forward and
gradients, whatever the padding holds; ops that mix positions are refused."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff, simplify
from kcompile.ir.passes.bind_length import NotPositionWise, bind_length

B, D, U = 2, 3, 4


def graph(T):
    """Time-major scan, a Dense over merged (batch*time) rows, a mean, a max and a log
    sum over time: the shapes a recurrent model's loss has."""
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((B, T, D)), "x"))
    W = Sym(g, g.leaf("param", TensorType((D, U)), "W"))
    R = Sym(g, g.leaf("param", TensorType((U, U)), "R"))
    xt = F.reshape(F.transpose(x, (1, 0, 2)), (T * B, D))
    xw = F.reshape(xt @ W, (T, B, U))

    def step(k, c, xs):
        h = F.tanh(xs[0] + c[0] @ k[0])
        return [h], [h]
    (h,), (ys,) = F.scan(step, [R], [F.broadcast_to(F.lift(g, 0.0), (B, U))], [xw])
    seq = F.transpose(ys, (1, 0, 2))                                  # (B, T, U)
    dense = F.reshape(F.reshape(seq, (B * T, U)) @ R, (B, T, U))
    loss = F.sum(F.mean(dense * dense, axis=(1, 2))) + F.sum(F.max(seq, axis=1)) \
        + F.sum(h) + F.mean(F.log(x * x + 1.0)) + F.sum(F.log(F.abs(x)))
    g.outputs["loss"] = loss.id
    g.outputs["seq"] = seq.id
    return g


def values(T, seed=0):
    r = np.random.default_rng(seed)
    return {"x": r.normal(size=(B, T, D)) + 0.1, "W": r.normal(size=(D, U)) * 0.5,
            "R": r.normal(size=(U, U)) * 0.5}


@pytest.mark.parametrize("T", [1, 4, 8])
def test_run_time_length_equals_exact_length(T):
    L = 8
    v = values(T)
    want, _ = interpret(autodiff(simplify(graph(T))), v, float64=True)
    g, outs = bind_length(graph(L), {"x": 1}, L)
    assert outs == {"seq": (1, 1)}
    padded = dict(v)
    # zeros (log -> -inf, whose gradient is inf) and NaN in the padding stay out
    padded["x"] = np.concatenate([v["x"], np.zeros((B, L - T, D))], axis=1)
    if L - T > 1:
        padded["x"][:, -1] = np.nan
    g, _ = bind_length(autodiff(simplify(g)), {"x": 1}, L)     # the backward pass's sums
    got, _ = interpret(g, {**padded, "steps": np.int32(T)}, float64=True)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-10)
    np.testing.assert_allclose(got["seq"][:, :T], want["seq"], rtol=1e-10)
    for k in ("grad/W", "grad/R"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def refused(build):
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((B, 8, D)), "x"))
    g.outputs["y"] = build(g, x).id
    with pytest.raises(NotPositionWise):
        bind_length(g, {"x": 1}, 8)


def test_ops_that_mix_positions_are_refused():
    refused(lambda g, x: F.slice_axis(x, 1, 7, 8))                      # the last step
    refused(lambda g, x: F.reshape(x, (B, 8 * D)) @ Sym(g, g.constant(np.ones((8 * D, 2)))))
    refused(lambda g, x: F.gather(F.transpose(x, (1, 0, 2)),
                                  F.lift(g, np.arange(7, -1, -1), "int32")))  # reversed
    refused(lambda g, x: F.reshape(x, (B * 2, 4, D)))                     # splits the axis
    refused(lambda g, x: F.argmax(F.transpose(x, (0, 2, 1)), axis=-1))
