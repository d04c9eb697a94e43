"""Cold kernels: products too small to matter to a step, compiled with a cheaper pipeline.

LLVM's O3 pays for itself on the products that make a step's time (W1's 784x512 and
512x256 GEMMs: at O2 its dW kernels ran 10% slower). The products of a narrow layer
(W1's Dense(10): 128x256 by 256x10, its gradients, the optimizer update fused after
them) are another matter: together ~20 us of a 2.2 ms step, they took 250 ms of the
790 ms of CPU LLVM spent on W1, most of it vectorizing and simplifying their fully
unrolled 10-wide epilogues. At O1 (vectorizers and unrolling still on) they compile
in half the time (k16, dW of Dense(10) with Adam fused: 124 -> 62 ms; k12, its dX:
66 -> 57 ms; k5, its forward: 73 -> 46 ms) and run within 3.4 us per step of their
O3 code (one thread, medians of alternated rounds, under load: k16 8.9 -> 12.3 us,
k12 5.8 -> 5.4 us, k5 6.7 -> 6.7 us).

Only products are chosen: a row kernel (softmax and its loss) compiled at O1 took
longer than at O3 (O1 leaves LLVM's vectorizer more to do).
"""
from __future__ import annotations

from ..ir.cost import matmul_flops
from ..ir.graph import Graph
from ..ir.passes.fuse import Kernel

#: a product below this share of its entry's FLOPs is cold
COLD_SHARE = 0.005

#: the optimization levels of hot and cold code
HOT_LEVEL = 3
COLD_LEVEL = 1


def product_flops(graph: Graph, kernel: Kernel) -> float:
    """2*M*N*K of the kernel's matrix product(s)."""
    return sum(matmul_flops(graph, v) for v in kernel.members if graph.nodes[v].op == "matmul")


def is_cold(graph: Graph, kernel: Kernel, entry_flops: float) -> bool:
    """Whether the kernel is a product too small to be worth O3 in its entry."""
    return kernel.kind == "matmul" and product_flops(graph, kernel) < COLD_SHARE * entry_flops

