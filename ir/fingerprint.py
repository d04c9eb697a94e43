"""A content hash of a graph: ops, types, roles, names, attributes and constant values."""
from __future__ import annotations

import hashlib

from .graph import Graph


def graph_fingerprint(graph: Graph) -> str:
    h = hashlib.sha256()
    order = graph.order()
    pos = {v: n for n, v in enumerate(order)}
    for v in order:
        n = graph.nodes[v]
        h.update(repr((n.op, tuple(pos[i] for i in n.inputs), n.type.shape, n.type.dtype,
                       n.attrs, n.role, n.name)).encode())
        if n.value is not None:
            h.update(n.value.tobytes())
    h.update(repr(sorted((k, pos[v]) for k, v in graph.outputs.items())).encode())
    h.update(repr(sorted((pos[k], pos[v]) for k, v in graph.updates.items())).encode())
    return h.hexdigest()
