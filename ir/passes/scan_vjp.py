"""The VJP of a scan is a scan running the other way.

The forward scan keeps the carries it started each step with (its third group
of results). The backward body recomputes one forward step from the saved
carry and the step's inputs, and backpropagates through it: its carries are
the cotangents of the carries and running sums of the constants' gradients;
its per-step outputs are the gradients of the scanned inputs. Memory is the
saved carries, O(T x carry), as in JAX's scan without checkpointing.

Except what is dear to recompute and cheap to keep: the step's transcendentals
(sigmoid, tanh, exp: their VJPs read their own values) and its products of a carry
still needed once those are kept. The forward scan keeps their values too, as more
per-step outputs, and the backward step reads them (an LSTM's: its gates; W3's
backward scan took 37.4 ms recomputing them, 23.4 reading them, on one thread).
They cost T x (their size) of memory, bounded by RESIDUAL_BYTES.
"""
from __future__ import annotations

from dataclasses import replace

from .. import builder as F
from ..builder import Sym
from ..graph import Graph, TensorType, freeze_attrs
from ..ops import Body, scan_result_types
from .dce import eliminate_dead_code
from .reach import downstream

# Values a backward step reads from the forward scan instead of recomputing: the
# transcendentals of a step (their VJPs read their own values: an LSTM's gates) and its
# matrix products of a carry that are still read once those are kept (a product that
# feeds only kept gates is not).
KEPT_OPS = frozenset({"sigmoid", "tanh", "exp"})
# Kept values of a scan at most this many bytes in all (T steps): past it, recompute.
RESIDUAL_BYTES = 64 << 20
# Products kept only when they sum at least this many terms: a shorter one costs less
# to recompute than its value costs to store and read back.
RESIDUAL_MIN_K = 16


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


def _keepable(body: Body) -> tuple[list[int], list[int]]:
    """(transcendentals, products) of the body that depend on a carry, in body order."""
    bg = body.graph
    carried = downstream(bg.dag, [body.leaf(f"c{i}") for i in range(body.n_carry)])
    ops, products = [], []
    for v in bg.order():
        n = bg.nodes[v]
        if v not in carried:
            continue
        if n.op in KEPT_OPS:
            ops.append(v)
        elif n.op == "matmul":
            a = bg.type(n.inputs[0]).shape
            if (a[0] if n.params["transpose_a"] else a[1]) >= RESIDUAL_MIN_K:
                products.append(v)
    return ops, products


def _keep(g: Graph, scan_id: int, kept: list[int]) -> Body:
    """The scan's body with the kept values as more per-step outputs (after its own),
    set on the scan node; results indexed past the outputs move up."""
    node = g.nodes[scan_id]
    body = node.params["body"]
    bg = body.graph.copy()
    for r, v in enumerate(kept):
        bg.outputs[f"y{body.n_ys + r}"] = v
    new = Body(bg, body.n_consts, body.n_carry, body.n_xs, body.n_ys + len(kept))
    g.replace_node(scan_id, replace(node, attrs=freeze_attrs({**node.params, "body": new})))
    first_saved = body.n_carry + body.n_ys
    for u in g.users(scan_id):
        n = g.nodes[u]
        if n.op == "scan_result" and n.params["index"] >= first_saved:
            g.replace_node(u, replace(n, attrs=freeze_attrs(
                {**n.params, "index": n.params["index"] + len(kept)})))
    return new


def _live(g: Graph, v: int) -> bool:
    """Whether v reaches the graph's outputs or updates."""
    roots = set(g.roots())
    return v in roots or bool(downstream(g.dag, [v]) & roots)


def scan_vjp(g: Graph, scan_id: int, cts: dict[int, Sym], wanted: list[bool]):
    from .autodiff import backprop
    node = g.nodes[scan_id]
    a = node.params
    body, T = a["body"], a["length"]
    nk, nc, nx, ny = body.n_consts, body.n_carry, body.n_xs, body.n_ys
    consts = node.inputs[:nk]
    xs = node.inputs[nk + nc:nk + nc + nx]
    float_consts = [m for m in range(nk) if g.type(consts[m]).dtype == "float32"]
    ys_with_ct = [q for q in range(ny) if nc + q in cts]

    # The backward step: one forward step recomputed, and backpropagated.
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

    # Values the forward scan keeps for the backward step: every use of their
    # recomputation (the forward ops after them, and the VJPs that read them) reads
    # the kept value; the recomputation is then dead code.
    ops, products = _keepable(body)
    kept = []
    first = nc + nx + len(ys_with_ct)
    budget = RESIDUAL_BYTES

    def read_kept(values):
        nonlocal budget
        for v in values:
            nbytes = T * body.graph.type(v).nbytes
            if nbytes > budget or not _live(bb, m[v]):
                continue
            leaf = bb.leaf("input", body.graph.type(v), f"x{first + len(kept)}")
            bb.replace_uses(m[v], leaf)
            kept.append(v)
            budget -= nbytes
    read_kept(ops)
    read_kept(products)     # (those the kept transcendentals leave live)
    if kept:
        body = _keep(g, scan_id, kept)
        node, a = g.nodes[scan_id], g.nodes[scan_id].params
    types = scan_result_types(body, T)

    def forward_result(i):
        return Sym(g, g.add("scan_result", [scan_id], index=i, shape=types[i].shape,
                            dtype=types[i].dtype))
    saved = [forward_result(nc + body.n_ys + i) for i in range(nc)]
    kept_values = [forward_result(nc + ny + r) for r in range(len(kept))]
    if kept:
        bb = eliminate_dead_code(bb)        # the recomputations the kept values replace
    bbody = Body(bb, nk, nc + len(float_consts), nc + nx + len(ys_with_ct) + len(kept), nx)

    init = [cts[i] if i in cts else _zeros(g, types[i]) for i in range(nc)]
    init += [_zeros(g, g.type(consts[mk])) for mk in float_consts]
    seqs = saved + [Sym(g, x) for x in xs] + [cts[nc + q] for q in ys_with_ct] + kept_values
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
