"""Common-subexpression elimination: one value per (op, operands, attributes)."""
from __future__ import annotations

from ..graph import Graph

_MAX_CONST_KEY = 4096   # constants up to this size are compared by content


def _key(g: Graph, vid: int):
    n = g.nodes[vid]
    if n.is_leaf:
        if n.role == "constant" and n.value.size <= _MAX_CONST_KEY:
            return ("const", n.type, n.value.tobytes())
        return None
    return (n.op, n.inputs, n.attrs)


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """The graph with one value per expression (the graph itself when it has no
    repeat: copied on the first one)."""
    g = graph
    seen: dict = {}
    for vid in graph.order():       # operands are canonical before their users are keyed
        key = _key(g, vid)
        if key is None:
            continue
        if key in seen:
            if g is graph:
                g = graph.copy()
            g.replace_uses(vid, seen[key])
        else:
            seen[key] = vid
    return g
