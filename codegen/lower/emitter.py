"""The elemental emitter: the value of any fused op at an index, as LLVM IR.

A kernel's loop asks for `value(v, idx)`. Values computed in the kernel are
built from their operands' values at the mapped index (broadcast dims read
index 0, a transpose permutes the index); values from outside are loaded
from their buffer. Results are memoized per (value, index) inside one loop body.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir.graph import Graph
from ..irutil import F32, I32, I64, f32, i64, linear_index
from .elementwise import INT_SCALAR, SCALAR, Intrinsics, is_int


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
        if node.op == "slice":
            return tuple(i if s == 0 else self.b.add(i, i64(s)) for i, s in zip(idx, node.params["start"]))
        if node.op == "gather":     # operand 1: the indices, at the leading positions
            return tuple(idx[:len(oshape)])
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
        if v in self.members and node.op in SPECIAL:
            out = SPECIAL[node.op](self, node, v, idx)
        elif v in self.members:
            xs = [self.value(i, self.operand_index(node, v, i, idx)) for i in node.inputs]
            if node.op in ("broadcast_to", "transpose", "reshape", "slice"):
                out = xs[0]
            elif node.type.dtype == "int32" and node.op in INT_SCALAR:
                out = INT_SCALAR[node.op](self.b, self.fn, xs, node.params)
            else:
                out = SCALAR[node.op](self.b, self.fn, xs, node.params)
        elif node.is_leaf and node.role == "constant" and node.type.size == 1:
            value = node.value.reshape(()).item()
            out = ir.Constant(I32, int(value)) if node.type.dtype == "int32" else f32(value)
        else:
            out = self.load(v, idx)
        self.memo[key] = out
        return out

    def clamp(self, i, n: int):
        """i limited to [0, n): loads stay inside their buffer whatever the data says."""
        b = self.b
        i = b.select(b.icmp_signed("<", i, i64(0)), i64(0), i)
        return b.select(b.icmp_signed(">", i, i64(n - 1)), i64(n - 1), i)

    def pointer(self, v: int, idx: tuple):
        off = linear_index(self.b, idx, self.shape_of(v))
        dt = I32 if self.g.type(v).dtype == "int32" else F32
        return self.b.gep(self.buffers[v], [off], inbounds=True, source_etype=dt), dt

    def load(self, v: int, idx: tuple) -> ir.Value:
        ptr, dt = self.pointer(v, idx)
        return self.b.load(ptr, typ=dt)       # int32 values stay in integer lanes

    def store(self, v: int, idx: tuple, x: ir.Value) -> None:
        ptr, dt = self.pointer(v, idx)
        if dt is I32 and not is_int(x):
            x = self.b.fptosi(x, I32)
        self.b.store(x, ptr)


def _pad(em, node, v, idx):
    """Zero outside the operand, the operand (at a clamped, in-bounds index) inside."""
    b = em.b
    src = node.inputs[0]
    shape = em.g.type(src).shape
    inside = None
    inner = []
    for i, lo, n in zip(idx, node.params["lo"], shape):
        j = b.sub(i, i64(lo)) if lo else i
        ok = b.and_(b.icmp_signed(">=", j, i64(0)), b.icmp_signed("<", j, i64(n)))
        inside = ok if inside is None else b.and_(inside, ok)
        inner.append(em.clamp(j, n))
    x = em.value(src, tuple(inner))
    return b.select(inside, x, f32(0.0)) if inside is not None else x


def _gather(em, node, v, idx):
    """table[indices[i...], d...]: the row index comes from data (clamped in bounds;
    the runtime rejects out-of-range ids before the step runs)."""
    b = em.b
    table, indices = node.inputs
    irank = em.g.type(indices).rank
    row = em.value(indices, tuple(idx[:irank]))
    row = em.clamp(b.sext(row, I64) if is_int(row) else b.fptosi(row, I64),
                   em.g.type(table).shape[0])
    return em.value(table, (row, *idx[irank:]))


def _random(em, node, v, idx):
    """The same murmur3-finalized counter hash as ir.ops.hash_uniform, in i32."""
    b = em.b
    i32 = lambda x: ir.Constant(I32, x & 0xFFFFFFFF)  # noqa: E731
    lin = b.trunc(linear_index(b, idx, em.shape_of(v)), I32)
    key = em.value(node.inputs[0], ())
    key = key if is_int(key) else b.fptoui(key, I32)
    h = b.add(b.add(b.mul(lin, i32(0x9E3779B1)), b.mul(key, i32(0x85EBCA77))),
              i32((node.params["salt"] * 0xC2B2AE3D) & 0xFFFFFFFF))
    h = b.xor(h, b.lshr(h, i32(16)))
    h = b.mul(h, i32(0x85EBCA6B))
    h = b.xor(h, b.lshr(h, i32(13)))
    h = b.mul(h, i32(0xC2B2AE35))
    h = b.xor(h, b.lshr(h, i32(16)))
    return b.fmul(b.uitofp(b.lshr(h, i32(8)), F32), f32(2.0 ** -24))


SPECIAL = {"pad": _pad, "gather": _gather, "random_uniform": _random}
