"""Matrix products C = op(A) @ op(B).

A B and A^T B run on the register-blocked micro-kernel of gemm.py (which
reads A^T in place). A B^T (the backward pass's dX = dZ W^T)
is computed as dot products of rows: both operands are read contiguously and
eight rows of A share each row of B.
"""
from __future__ import annotations

from ir.passes.fuse import Kernel
from ..irutil import F32, I8, REDUCE_FLAGS, f32, i64, loop
from .gemm import gemm

ROWS = 8
NT_MIN_K = 64      # below this, A B^T transposes B and uses the GEMM


def scratch_bytes(graph, kernel: Kernel, nthreads: int = 1) -> int:
    node = graph.nodes[kernel.members[0]]
    a, bb = (graph.type(i).shape for i in node.inputs)
    k = a[0] if node.params["transpose_a"] else a[1]
    if node.params["transpose_b"] and (node.params["transpose_a"] or k < NT_MIN_K):
        return _pad(bb[0] * bb[1] * 4) * nthreads
    return 0


def _pad(n):
    return (n + 63) // 64 * 64


def _gep(b, p, off):
    return b.gep(p, [off], inbounds=True, source_etype=F32)


def _transpose_into(b, src, dst, rows, cols):
    """dst (cols x rows) = src (rows x cols)^T."""
    def row(b, i, _):
        def col(b, j, _):
            x = b.load(_gep(b, src, b.add(b.mul(i, i64(cols)), j)), typ=F32)
            b.store(x, _gep(b, dst, b.add(b.mul(j, i64(rows)), i)))
        loop(b, cols, col, name="tj")
    loop(b, rows, row, name="ti")


def lower_matmul(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    v = kernel.members[0]
    node = graph.nodes[v]
    a_id, b_id = node.inputs
    A, B, C = buffers[a_id], buffers[b_id], buffers[v]
    M, N = graph.type(v).shape
    ash = graph.type(a_id).shape
    ta, tb = node.params["transpose_a"], node.params["transpose_b"]
    K = ash[0] if ta else ash[1]
    if tb and (ta or K < NT_MIN_K):
        # Short rows make poor dot products: transpose B into scratch, use the GEMM.
        # Each thread transposes into its own scratch slice: no barrier inside a kernel.
        per_thread = _pad(N * K * 4)
        off = b.mul(part.tid, i64(per_thread)) if part is not None else i64(0)
        Bt = b.gep(scratch, [off], inbounds=True, source_etype=I8)
        _transpose_into(b, B, Bt, N, K)
        gemm(b, A, Bt, C, M, N, K, a_trans=ta, part=part)
    elif tb:
        _matmul_nt(b, A, B, C, M, N, K, part)
    else:
        gemm(b, A, B, C, M, N, K, a_trans=ta, part=part)


def _matmul_nt(b, A, B, C, M, N, K, part=None):
    """C = A B^T as dot products of rows: four rows of A against one row of B,
    four reductions over k that vectorize together (reassoc)."""
    def block(rows):
        def run(b, i0):
            arow = [_gep(b, A, b.mul(b.add(i0, i64(r)), i64(K))) for r in range(rows)]
            crow = [_gep(b, C, b.mul(b.add(i0, i64(r)), i64(N))) for r in range(rows)]

            def col(b, j, _):
                brow = _gep(b, B, b.mul(j, i64(K)))

                def kstep(b, k, acc):
                    x = b.load(_gep(b, brow, k), typ=F32)
                    return [b.fadd(acc[r], b.fmul(b.load(_gep(b, arow[r], k), typ=F32), x,
                                                  flags=REDUCE_FLAGS), flags=REDUCE_FLAGS)
                            for r in range(rows)]
                acc = loop(b, K, kstep, init=[f32(0.0)] * rows, name="k")
                for r in range(rows):
                    b.store(acc[r], _gep(b, crow[r], j))
            loop(b, N, col, name="j")
        return run

    full = M // ROWS
    if part is None or part.nthreads == 1:
        if full:
            loop(b, full, lambda b, i, _: block(ROWS)(b, b.mul(i, i64(ROWS))), name="ib")
        for i in range(full * ROWS, M):
            block(1)(b, i64(i))
        return
    # Threads split the rows: full blocks of ROWS, then the leftover rows one by one.
    lo, hi = part.share(b, full) if full else (i64(0), i64(0))
    if full:
        loop(b, hi, lambda b, i, _: block(ROWS)(b, b.mul(i, i64(ROWS))), name="ib", start=lo)
    if M % ROWS:
        rlo, rhi = part.share(b, M - full * ROWS)
        loop(b, b.add(rhi, i64(full * ROWS)), lambda b, i, _: block(1)(b, i), name="ir",
             start=b.add(rlo, i64(full * ROWS)))
