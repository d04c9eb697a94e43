"""The VJP of a scan is a scan running the other way.

The forward scan keeps the carries it started each step with (its third group
of results). The backward body recomputes one forward step from the saved
carry and the step's inputs, and backpropagates through it: its carries are
the cotangents of the carries and running sums of the constants' gradients;
its per-step outputs are the gradients of the scanned inputs. Memory is the
saved carries, O(T x carry), as in JAX's scan without checkpointing.
"""
from __future__ import annotations

from .. import builder as F
from ..builder import Sym
from ..graph import Graph, TensorType
from ..ops import Body, scan_result_types


def inline(src: Graph, dst: Graph, leaf_map: dict[str, int]) -> dict[int, int]:
    """Copy src's ops into dst with its named leaves bound to dst values."""
    m = {}
    for v in src.order():
        n = src.nodes[v]
        if n.is_leaf:
            m[v] = dst.constant(n.value, n.type.dtype) if n.role == "constant" else leaf_map[n.name]
        else:
            m[v] = dst.add(n.op, [m[i] for i in n.inputs], **n.params)
    return m


def _zeros(g: Graph, t: TensorType) -> Sym:
    return F.broadcast_to(F.lift(g, 0.0, t.dtype), t.shape)


def scan_vjp(g: Graph, scan_id: int, cts: dict[int, Sym], wanted: list[bool]):
    from .autodiff import backprop
    node = g.nodes[scan_id]
    a = node.params
    body, T = a["body"], a["length"]
    nk, nc, nx, ny = body.n_consts, body.n_carry, body.n_xs, body.n_ys
    consts = node.inputs[:nk]
    xs = node.inputs[nk + nc:nk + nc + nx]
    types = scan_result_types(body, T)
    saved = [Sym(g, g.add("scan_result", [scan_id], index=nc + ny + i, shape=types[nc + ny + i].shape,
                          dtype=types[nc + ny + i].dtype)) for i in range(nc)]
    float_consts = [m for m in range(nk) if g.type(consts[m]).dtype == "float32"]
    ys_with_ct = [q for q in range(ny) if nc + q in cts]

    # The backward step.
    bb = Graph()
    K = [bb.leaf("input", body.type_of(f"k{m}"), f"k{m}") for m in range(nk)]
    CT = [bb.leaf("state", body.type_of(f"c{i}"), f"c{i}") for i in range(nc)]
    ACC = [bb.leaf("state", body.type_of(f"k{m}"), f"c{nc + n}") for n, m in enumerate(float_consts)]
    C = [bb.leaf("input", body.type_of(f"c{i}"), f"x{i}") for i in range(nc)]
    X = [bb.leaf("input", body.type_of(f"x{j}"), f"x{nc + j}") for j in range(nx)]
    CTY = [bb.leaf("input", body.graph.type(body.graph.outputs[f"y{q}"]), f"x{nc + nx + n}")
           for n, q in enumerate(ys_with_ct)]
    leaf_map = {**{f"k{m}": K[m] for m in range(nk)}, **{f"c{i}": C[i] for i in range(nc)},
                **{f"x{j}": X[j] for j in range(nx)}}
    m = inline(body.graph, bb, leaf_map)
    seeds: dict[int, Sym] = {}

    def seed(v, ct):
        seeds[v] = Sym(bb, seeds[v].id) + ct if v in seeds else ct
    for i in range(nc):
        c_leaf = body.leaf(f"c{i}")
        new_c = m[body.graph.updates.get(c_leaf, c_leaf)]
        seed(new_c, Sym(bb, CT[i]))
    for n, q in enumerate(ys_with_ct):
        seed(m[body.graph.outputs[f"y{q}"]], Sym(bb, CTY[n]))
    grads = backprop(bb, seeds, K + C + X)
    for i in range(nc):
        gc = grads[C[i]]
        bb.updates[CT[i]] = (gc if gc is not None else _zeros(bb, bb.type(C[i]))).id
    for n, mk in enumerate(float_consts):
        gk = grads[K[mk]]
        if gk is not None:
            bb.updates[ACC[n]] = (Sym(bb, ACC[n]) + gk).id
    for j in range(nx):
        gx = grads[X[j]]
        bb.outputs[f"y{j}"] = (gx if gx is not None else _zeros(bb, bb.type(X[j]))).id
    bbody = Body(bb, nk, nc + len(float_consts), nc + nx + len(ys_with_ct), nx)

    init = [cts[i] if i in cts else _zeros(g, types[i]) for i in range(nc)]
    init += [_zeros(g, g.type(consts[mk])) for mk in float_consts]
    seqs = saved + [Sym(g, x) for x in xs] + [cts[nc + q] for q in ys_with_ct]
    steps = [Sym(g, node.inputs[-1])] if a["dynamic"] else []    # the same run-time count
    back = F.op("scan", *[Sym(g, k) for k in consts], *init, *seqs, *steps, body=bbody,
                length=T, reverse=not a["reverse"], dynamic=a["dynamic"])
    btypes = scan_result_types(bbody, T)

    def result(i):
        return Sym(g, g.add("scan_result", [back.id], index=i, shape=btypes[i].shape,
                            dtype=btypes[i].dtype))
    ct_consts = [None] * nk
    for n, mk in enumerate(float_consts):
        ct_consts[mk] = result(nc + n)
    ct_init = [result(i) for i in range(nc)]
    nbc = nc + len(float_consts)
    ct_xs = [result(nbc + j) for j in range(nx)]
    return ct_consts + ct_init + ct_xs
