"""Matrix products C = op(A) @ op(B).

A B and A^T B run on the register-blocked micro-kernel of gemm.py (which
reads A^T in place). A B^T (the backward pass's dX = dZ W^T)
is computed as dot products of rows when rows are long and few (both operands
read contiguously, eight rows of A share each row of B), else on the GEMM,
which packs panels of B^T from B as it goes.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir.passes.fuse import Kernel
from ..irutil import F32, I8, REDUCE_FLAGS, f32, i64, loop
from .emitter import Emitter
from ..tuning import gemm_tiling
from .gemm import fence, gemm, k_block, product_tile, vector_shape

ROWS = 8
NARROW_TILE = 32   # epilogue widths up to this run as a loop of fenced rows
# A B^T runs as dot products of rows only for long rows (K) and few of them (M);
# otherwise on the GEMM, which packs B^T from B (measured, one core, with a relu
# derivative fused, under load: 8x512 by K=256 52 us as dot products, 56 on the
# GEMM; 16x256 by 512 85 vs 75; 32x512 by 256 229 vs 168; 48x400 by 100 84 vs 39).
NT_MIN_K = 64
NT_MAX_M = 16

# A product of a few rows (a batch-1 prediction) reads B once, from L2 when the weights
# stay there between calls. Split by column panels, each thread reads a part of every row
# of B: short runs at a stride, and where rows are a multiple of 1 KiB apart the same
# offsets of every row, which map to a fraction of the L2 sets, so a thread's share of
# the weights does not stay in L2. Split along K, each thread reads whole rows,
# contiguous, and the threads' partial sums are added after a barrier inside the kernel.
# Measured, batch-1 predict of Dense MLPs on two threads of a Xeon (native step, by
# columns -> along K): 784-512-256-10 16.4 -> 9.3 us, 784-500-250-10 14.2 -> 12.4,
# 784-300-100-10 9.4 -> 6.9, 1000-1000-10 39 -> 35; 784-512-256-10 at batch 2 18.7 ->
# 12.4, 4 27 -> 19, 8 43.6 -> 37.6, 16 77.5 -> 69.5. W5's training step (784-32-10 at
# batch 32, its forward product 32x784 by 784x32 split along K, each thread updating the
# rows of the weights it reads): 29.4 us on one thread, 35.7 on two split by rows,
# 24.6 on two split along K.
KSPLIT_MIN_BYTES = 1 << 16      # a B this big is worth the barrier


def k_split(graph, kernel: Kernel, nthreads: int) -> bool:
    """Is this kernel's product split between the threads along K (KSPLIT_MIN_BYTES)?"""
    return product_splits_along_k(graph, matmul_of(graph, kernel), nthreads)


def product_splits_along_k(graph, v: int, nthreads: int) -> bool:
    """Is matmul node v, on `nthreads` threads, split along K (splits_along_k)?"""
    p = graph.nodes[v].params
    M, N = graph.type(v).shape
    return not p["transpose_a"] and not p["transpose_b"] and \
        splits_along_k(M, N, _k_of(graph, v), nthreads)


def splits_along_k(M: int, N: int, K: int, nthreads: int) -> bool:
    """Whether A (M x K) @ B (K x N) on `nthreads` threads is split along K: few rows
    (a row per accumulator of a tile; twice that for a product at most two vectors
    wide, which threads could not split by columns: each would read all of B), K of
    at least 64 per thread, and B of at least KSPLIT_MIN_BYTES. Each thread then reads
    its own rows of B only (a weight a training step updates stays in the cache of
    the core that updates it: runtime/pipeline.py)."""
    if nthreads == 1:
        return False
    acc = split_accumulators()
    few = M <= acc or (M <= 2 * acc and N <= 2 * vector_shape()[0])
    return few and K >= 64 * nthreads and K * N * 4 >= KSPLIT_MIN_BYTES


def split_accumulators() -> int:
    """Vector accumulators of a tile of a product split along K: half the registers."""
    return 16 if vector_shape()[0] == 16 else 8


