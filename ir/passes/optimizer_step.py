"""Append the optimizer's update to a differentiated graph: Graph -> Graph.

`rule(g, pairs)` receives (param, gradient) Sym pairs and returns the new
value of every leaf it updates (params and its own state leaves); those become
the graph's in-place updates. The gradient outputs are consumed.
"""
from __future__ import annotations

from typing import Callable

from ..builder import Sym
from ..graph import Graph
from .autodiff import GRAD_PREFIX


def optimizer_step(graph: Graph, rule: Callable) -> Graph:
    g = graph.copy()
    pairs = []
    for name in [k for k in g.outputs if k.startswith(GRAD_PREFIX)]:
        param = g.leaf_by_name(name[len(GRAD_PREFIX):])
        pairs.append((Sym(g, param), Sym(g, g.outputs.pop(name))))
    g.scope = "optimizer"
    for leaf, new in rule(g, pairs).items():
        leaf_id = leaf.id if isinstance(leaf, Sym) else leaf
        if g.nodes[leaf_id].role not in ("param", "state"):
            raise ValueError(f"only param/state leaves can be updated, not {g.nodes[leaf_id].name!r}")
        if new.type != g.type(leaf_id):
            raise TypeError(f"update of {g.nodes[leaf_id].name!r}: {new.type} != {g.type(leaf_id)}")
        g.updates[leaf_id] = new.id
    g.scope = ""
    return g
