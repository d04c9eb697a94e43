"""Constant folding: ops whose operands are all constants become constants.

Results larger than a limit stay as ops (a broadcast of a scalar zero is
cheaper to compute inside a fused loop than to store).
"""
from __future__ import annotations

from ..graph import Graph
from ..ops import get_op

MAX_FOLDED_SIZE = 1024


def fold_constants(graph: Graph) -> Graph:
    """The graph with foldable ops folded (the graph itself when none is: copied on
    the first fold)."""
    g = graph
    for vid in graph.order():
        n = g.nodes[vid]
        if n.is_leaf or n.type.size > MAX_FOLDED_SIZE or get_op(n.op).kind == "scan":
            continue
        if all(g.nodes[i].is_leaf and g.nodes[i].role == "constant" for i in n.inputs):
            value = get_op(n.op).reference([g.nodes[i].value for i in n.inputs], n.params)
            if g is graph:
                g = graph.copy()
            const = g.constant(value, n.type.dtype)
            g.replace_uses(vid, const)
    return g
