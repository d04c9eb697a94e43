"""The elemental emitter: the value of any fused op at an index, as LLVM IR.

A kernel's loop asks for `value(v, idx)`. Values computed in the kernel are
built from their operands' values at the mapped index (broadcast dims read
index 0, a transpose permutes the index); values from outside are loaded
from their buffer. Results are memoized per (value, index) inside one loop body.
"""
from __future__ import annotations

from llvmlite import ir

from ir.graph import Graph
from ..irutil import F32, I32, f32, i64, linear_index
from .elementwise import SCALAR, Intrinsics


def _idx_key(idx):
    return tuple(("c", x.constant) if isinstance(x, ir.Constant) else id(x) for x in idx)


class Emitter:
    def __init__(self, b: ir.IRBuilder, graph: Graph, members: set, buffers: dict,
                 fn: Intrinsics, shape_of=None):
        self.b = b
        self.g = graph
        self.members = members            # values computed in this kernel
        self.buffers = buffers            # value id -> pointer (materialized values)
        self.fn = fn
        self.shape_of = shape_of or (lambda v: graph.type(v).shape)
        self.override: dict[int, ir.Value] = {}    # e.g. a reduction's accumulator
        self.memo: dict = {}

    def reset(self):
        self.memo.clear()

    # -- index mapping --------------------------------------------------------
    def operand_index(self, node, v, operand, idx):
        oshape = self.shape_of(operand)
        if node.op == "transpose":
            perm = node.params["perm"]
            out = [None] * len(perm)
            for j, p in enumerate(perm):
                out[p] = idx[j]
            return tuple(out)
        # elementwise broadcasting and broadcast_to: align right, size-1 dims read 0
        lead = len(idx) - len(oshape)
        return tuple(i64(0) if d == 1 else idx[lead + j] for j, d in enumerate(oshape))

    # -- values -------------------------------------------------------------------
    def value(self, v: int, idx: tuple) -> ir.Value:
        if v in self.override:
            return self.override[v]
        key = (v, _idx_key(idx))
        if key in self.memo:
            return self.memo[key]
        node = self.g.nodes[v]
        if v in self.members:
            xs = [self.value(i, self.operand_index(node, v, i, idx)) for i in node.inputs]
            if node.op in ("broadcast_to", "transpose", "reshape"):
                out = xs[0]
            else:
                out = SCALAR[node.op](self.b, self.fn, xs, node.params)
        elif node.is_leaf and node.role == "constant" and node.type.size == 1:
            out = f32(node.value.reshape(()).item())
        else:
            out = self.load(v, idx)
        self.memo[key] = out
        return out

    def pointer(self, v: int, idx: tuple):
        off = linear_index(self.b, idx, self.shape_of(v))
        dt = I32 if self.g.type(v).dtype == "int32" else F32
        return self.b.gep(self.buffers[v], [off], inbounds=True, source_etype=dt), dt

    def load(self, v: int, idx: tuple) -> ir.Value:
        ptr, dt = self.pointer(v, idx)
        x = self.b.load(ptr, typ=dt)
        return self.b.sitofp(x, F32) if dt is I32 else x

    def store(self, v: int, idx: tuple, x: ir.Value) -> None:
        ptr, dt = self.pointer(v, idx)
        self.b.store(self.b.fptosi(x, I32) if dt is I32 else x, ptr)
