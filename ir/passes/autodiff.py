"""Reverse-mode differentiation: Graph -> Graph with a gradient output per param.

Walks the values the loss depends on in reverse topological order, applies
each primitive's VJP rule, adds up fan-in, and sums broadcast cotangents back
to their operand's shape. Operands that get no gradient (labels, masks,
comparisons) are skipped: zero cotangents are never built.
"""
from __future__ import annotations

import networkx as nx

from .. import builder as F
from ..builder import Sym
from ..graph import Graph
from ..ops import get_op

GRAD_PREFIX = "grad/"


def autodiff(graph: Graph, loss: str = "loss", wrt_role: str = "param") -> Graph:
    """Add outputs 'grad/<name>' = d(outputs[loss]) / d(leaf) for every `wrt_role` leaf."""
    g = graph.copy()
    loss_id = g.outputs[loss]
    if g.type(loss_id).shape != ():
        raise ValueError(f"the loss must be a scalar, got {g.type(loss_id)}")
    wrt = g.leaves(wrt_role)
    # Only values on a path from a param to the loss need cotangents.
    needed = nx.ancestors(g.dag, loss_id) | {loss_id}
    from_params = set(wrt).union(*(nx.descendants(g.dag, p) for p in wrt)) if wrt else set()
    active = needed & from_params
    cot: dict[int, Sym] = {loss_id: F.lift(g, 1.0)}
    order = [v for v in g.order() if v in active]
    for vid in reversed(order):
        node = g.nodes[vid]
        if node.is_leaf or vid not in cot:
            continue
        opdef = get_op(node.op)
        if opdef.vjp is None:
            raise NotImplementedError(f"VJP rule for {node.op!r} not implemented")
        g.scope = node.scope + "/grad" if node.scope else "grad"
        xs = [Sym(g, i) for i in node.inputs]
        cts = opdef.vjp(F, xs, Sym(g, vid), cot[vid], node.params)
        for x, ct in zip(xs, cts):
            if ct is None or x.id not in active:
                continue
            ct = F.sum_to_shape(ct, x.shape)
            cot[x.id] = cot[x.id] + ct if x.id in cot else ct
    g.scope = ""
    for p in wrt:
        name = g.nodes[p].name
        ct = cot.get(p)
        if ct is None:      # the loss does not depend on this param
            ct = F.broadcast_to(F.lift(g, 0.0), g.type(p).shape)
        g.outputs[GRAD_PREFIX + name] = ct.id
    return g