def _partials_bytes(graph, kernel) -> int:
    """One thread's partial sums of a product split along K."""
    return _pad(graph.type(matmul_of(graph, kernel)).nbytes)


def scratch_bytes(graph, kernel: Kernel, nthreads: int = 1) -> int:
    if k_split(graph, kernel, nthreads):
        return _partials_bytes(graph, kernel) * nthreads
    product = _pad(graph.type(matmul_of(graph, kernel)).nbytes) \
        if _needs_product_buffer(graph, kernel, nthreads) else 0
    return (product
            + (epilogue_tile_bytes(graph, kernel, nthreads) + _pack_bytes(graph, kernel, nthreads))
            * nthreads)


def _pack_bytes(graph, kernel, nthreads) -> int:
    """Per thread: a packed k-block of a column panel of B, when the tiling packs
    (always for B^T)."""
    if _dot_products(graph, kernel):
        return 0
    v = matmul_of(graph, kernel)
    W, _ = vector_shape()
    N = graph.type(v).shape[1]
    return _pad(tiling_of(graph, kernel, nthreads).pack_floats(
        N, _k_of(graph, v), W, graph.nodes[v].params["transpose_b"]) * 4)


def tiling_of(graph, kernel: Kernel, nthreads: int = 1):
    """The GEMM tiling of this kernel's product (tuned for the host when enabled)."""
    v = matmul_of(graph, kernel)
    M, N = graph.type(v).shape
    p = graph.nodes[v].params
    return gemm_tiling(M, N, _k_of(graph, v), p["transpose_a"], nthreads,
                       _epilogue_streams(graph, kernel, v), b_trans=p["transpose_b"])


def _epilogue_streams(graph, kernel, v) -> tuple[int, int]:
    """(reads, writes) of arrays shaped like the product by the fused epilogue, at most
    4 each (an optimizer's update of a kernel's weights: 3 and 3)."""
    if len(kernel.members) == 1:
        return 0, 0
    shape = graph.type(v).shape
    operands = set(graph.nodes[v].inputs)
    reads = sum(graph.type(u).shape == shape for u in kernel.inputs if u not in operands)
    writes = sum(graph.type(u).shape == shape for u in kernel.outputs if u != v)
    return min(reads, 4), min(writes, 4)


def _pad(n):
    return (n + 63) // 64 * 64


def _gep(b, p, off):
    return b.gep(p, [off], inbounds=True, source_etype=F32)


def matmul_of(graph, kernel: Kernel) -> int:
    return next(m for m in kernel.members if graph.nodes[m].op == "matmul")


class _Epilogue:
    """The fused elementwise ops after the product. `tile` runs them on a finished
    tile held in a per-thread scratch block (never in a buffer the epilogue reads,
    which may be updated in place); `element` on one product value in a register.
    Either way every output of the kernel is stored."""

    def __init__(self, b, graph, kernel, buffers, fn, v):
        self.v = v
        self.outputs = kernel.outputs
        self.em = Emitter(b, graph, {m for m in kernel.members if m != v}, buffers, fn)

    def element(self, b, i, j, x):
        em = self.em
        em.b = b
        em.reset()
        em.override[self.v] = x
        idx = (i, j)
        values = [(o, em.value(o, idx)) for o in self.outputs]
        for o, y in values:
            em.store(o, idx, y)
        del em.override[self.v]

    def tile(self, b, i0, j0, rows, width, tile, ld):
        def element(b, r, j):
            x = b.load(b.gep(tile, [b.add(b.mul(r, i64(ld)), j)], inbounds=True,
                             source_etype=F32), typ=F32)
            self.element(b, b.add(i0, r), b.add(j0, j), x)

        if width > NARROW_TILE:
            loop(b, rows, lambda b, r, _: loop(b, width, lambda b, j, _: element(b, r, j),
                                               name="ej"), name="er")
            return
        # Narrow tiles: LLVM unrolls a short column loop fully and then vectorizes the
        # row loop, with gathers (16-wide: 8x slower). A fence in the row loop keeps
        # it a loop of vectorized rows (rows unrolled instead: a copy of the row per
        # tile row to compile, W5's step +0.4 s of LLVM time at 12 rows).
        def row(b, r, _):
            fence(b, [])
            loop(b, width, lambda b, j, _: element(b, r, j), name="ej")
        loop(b, rows, row, name="er")


