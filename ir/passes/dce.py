"""Dead-code elimination: drop ops and constants no output or update needs."""
from __future__ import annotations

from ..graph import Graph
from .reach import upstream


def eliminate_dead_code(graph: Graph) -> Graph:
    """The graph without dead values (the graph itself when it has none)."""
    live = upstream(graph.dag, graph.roots())
    # Non-constant leaves stay: they are the entry point's signature.
    dead = [v for v, n in graph.nodes.items()
            if v not in live and not (n.is_leaf and n.role != "constant")]
    if not dead:
        return graph
    g = graph.copy()
    g.remove(dead)
    return g
