"""Matrix products C = op(A) @ op(B).

Transposed operands are first copied into the kernel's scratch in plain
row-major form, so one core loop serves all four forms: rows of C in blocks
of four; for each k, the four A values are broadcast and the inner loop over
C's columns does four FMAs per B element loaded (it vectorizes to ymm FMAs).
"""
from __future__ import annotations

from ir.passes.fuse import Kernel
from ..irutil import F32, FLAGS, I8, REDUCE_FLAGS, f32, i64, loop

ROWS = 4


def scratch_bytes(graph, kernel: Kernel) -> int:
    node = graph.nodes[kernel.members[0]]
    a, bb = (graph.type(i).shape for i in node.inputs)
    n = 0
    if node.params["transpose_a"]:
        n += _pad(a[0] * a[1] * 4)
    return n


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


def lower_matmul(b, graph, kernel: Kernel, buffers, fn, scratch=None):
    v = kernel.members[0]
    node = graph.nodes[v]
    a_id, b_id = node.inputs
    A, B, C = buffers[a_id], buffers[b_id], buffers[v]
    M, N = graph.type(v).shape
    ash, bsh = graph.type(a_id).shape, graph.type(b_id).shape
    K = ash[0] if node.params["transpose_a"] else ash[1]
    off = 0
    if node.params["transpose_a"]:
        At = b.gep(scratch, [i64(off)], inbounds=True, source_etype=I8)
        _transpose_into(b, A, At, K, M)
        A = At
        off += _pad(M * K * 4)
    if node.params["transpose_b"]:
        _matmul_nt(b, A, B, C, M, N, K)
    else:
        _matmul_nn(b, A, B, C, M, N, K)


def _matmul_nt(b, A, B, C, M, N, K):
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
    if full:
        loop(b, full, lambda b, i, _: block(ROWS)(b, b.mul(i, i64(ROWS))), name="ib")
    for i in range(full * ROWS, M):
        block(1)(b, i64(i))


def _matmul_nn(b, A, B, C, M, N, K):
    def block(rows):
        def run(b, i0):
            crow = [_gep(b, C, b.mul(b.add(i0, i64(r)), i64(N))) for r in range(rows)]
            arow = [_gep(b, A, b.mul(b.add(i0, i64(r)), i64(K))) for r in range(rows)]

            def zero(b, j, _):
                for r in range(rows):
                    b.store(f32(0.0), _gep(b, crow[r], j))
            loop(b, N, zero, name="z")

            def kstep(b, k, _):
                a = [b.load(_gep(b, arow[r], k), typ=F32) for r in range(rows)]
                brow = _gep(b, B, b.mul(k, i64(N)))

                def col(b, j, _):
                    x = b.load(_gep(b, brow, j), typ=F32)
                    for r in range(rows):
                        p = _gep(b, crow[r], j)
                        c = b.load(p, typ=F32)
                        b.store(b.fadd(c, b.fmul(a[r], x, flags=FLAGS), flags=FLAGS), p)
                loop(b, N, col, name="j")
            loop(b, K, kstep, name="k")
        return run

    full = M // ROWS
    if full:
        loop(b, full, lambda b, i, _: block(ROWS)(b, b.mul(i, i64(ROWS))), name="ib")
    for i in range(full * ROWS, M):
        block(1)(b, i64(i))