def _epilogue(b, graph, kernel, buffers, fn, v):
    return _Epilogue(b, graph, kernel, buffers, fn, v) if len(kernel.members) > 1 else None


# Ops that run on the divider, a unit of its own: an epilogue with them (an optimizer's
# sqrt and division) runs interleaved with the next tile's FMAs (AVX-512; measured, W5's
# weight gradient fused with RMSprop, 784x32 by K=32: 17.5 -> 13.6 us). A cheap
# epilogue (bias and relu) gains nothing and keeps the plain order.
DIVIDER_OPS = frozenset({"sqrt", "div"})


def _divides(graph, kernel) -> bool:
    return any(graph.nodes[m].op in DIVIDER_OPS for m in kernel.members)


def _k_of(graph, v):
    node = graph.nodes[v]
    a = graph.type(node.inputs[0]).shape
    return a[0] if node.params["transpose_a"] else a[1]


def _dot_products(graph, kernel) -> bool:
    """Is this A B^T computed as dot products of rows (not on the GEMM)?"""
    v = matmul_of(graph, kernel)
    p = graph.nodes[v].params
    return p["transpose_b"] and not p["transpose_a"] and _k_of(graph, v) >= NT_MIN_K \
        and graph.type(v).shape[0] < NT_MAX_M


def _k_blocked(graph, kernel, nthreads) -> bool:
    K = _k_of(graph, matmul_of(graph, kernel))
    return k_block(K, tiling_of(graph, kernel, nthreads).kc_max) < K


def _needs_product_buffer(graph, kernel, nthreads) -> bool:
    v = matmul_of(graph, kernel)
    return len(kernel.members) > 1 and _k_blocked(graph, kernel, nthreads) \
        and v not in kernel.outputs \
        and not _dot_products(graph, kernel)


def epilogue_tile_bytes(graph, kernel, nthreads: int = 1) -> int:
    """Scratch for one product tile, per thread, when the kernel has an epilogue."""
    if len(kernel.members) == 1 or _needs_product_buffer(graph, kernel, nthreads):
        return 0
    N = graph.type(matmul_of(graph, kernel)).shape[1]
    if _dot_products(graph, kernel):        # a block of ROWS whole rows
        return _pad(ROWS * N * 4)
    W, _ = vector_shape()
    return _pad(tiling_of(graph, kernel, nthreads).tile_floats(N, W) * 4)


