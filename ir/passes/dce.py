"""Dead-code elimination: drop ops and constants no output or update needs."""
from __future__ import annotations

from ..graph import Graph
from .reach import upstream


def eliminate_dead_code(graph: Graph) -> Graph:
    g = graph.copy()
    live = upstream(g.dag, g.roots())
    # Non-constant leaves stay: they are the entry point's signature.
    dead = [v for v, n in g.nodes.items()
            if v not in live and not (n.is_leaf and n.role != "constant")]
    g.remove(dead)
    return g
