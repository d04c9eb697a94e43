"""schedule: kernels in dependency levels, so dependent kernels are few barriers apart.

On several threads a barrier separates a kernel from the kernels it depends on
(codegen/module.py). In the order fuse produces, a short chain that does not
depend on the main one (a loss's count of real samples: sum, divide, scale)
sits between its links and costs a barrier per link. Here every kernel goes
to the level after the deepest kernel it reads from (ASAP), and kernels of one
level, being independent, run back to back. A kernel that writes a parameter
in place also waits for every kernel that reads the old value. Views (no
code) stay on their operand's level. Ties keep fuse's order.
"""
from __future__ import annotations

from .fuse import FusedGraph, kernel_reads, producers


def schedule(fg: FusedGraph) -> FusedGraph:
    g = fg.graph
    kernels = fg.kernels
    producer = producers(kernels)
    readers_of_leaf: dict[int, list] = {}
    for k in kernels:
        for i in kernel_reads(g, k):
            if g.nodes[i].is_leaf:
                readers_of_leaf.setdefault(i, []).append(k)
    leaf_of_update = {u: leaf for leaf, u in g.updates.items()}
    level: dict[int, int] = {}
    for k in kernels:                              # fuse's order is topological
        deps = [producer[i] for i in kernel_reads(g, k) if i in producer and producer[i] is not k]
        for o in k.outputs:                        # read the old value before overwriting it
            leaf = leaf_of_update.get(o)
            deps += [r for r in readers_of_leaf.get(leaf, []) if r is not k]
        lv = 0
        for d in deps:
            lv = max(lv, level[id(d)] + (0 if d.kind == "view" else 1))
        level[id(k)] = lv
    order = {id(k): n for n, k in enumerate(kernels)}
    ordered = sorted(kernels, key=lambda k: (level[id(k)], order[id(k)]))
    if [id(k) for k in ordered] == [id(k) for k in kernels]:
        return fg
    for n, k in enumerate(ordered):
        k.name = f"k{n}_{k.name.split('_', 1)[1]}"
    return FusedGraph(g, ordered)
