"""Reverse-mode differentiation: Graph -> Graph with a gradient output per param.

`backprop` walks the values between the seeds and the wanted leaves in reverse
topological order, applies each primitive's VJP rule, adds up fan-in, and sums
broadcast cotangents back to their operand's shape. Operands that get no
gradient (labels, masks, comparisons) are skipped: zero cotangents are never
built. A scan's results are gathered first and differentiated together as a
reverse scan (scan_vjp.py).
"""
from __future__ import annotations

from .. import builder as F
from ..builder import Sym
from ..graph import Graph
from ..ops import get_op
from .reach import downstream, upstream

GRAD_PREFIX = "grad/"


def backprop(g: Graph, seeds: dict[int, Sym], wrt: list[int]) -> dict[int, Sym | None]:
    """Cotangents of `wrt` values given output cotangents `seeds` (adds ops to g)."""
    from .scan_vjp import scan_vjp
    needed = upstream(g.dag, seeds)
    from_wrt = downstream(g.dag, wrt)
    active = needed & from_wrt
    cot: dict[int, Sym] = dict(seeds)
    scan_cots: dict[int, dict[int, Sym]] = {}
    outer_scope = g.scope
    for vid in reversed([v for v in g.order() if v in active]):
        node = g.nodes[vid]
        if node.is_leaf or vid not in cot:
            continue
        g.scope = node.scope + "/grad" if node.scope else "grad"
        if node.op == "scan_result":
            scan_cots.setdefault(node.inputs[0], {})[node.params["index"]] = cot[vid]
            cot.setdefault(node.inputs[0], cot[vid])    # marks the scan as reached
            continue
        xs = [Sym(g, i) for i in node.inputs]
        if node.op == "scan":
            cts = scan_vjp(g, vid, scan_cots.get(vid, {}), [i in active for i in node.inputs])
        else:
            opdef = get_op(node.op)
            if opdef.vjp is None:
                raise NotImplementedError(f"VJP rule for {node.op!r} not implemented")
            cts = opdef.vjp(F, xs, Sym(g, vid), cot[vid], node.params)
        for x, ct in zip(xs, cts):
            if ct is None or x.id not in active:
                continue
            ct = F.sum_to_shape(ct, x.shape)
            cot[x.id] = cot[x.id] + ct if x.id in cot else ct
    g.scope = outer_scope
    return {w: cot.get(w) for w in wrt}


def autodiff(graph: Graph, loss: str = "loss", wrt_role: str = "param") -> Graph:
    """Add outputs 'grad/<name>' = d(outputs[loss]) / d(leaf) for every `wrt_role` leaf."""
    g = graph.copy()
    loss_id = g.outputs[loss]
    if g.type(loss_id).shape != ():
        raise ValueError(f"the loss must be a scalar, got {g.type(loss_id)}")
    wrt = g.leaves(wrt_role)
    grads = backprop(g, {loss_id: F.lift(g, 1.0)}, wrt)
    for p in wrt:
        ct = grads[p]
        if ct is None:      # the loss does not depend on this param
            ct = F.broadcast_to(F.lift(g, 0.0), g.type(p).shape)
        g.outputs[GRAD_PREFIX + g.nodes[p].name] = ct.id
    return g
