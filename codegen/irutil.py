"""Small helpers over llvmlite.ir: types, fast-math flags, counted loops."""
from __future__ import annotations

from llvmlite import ir

F32 = ir.FloatType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()

# No nnan/ninf: NaN and inf must survive (losses, TerminateOnNaN).
FLAGS = ("nsz", "arcp", "contract", "afn")
# Reductions also need reassoc, or the loop vectorizer leaves them scalar.
REDUCE_FLAGS = FLAGS + ("reassoc",)


def f32(x: float) -> ir.Constant:
    return ir.Constant(F32, float(x))


def i64(x: int) -> ir.Constant:
    return ir.Constant(I64, int(x))


def loop(b: ir.IRBuilder, n, body, init=(), name: str = "i"):
    """Emit `for i in range(n)` carrying values; body(b, i, carried) -> new carried.

    Returns the carried values after the loop.
    """
    n = i64(n) if isinstance(n, int) else n
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    body_bb = b.append_basic_block(f"{name}.body")
    exit_bb = b.append_basic_block(f"{name}.exit")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(i64(0), pre)
    phis = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        phis.append(p)
    b.cbranch(b.icmp_signed("<", i, n), body_bb, exit_bb)
    b.position_at_end(body_bb)
    new = body(b, i, phis)
    nxt = b.add(i, i64(1), flags=("nsw", "nuw"))
    latch = b.block
    i.add_incoming(nxt, latch)
    for p, v in zip(phis, new if init else ()):
        p.add_incoming(v, latch)
    b.branch(head)
    b.position_at_end(exit_bb)
    return phis


def loop_nest(b: ir.IRBuilder, shape, body, name: str = "d"):
    """Nested loops over `shape` (row-major); body(b, idx) with idx a tuple of i64 values."""
    def rec(level, idx):
        if level == len(shape):
            body(b, tuple(idx))
            return
        if shape[level] == 1:
            rec(level + 1, idx + [i64(0)])
            return
        loop(b, shape[level], lambda b, i, _: rec(level + 1, idx + [i]), name=f"{name}{level}")
    rec(0, [])


def linear_index(b: ir.IRBuilder, idx, shape):
    """Row-major offset of idx in shape; dims of size 1 contribute nothing."""
    off = None
    stride = 1
    for i, d in reversed(list(zip(idx, shape))):
        if d != 1:
            term = i if stride == 1 else b.mul(i, i64(stride), flags=("nsw", "nuw"))
            off = term if off is None else b.add(off, term, flags=("nsw", "nuw"))
        stride *= d
    return off if off is not None else i64(0)