def lower_matmul(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    v = matmul_of(graph, kernel)
    node = graph.nodes[v]
    a_id, b_id = node.inputs
    A, B = buffers[a_id], buffers[b_id]
    C = buffers.get(v)          # None when only the epilogue's results are kept
    epi = epilogue = _epilogue(b, graph, kernel, buffers, fn, v)
    M, N = graph.type(v).shape
    nthreads = part.nthreads if part else 1
    if k_split(graph, kernel, nthreads):
        _matmul_k_split(b, buffers[a_id], buffers[b_id], C, M, N, _k_of(graph, v), part, epi,
                        scratch, _partials_bytes(graph, kernel) // 4)
        return
    if _dot_products(graph, kernel):
        tile = None
        if epi is not None and C is None:
            per_thread = epilogue_tile_bytes(graph, kernel, nthreads)
            off = b.mul(part.tid, i64(per_thread)) if part is not None else i64(0)
            tile = b.gep(scratch, [off], inbounds=True, source_etype=I8)
        K = graph.type(a_id).shape[1]
        _matmul_nt(b, A, B, C, M, N, K, part, epi, tile)
        return
    tiling = tiling_of(graph, kernel, nthreads)
    pack = None
    per_pack = _pack_bytes(graph, kernel, nthreads)
    if per_pack:
        # After the product and the epilogue tiles (scratch_bytes).
        off = scratch_bytes(graph, kernel, nthreads) - per_pack * nthreads
        if part is not None:
            off = b.add(i64(off), b.mul(part.tid, i64(per_pack)))
        pack = b.gep(scratch, [off if part is not None else i64(off)], inbounds=True,
                     source_etype=I8)
    if epilogue is not None:
        if _k_blocked(graph, kernel, nthreads):
            # k-blocks keep partial sums of the whole product: in its own buffer when
            # it is kept, else in scratch.
            if C is None:
                C = scratch
            epilogue = (epi.tile, None)
        else:
            per_thread = epilogue_tile_bytes(graph, kernel, nthreads)
            off = b.mul(part.tid, i64(per_thread)) if part is not None else i64(0)
            epilogue = (epi.tile, b.gep(scratch, [off], inbounds=True, source_etype=I8))
    ash = graph.type(a_id).shape
    ta, tb = node.params["transpose_a"], node.params["transpose_b"]
    K = ash[0] if ta else ash[1]
    # B^T (short rows make poor dot products) is packed panel by panel from B.
    gemm(b, A, B, C, M, N, K, a_trans=ta, part=part, epilogue=epilogue, tiling=tiling,
         pack=pack, b_trans=tb, interleave=_divides(graph, kernel))


def _matmul_nt(b, A, B, C, M, N, K, part=None, epilogue=None, tile=None):
    """C = A B^T as dot products of rows: eight rows of A against one row of B,
    eight reductions over k that vectorize together (reassoc). An epilogue (in a
    backward pass, the activation's derivative) runs on each finished block of
    rows while it is in L1: from C, or from `tile` when C is not kept."""
    def block(rows):
        def run(b, i0):
            arow = [_gep(b, A, b.mul(b.add(i0, i64(r)), i64(K))) for r in range(rows)]
            crow = [_gep(b, C, b.mul(b.add(i0, i64(r)), i64(N))) for r in range(rows)] \
                if tile is None else [_gep(b, tile, i64(r * N)) for r in range(rows)]

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
            if epilogue is not None:
                epilogue.tile(b, i0, i64(0), rows, N, crow[0], N)
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


def _matmul_k_split(b, A, B, C, M, N, K, part, epilogue, partials, stride):
    """C = A B for a few rows of A, the threads splitting K: each multiplies its rows
    of B, contiguous, into its own partial sums (`stride` floats apart in `partials`);
    after a barrier each adds the threads' sums (in thread order: the same bits on every
    call) for its share of the columns and runs the epilogue on them."""
    W, _ = vector_shape()
    acc = split_accumulators()
    V = max(1, acc // M)
    rows = min(M, acc // V)
    NR = V * W
    mine = _gep(b, partials, b.mul(part.tid, i64(stride)))
    k0, k1 = part.share(b, K)
    block = (k0, k1, ir.Constant(ir.IntType(1), 1), ir.Constant(ir.IntType(1), 0))
    full, rest = N // NR, N % NR
    for i0 in range(0, M, rows):
        r = min(rows, M - i0)
        if full:
            loop(b, full, lambda b, jt, _: product_tile(
                b, A, B, mine, K, K, N, N, i64(i0), b.mul(jt, i64(NR)), r, W, V, kblock=block),
                name="jt")
        if rest:
            edge_v = -(-rest // W)
            product_tile(b, A, B, mine, K, K, N, N, i64(i0), i64(full * NR), r, W, edge_v,
                         last_lanes=rest - (edge_v - 1) * W, kblock=block)
    part.barrier(b)
    lo, hi = part.share(b, N, align=W)

    def column(b, j, _, m):
        at = b.add(i64(m * N), j)
        x = b.load(_gep(b, partials, at), typ=F32)
        for t in range(1, part.nthreads):
            x = b.fadd(x, b.load(_gep(b, partials, b.add(at, i64(t * stride))), typ=F32))
        if epilogue is None:
            b.store(x, _gep(b, C, at))
        else:
            epilogue.element(b, i64(m), j, x)
    for m in range(M):
        loop(b, hi, lambda b, j, _: column(b, j, _, m), name="jc", start=lo)
