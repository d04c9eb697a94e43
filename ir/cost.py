"""Rough work estimates of a graph: floating-point operations and bytes moved."""
from __future__ import annotations

import math

from .graph import Graph
from .ops import get_op


def conv_flops(graph: Graph, v: int) -> float:
    """2 * output pixels * Cout * (taps x Cin per group), padded taps included, as
    convolution FLOPs are usually counted; the same for a convolution's kernel
    gradient (the same products, summed the other way)."""
    n = graph.nodes[v]
    x, y = (graph.type(i).shape for i in n.inputs)
    groups = n.params["groups"]
    if n.op == "conv":          # y is the kernel (*k, Cin/G, Cout)
        return 2.0 * n.type.size * math.prod(y[:-2]) * y[-2]
    # conv_weight_grad: y is the output cotangent (N, *out, Cout)
    return 2.0 * math.prod(y) * math.prod(n.params["kernel_shape"]) * (x[-1] // groups)


def matmul_flops(graph: Graph, v: int) -> float:
    """2*M*N*K of matmul node v."""
    n = graph.nodes[v]
    a = graph.type(n.inputs[0]).shape
    return 2.0 * n.type.size * (a[0] if n.params["transpose_a"] else a[1])


def flops(graph: Graph) -> float:
    """2*M*N*K per matmul, 2 * output size * taps * Cin/groups per convolution, a
    scan's body times its length, one per output element for other ops."""
    total = 0.0
    for v, n in graph.nodes.items():
        if n.is_leaf:
            continue
        if n.op == "scan":
            total += flops(n.params["body"].graph) * n.params["length"]
        elif n.op == "matmul":
            total += matmul_flops(graph, v)
        elif get_op(n.op).kind == "conv":
            total += conv_flops(graph, v)
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


# Ops that end a fused kernel whose result the next kernel reads: each is about
# one barrier of a step on several threads (elementwise and layout ops fuse into them).
_KERNEL_KINDS = ("reduction", "matmul", "gather", "scatter", "conv", "scan")


def updated_bytes(graph: Graph, local=lambda v: False) -> int:
    """Bytes of the parameters a step updates (a training step's weights), but those
    `local(v)` says each thread reads only the part it updates."""
    return sum(graph.type(v).nbytes for v in graph.updates
               if graph.nodes[v].role == "param" and not local(v))


def barrier_estimate(graph: Graph) -> int:
    """About how many barriers a multi-threaded step of the graph makes."""
    return sum(1 for n in graph.nodes.values()
               if not n.is_leaf and get_op(n.op).kind in _KERNEL_KINDS)
