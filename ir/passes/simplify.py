"""simplify: constant folding, algebraic rewrites, CSE and dead code, to a fixed point;
then loop-invariant transposes out of scan bodies (hoist_scan)."""
from __future__ import annotations

from ..graph import Graph
from .algebraic import rewrite_algebraic
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold_constants import fold_constants
from .hoist_scan import hoist_transposes


def simplify(graph: Graph, max_rounds: int = 4) -> Graph:
    g = graph
    for _ in range(max_rounds):
        size = len(g)
        g = eliminate_dead_code(g)
        g = fold_constants(g)
        g = eliminate_common_subexpressions(g)
        g = rewrite_algebraic(g)
        g = eliminate_dead_code(g)
        if len(g) == size:
            break
    return hoist_transposes(g)
