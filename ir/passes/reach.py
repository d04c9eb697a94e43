"""Values reachable from a set of values, in one walk of the graph.

A walk per source (networkx's ancestors / descendants of each root) costs
sources x graph size: for a deep model's hundreds of outputs and updates that
was the largest part of its compile time. One walk from all of them at once
visits each value once.
"""
from __future__ import annotations


def upstream(dag, sources) -> set:
    """`sources` and every value they are computed from."""
    return _walk(dag.predecessors, sources)


def downstream(dag, sources) -> set:
    """`sources` and every value computed from them."""
    return _walk(dag.successors, sources)


def _walk(step, sources) -> set:
    seen = set(sources)
    stack = list(seen)
    while stack:
        for u in step(stack.pop()):
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return seen
