"""hoist_transposes: a scan body's product with a transposed loop-invariant operand
reads that operand transposed once, before the loop.

The backward step of a recurrent layer computes dh = dz U^T at every time step,
with U a loop invariant (a const of the body). Lowered as it is, each step
either runs dot products of rows or transposes U into scratch first. Here the
scan gets U^T as one more const, computed once outside the loop, and the body
multiplies by it without a transpose: the plain GEMM, every step.
"""
from __future__ import annotations

from .. import builder as F
from ..builder import Sym
from ..graph import Graph, TensorType
from ..ops import Body
from .dce import eliminate_dead_code


def hoist_transposes(graph: Graph) -> Graph:
    if not any(n.op == "scan" for n in graph.nodes.values()):
        return graph
    g = graph.copy()
    for v in list(g.order()):
        n = g.nodes.get(v)
        if n is None or n.op != "scan":
            continue
        body = n.params["body"]
        targets = _transposed_const_products(body)
        if not targets:
            continue
        bg = body.graph.copy()
        consts = list(n.inputs[:body.n_consts])
        rest = list(n.inputs[body.n_consts:])
        hoisted: dict[int, int] = {}            # const index -> its transpose's body leaf
        for m, ci in targets:
            if ci not in hoisted:
                t = g.type(consts[ci])
                hoisted[ci] = bg.leaf("input", TensorType(t.shape[::-1], t.dtype),
                                      f"k{len(consts)}")
                consts.append(F.transpose(Sym(g, consts[ci])).id)
            a = bg.nodes[m].inputs[0]
            bg.replace_uses(m, F.matmul(Sym(bg, a), Sym(bg, hoisted[ci])).id)
        bg = eliminate_dead_code(bg)
        new_body = Body(bg, len(consts), body.n_carry, body.n_xs, body.n_ys)
        s = F.op("scan", *[Sym(g, i) for i in consts + rest], body=new_body,
                 length=n.params["length"], reverse=n.params["reverse"],
                 dynamic=n.params["dynamic"])
        g.replace_uses(v, s.id)
    return eliminate_dead_code(g)


def _transposed_const_products(body: Body):
    """(matmul, const index) for each product x @ k^T in the body with k a const."""
    bg = body.graph
    out = []
    for m, node in bg.nodes.items():
        if node.op != "matmul" or not node.params["transpose_b"] or node.params["transpose_a"]:
            continue
        leaf = bg.nodes[node.inputs[1]]
        if leaf.is_leaf and leaf.role == "input" and leaf.name.startswith("k"):
            out.append((m, int(leaf.name[1:])))
    return out
