"""Dead-code elimination: drop ops and constants no output or update needs."""
from __future__ import annotations

import networkx as nx

from ..graph import Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    g = graph.copy()
    live = set(g.roots())
    for r in list(live):
        live |= nx.ancestors(g.dag, r)
    # Non-constant leaves stay: they are the entry point's signature.
    dead = [v for v, n in g.nodes.items()
            if v not in live and not (n.is_leaf and n.role != "constant")]
    g.remove(dead)
    return g
