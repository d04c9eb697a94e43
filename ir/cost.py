"""Rough work estimates of a graph: floating-point operations and bytes moved."""
from __future__ import annotations

from .graph import Graph
from .ops import get_op


def flops(graph: Graph) -> float:
    """2*M*N*K per matmul, a scan's body times its length, one per output element
    for other ops."""
    total = 0.0
    for v, n in graph.nodes.items():
        if n.is_leaf:
            continue
        if n.op == "scan":
            total += flops(n.params["body"].graph) * n.params["length"]
        elif n.op == "matmul":
            a = graph.type(n.inputs[0]).shape
            k = a[0] if n.params["transpose_a"] else a[1]
            total += 2.0 * n.type.size * k
        elif get_op(n.op).kind == "reduction":
            total += graph.type(n.inputs[0]).size
        else:
            total += n.type.size
    return total


def scan_step_flops(graph: Graph) -> list[float]:
    """The work of one step of each scan of the graph (its body's flops)."""
    return [flops(n.params["body"].graph) for n in graph.nodes.values() if n.op == "scan"]


def leaf_bytes(graph: Graph) -> int:
    """Bytes of the graph's param and state leaves: what a step must at least stream."""
    return sum(n.type.nbytes for n in graph.nodes.values()
               if n.is_leaf and n.role in ("param", "state"))
