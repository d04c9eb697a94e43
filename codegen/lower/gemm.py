"""A register-blocked GEMM micro-kernel in explicit vector IR (C = A @ B, row-major).

The BLIS "small/unpacked" structure: C is cut into tiles of MR rows by NR
columns (NR = V vectors of the machine's width W). For a tile, MR*V vector
accumulators stay in registers for the whole k loop; each k step loads V
vectors of a row of B, broadcasts MR values of A, and issues MR*V FMAs.
Column tiles are the outer loop so the K x NR panel of B stays in cache
while every row tile uses it. Columns past the last full tile use the same
tile with masked loads and stores on its last vector.

With AVX-512 (W=16): MR=6, V=4: 24 zmm accumulators. With AVX2 (W=8): MR=6,
V=2: 12 ymm accumulators, the classic 6x16 tile. Narrower products take fewer
vectors and more rows for as many accumulators (gemm_rows). These are the
defaults (default_tiling); codegen/tuning.py may choose another Tiling for a
shape on the host by measuring a few.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from llvmlite import ir

from ..irutil import F32, I32, i64, loop
from ..target import host

MR = 6            # rows of a full-width tile (V = 4 on AVX-512, 2 on AVX2)
MR_MAX = 12


def tile_rows(V: int) -> int:
    """Rows of a tile V vectors wide in the convolutions: a one-vector tile takes 12
    rows, so 12 accumulators hide the FMA latency (784x16 products, K=32: 196 -> 203
    GFLOP/s, with an optimizer epilogue 157 -> 187); wider tiles measured best at 6."""
    return MR_MAX if V == 1 else MR


def gemm_rows(V: int) -> int:
    """Rows of a GEMM tile V vectors wide: as many as keep the accumulators within
    the register file with room for the operands (24 of 32 registers with AVX-512, 12
    of 16 with AVX2), at most MR_MAX. Fewer accumulators leave the loads of A and B a
    larger share per FMA (AVX-512, one core: 32x32 by K=784, 6 -> 12 rows 9.9 -> 8.9
    us; 32x48 by 784, 6 -> 8 rows 13.3 -> 12.2 us; 1024x32 by 64 22.6 -> 21.4 us);
    the full-width tile measured best at 6 rows, one vector at 12 (tile_rows)."""
    W, _ = vector_shape()
    return max(MR, min(MR_MAX, (24 if W == 16 else 12) // V))


def balanced_rows(M: int, V: int, nthreads: int) -> int:
    """gemm_rows(V), or fewer rows (not under MR) when threads share the row tiles and
    the taller tile would leave one thread more rows than another by over 10% (M=32 on
    two threads: 3 tiles of 12 rows, one thread 24 rows; 4 of 8, 16 each)."""
    mr = gemm_rows(V)
    if nthreads == 1:
        return mr

    def most(rows):         # rows of the thread with the most tiles
        return -(-(-(-M // rows)) // nthreads) * rows
    least = min(most(rows) for rows in range(MR, mr + 1))
    return next(rows for rows in range(mr, MR - 1, -1) if most(rows) <= 1.1 * least)


KC = 256         # k-block: a 256 x NR slice of B (64 KiB at NR=64) streams from L1/L2 (measured: 1024^3 185 -> 246 GFLOP/s)
KC_MAX = 288     # blocks up to this long are allowed, to split K evenly


def k_block(K: int, kc_max: int = KC_MAX) -> int:
    """The k-block length for K terms: K evenly in as few blocks of at most kc_max as
    possible (784 -> 3 x 262, not 3 x 256 + 16: each block is a pass over C)."""
    if K <= kc_max:
        return K
    n = -(-K // kc_max)
    return -(-K // n)


@dataclass(frozen=True)
class Tiling:
    """How gemm() cuts one product: tiles of `mr` rows by `v` vectors, k-blocks of at
    most `kc_max` terms, blocks of `mc` rows of A, and threads sharing the column
    panels ("cols") or the row tiles ("rows"). Every tiling sums each element's K
    terms in the same order (a k-block continues from the stored partial sum), so
    all give the same bits; they differ only in speed (codegen/tuning.py measures)."""
    mr: int
    v: int
    kc_max: int
    split: str
    mc: int = 0       # rows of A per block kept in L2 across column panels (0: all rows)
    pack: bool = False  # copy each k-block of a column panel of B to a contiguous buffer

    def pack_floats(self, N: int, K: int, W: int, b_trans: bool = False) -> int:
        """Floats of the per-thread buffer a packed panel of B takes (0: not packed).
        B stored transposed (b_trans) is always packed, edge panel included."""
        if b_trans or (self.pack and N >= W):
            return k_block(K, self.kc_max) * self.vectors(N, W) * W
        return 0

    def vectors(self, N: int, W: int) -> int:
        """Vectors per tile row for N columns (narrow products take fewer)."""
        return max(1, min(self.v, N // W))

    def tile_floats(self, N: int, W: int) -> int:
        """Floats of one full tile (the epilogue's per-thread scratch block)."""
        return self.mr * self.vectors(N, W) * W


def default_tiling(M: int, N: int, K: int, nthreads: int = 1) -> Tiling:
    """The constants chosen by hand (one CPU): the baseline every tuned choice must beat."""
    W, vmax = vector_shape()
    V = max(1, min(vmax, N // W))
    NR = W * V
    col_count = -(-N // NR)
    split = "cols" if nthreads == 1 or col_count >= nthreads else "rows"
    if split == "cols" and nthreads > 1:
        # Threads take whole column panels: few panels split unevenly (an LSTM(100)'s
        # gates, N=400: 7 panels, 4 against 3; its dh, N=100: 64 columns against 36).
        # Row tiles then share the work better, at the cost of every thread reading
        # all of B (W3's step on two threads: 45.8 -> 42.6 ms).
        rows = balanced_rows(M, V, nthreads)
        if _largest_share(M, rows, nthreads) < _largest_share(N, NR, nthreads) - 0.05:
            split = "rows"
    return Tiling(balanced_rows(M, V, nthreads if split == "rows" else 1), V, KC_MAX, split)


def _largest_share(n: int, block: int, nthreads: int) -> float:
    """The busiest thread's part of n items cut in blocks of `block` (the last one
    shorter) and dealt in contiguous runs, over an even share: 1.0 is even."""
    blocks = -(-n // block)
    per = -(-blocks // nthreads)
    return min(n, per * block) / (n / nthreads)


def vector_shape() -> tuple[int, int]:
    """(W, V): floats per vector register and vectors per tile row on this host."""
    return _vector_shape(host()[2])


@functools.cache
def _vector_shape(features: str) -> tuple[int, int]:
    if "+avx512f" in features.split(","):
        return 16, 4
    if "+avx" in features.split(","):
        return 8, 2
    return 4, 2


def _gep(b, p, off, typ=F32):
    return b.gep(p, [off], inbounds=True, source_etype=typ)


def _fma(module, vec):
    name = f"llvm.fma.v{vec.count}f32"
    fn = module.globals.get(name)
    return fn or ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]), name=name)


def _splat(b, x, vec):
    v = b.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(I32, 0))
    mask = ir.Constant(ir.VectorType(I32, vec.count), [0] * vec.count)
    return b.shuffle_vector(v, ir.Constant(vec, ir.Undefined), mask)


def _masked(module, kind, vec):
    name = f"llvm.masked.{kind}.v{vec.count}f32.p0"
    fn = module.globals.get(name)
    if fn:
        return fn
    mask_t = ir.VectorType(ir.IntType(1), vec.count)
    if kind == "load":
        fnty = ir.FunctionType(vec, [ir.PointerType(), I32, mask_t, vec])
    else:
        fnty = ir.FunctionType(ir.VoidType(), [vec, ir.PointerType(), I32, mask_t])
    return ir.Function(module, fnty, name=name)


def product_tile(b, A, B, C, K, lda, ldb, ldc, i0, j0, rows, W, V, last_lanes=None,
                 a_trans=False, kblock=None, epilogue=None, b_at=None, between=None):
    """One rows x (V*W) tile of C; the last vector covers only `last_lanes` columns
    (masked loads and stores) when given. With a_trans, A is stored K x M (C = A^T B):
    the values broadcast at step k are then contiguous, and no transpose is needed.
    b_at(b, k), when given, points at row k of the tile's columns of B (a packed panel).
    between = (n, emit): emit(b, s) runs after segment s of n equal segments of the k
    loop; the tile then goes to the epilogue's block without running the epilogue
    (the caller runs it, interleaved with the next tile: see _pipelined_tiles)."""
    vec = ir.VectorType(F32, W)
    fma = _fma(b.module, vec)
    zero = ir.Constant(vec, [0.0] * W)
    mask = None
    if last_lanes is not None and last_lanes < W:
        mask = ir.Constant(ir.VectorType(ir.IntType(1), W), [int(l < last_lanes) for l in range(W)])
    if a_trans:
        arow = [_gep(b, A, b.add(i0, i64(r))) for r in range(rows)]
    else:
        arow = [_gep(b, A, b.mul(b.add(i0, i64(r)), i64(lda))) for r in range(rows)]
    a_step = (lambda b, k: b.mul(k, i64(lda))) if a_trans else (lambda b, k: k)

    def load_b(b, p, v):
        if mask is not None and v == V - 1:
            return b.call(_masked(b.module, "load", vec), [p, ir.Constant(I32, 4), mask, zero])
        return b.load(p, typ=vec, align=4)

    def kstep(b, k, acc):
        brow = b_at(b, k) if b_at else _gep(b, B, b.add(b.mul(k, i64(ldb)), j0))
        bv = [load_b(b, _gep(b, brow, i64(v * W)), v) for v in range(V)]
        ak = a_step(b, k)
        out = []
        for r in range(rows):
            a = _splat(b, b.load(_gep(b, arow[r], ak), typ=F32), vec)
            out += [b.call(fma, [a, bv[v], acc[r * V + v]]) for v in range(V)]
        return out
    epilogue_fn, tile = epilogue if epilogue is not None else (None, None)
    # With a tile block, the product goes there (row stride V*W), not to C; without
    # one (k-blocks), partial sums go to C and the epilogue reads the final ones.

    def c_ptr(r, v):
        if tile is not None:
            return _gep(b, tile, i64(r * V * W + v * W))
        crow = _gep(b, C, b.add(b.mul(b.add(i0, i64(r)), i64(ldc)), j0))
        return _gep(b, crow, i64(v * W))

    if kblock is None and between:
        # A loop over the segments: one copy of the k loop and of the code between.
        # Unrolled, the copies cost more compile time than they save (W5's training
        # step: +0.6 s of LLVM time, for its weight gradient and RMSprop 14.0 -> 12.8 us;
        # W1's: +0.4 s for 5% of its weight gradients' time).
        n, emit = between

        def segment(b, s, acc):
            k0 = b.udiv(b.mul(s, i64(K)), i64(n))
            k1 = b.udiv(b.mul(b.add(s, i64(1)), i64(K)), i64(n))
            acc = fence(b, loop(b, k1, kstep, init=acc, name="k", start=k0))
            emit(b, s)
            return fence(b, acc)
        acc = loop(b, n, segment, init=[zero] * (rows * V), name="ks")
    elif kblock is None:
        init = [zero] * (rows * V)
        acc = loop(b, K, kstep, init=init, name="k")
    else:
        # One block of K: the first starts from zero, later ones add to C.
        k0, k1, first, _ = kblock
        init = []
        for r in range(rows):
            for v in range(V):
                old = load_b(b, c_ptr(r, v), v)
                init.append(b.select(first, zero, old))
        acc = loop(b, k1, kstep, init=init, name="k", start=k0)
    for r in range(rows):
        for v in range(V):
            p = c_ptr(r, v)
            if mask is not None and v == V - 1:
                b.call(_masked(b.module, "store", vec), [acc[r * V + v], p, ir.Constant(I32, 4), mask])
            else:
                b.store(acc[r * V + v], p, align=4)
    if epilogue_fn is not None and not between:
        width = (V - 1) * W + (last_lanes if last_lanes is not None else W)
        if tile is not None:
            epilogue_fn(b, i0, j0, rows, width, tile, V * W)
        else:       # after the last k-block, from C
            _when(b, kblock[3], lambda: epilogue_fn(
                b, i0, j0, rows, width,
                _gep(b, C, b.add(b.mul(i0, i64(ldc)), j0)), ldc))


FENCE_REGS = 8      # values per fence: fewer than any x86 target's vector registers


def fence(b, values):
    """`values`, passed through empty instructions that LLVM may not move code across
    (volatile, touching memory): code computing them stays before, code using them
    after. Without them LLVM sinks or hoists the FMAs of a k loop past the code
    interleaved with them, and its scheduler regroups a straight run of both
    (measured: slower than not interleaving). In groups small enough to be held in
    registers at once on any target."""
    if not values:      # a fence for memory and control alone
        b.call(ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), "", "~{memory}",
                            side_effect=True), [])
        return []
    out = []
    for g in range(0, len(values), FENCE_REGS):
        group = values[g:g + FENCE_REGS]
        n, ty = len(group), group[0].type
        ret = ty if n == 1 else ir.LiteralStructType([ty] * n)     # LLVM: one output, no struct
        asm = ir.InlineAsm(ir.FunctionType(ret, [ty] * n), "",
                           ",".join(["=v"] * n + [str(i) for i in range(n)] + ["~{memory}"]),
                           side_effect=True)
        res = b.call(asm, group)
        out += [res] if n == 1 else [b.extract_value(res, i) for i in range(n)]
    return out


def _when(b, cond, emit):
    then = b.append_basic_block("when")
    done = b.append_basic_block("when.done")
    b.cbranch(cond, then, done)
    b.position_at_end(then)
    emit()
    b.branch(done)
    b.position_at_end(done)


def _row_tiles(b, A, B, C, M, K, lda, ldb, ldc, j0, W, V, last_lanes, a_trans, rows=None,
               kblock=None, epilogue=None, mr=MR, b_at=None, interleave=False):
    """The tiles of one column panel, for row tiles in `rows` = (lo, hi) (default: all);
    with `interleave`, each full tile's epilogue runs inside the next tile's k loop."""
    m_tiles, rem = M // mr, M % mr
    count = m_tiles + (1 if rem else 0)
    lo, hi = rows or (i64(0), i64(count))
    full_hi = b.select(b.icmp_signed("<", hi, i64(m_tiles)), hi, i64(m_tiles)) if rows else i64(m_tiles)
    if m_tiles and kblock is None and epilogue is not None and epilogue[1] is not None \
            and interleave:
        _pipelined_tiles(b, A, B, C, K, lda, ldb, ldc, j0, W, V, last_lanes, a_trans, lo,
                         full_hi, epilogue, mr, b_at)
    elif m_tiles:
        loop(b, full_hi, lambda b, it, _: product_tile(
            b, A, B, C, K, lda, ldb, ldc, b.mul(it, i64(mr)), j0, mr, W, V, last_lanes,
            a_trans, kblock, epilogue, b_at), name="it", start=lo)
    if rem:
        def emit():
            product_tile(b, A, B, C, K, lda, ldb, ldc, i64(m_tiles * mr), j0, rem, W, V,
                         last_lanes, a_trans, kblock, epilogue, b_at)
        if rows:    # the thread whose (non-empty) share ends with the last tile
            _when(b, b.and_(b.icmp_signed("==", hi, i64(count)), b.icmp_signed("<", lo, hi)), emit)
        else:
            emit()


def _pipelined_tiles(b, A, B, C, K, lda, ldb, ldc, j0, W, V, last_lanes, a_trans, lo, hi,
                     epilogue, mr, b_at):
    """Full row tiles lo..hi-1 of one column panel, each tile's epilogue run one row at
    a time between segments of the next tile's k loop. An epilogue bound by another
    unit than the FMAs (an optimizer's sqrt and division, by the divider) then runs
    beside them, where one after the other the FMA units wait for the divider and the
    divider for the FMAs. Each tile leaves its sums in the epilogue's block after the
    previous tile's epilogue has read it all; the last tile's epilogue runs after the
    loop. Epilogues are elementwise, tiles disjoint: the order of tiles' epilogues
    changes no result."""
    epilogue_fn, block = epilogue
    width = (V - 1) * W + (last_lanes if last_lanes is not None else W)
    ld = V * W

    def row(b, it, r):      # row r of tile it's epilogue
        epilogue_fn(b, b.add(b.mul(it, i64(mr)), r), j0, 1, width,
                    _gep(b, block, b.mul(r, i64(ld))), ld)

    def tile(b, it, _):
        previous = b.sub(it, i64(1))
        def between(b, r):
            _when(b, b.icmp_signed(">", it, lo), lambda: row(b, previous, r))
        product_tile(b, A, B, C, K, lda, ldb, ldc, b.mul(it, i64(mr)), j0, mr, W, V,
                     last_lanes, a_trans, None, epilogue, b_at, between=(mr, between))
    loop(b, hi, tile, name="it", start=lo)
    _when(b, b.icmp_signed(">", hi, lo), lambda: loop(
        b, mr, lambda b, r, _: row(b, b.sub(hi, i64(1)), r), name="er"))


def _transpose_block(b, rows, W):
    """The W x W block whose rows are `rows` (W vectors), transposed: log2(W) rounds
    of interleaving row i with row i + W/2 (one two-source permute each)."""
    h = W // 2
    lo = ir.Constant(ir.VectorType(I32, W), [p // 2 + (W if p % 2 else 0) for p in range(W)])
    hi = ir.Constant(ir.VectorType(I32, W), [h + p // 2 + (W if p % 2 else 0) for p in range(W)])
    for _ in range(W.bit_length() - 1):
        out = []
        for i in range(h):
            out += [b.shuffle_vector(rows[i], rows[i + h], lo),
                    b.shuffle_vector(rows[i], rows[i + h], hi)]
        rows = out
    return rows


def _pack_transposed(b, B, ldb, pack, NR, j0, width, k0, k1, W):
    """pack[k - k0][c] = B[j0 + c][k] for c < width, k0 <= k < k1: a column panel of
    B^T read from B (stored N x K) in W x W blocks transposed in registers; the
    k and column remainders one float at a time."""
    vec = ir.VectorType(F32, W)
    groups = width // W
    nk = b.sub(k1, k0)
    full_k = b.mul(b.udiv(nk, i64(W)), i64(W))

    def block(b, kb, g):
        kk, c0 = b.mul(kb, i64(W)), b.mul(g, i64(W))
        src = [b.load(_gep(b, B, b.add(b.mul(b.add(j0, b.add(c0, i64(r))), i64(ldb)),
                                       b.add(k0, kk))), typ=vec, align=4)
               for r in range(W)]
        for r, x in enumerate(_transpose_block(b, src, W)):
            b.store(x, _gep(b, pack, b.add(b.mul(b.add(kk, i64(r)), i64(NR)), c0)), align=4)
    if groups:      # a loop, not unrolled: a block is already W loads, W stores and
        # W log2(W) shuffles, and unrolled groups cost compile time, not run time
        loop(b, i64(groups), lambda b, g, _: loop(
            b, b.udiv(nk, i64(W)), lambda b, kb, _: block(b, kb, g), name="pt"), name="pg")

    def one(b, c, k):
        x = b.load(_gep(b, B, b.add(b.mul(b.add(j0, c), i64(ldb)), b.add(k0, k))), typ=F32)
        b.store(x, _gep(b, pack, b.add(b.mul(k, i64(NR)), c)))
    if groups:      # the last k % W rows of the full column groups
        loop(b, i64(groups * W), lambda b, c, _: loop(
            b, nk, lambda b, k, _: one(b, c, k), name="ptk", start=full_k), name="ptc")
    if width > groups * W:      # the columns past the full groups, every k
        loop(b, i64(width), lambda b, c, _: loop(
            b, nk, lambda b, k, _: one(b, c, k), name="ptk"), name="ptc", start=i64(groups * W))


def gemm(b, A, B, C, M, N, K, a_trans=False, part=None, epilogue=None, tiling=None, pack=None,
         b_trans=False, interleave=False):
    """C (M x N) = op(A) @ op(B), row-major; op(A) = A (M x K), or A^T for A (K x M);
    op(B) = B (K x N), or B^T for B (N x K) with b_trans.

    Cut as `tiling` says (default: default_tiling): threads split the column panels
    or the row tiles; a split with fewer units than threads falls back to the other.
    With tiling.pack or b_trans, `pack` is this thread's buffer of
    tiling.pack_floats(N, K, W, b_trans). B^T is packed panel by panel from B as
    the product goes (no transposed copy of all of B first: each thread reads only
    the panels it multiplies, and each panel while it is in cache).
    interleave: run each tile's epilogue inside the next tile's k loop (worth it for an
    epilogue bound by another unit than the FMAs: see _pipelined_tiles).
    """
    lda, ldb, ldc = (M if a_trans else K), (K if b_trans else N), N
    # Interleaved only with 32 vector registers (AVX-512): with 16 the accumulators and
    # the epilogue's values do not fit together (AVX2 code, W5's weight gradient and
    # RMSprop: 21.1 us plain, 21.8 interleaved; AVX-512 code 17.5 and 13.6).
    row_tiles = functools.partial(_row_tiles, interleave=interleave and vector_shape()[0] == 16)
    nthreads = part.nthreads if part is not None else 1
    tiling = tiling or default_tiling(M, N, K, nthreads)
    W, _ = vector_shape()
    V = tiling.vectors(N, W)
    NR = W * V
    n_tiles = N // NR
    rest = N - n_tiles * NR
    edge_v = -(-rest // W)
    edge_lanes = rest - (edge_v - 1) * W
    col_count = n_tiles + (1 if rest else 0)
    mr = tiling.mr
    row_count = -(-M // mr)
    split_cols = nthreads > 1 and col_count >= nthreads and \
        (tiling.split == "cols" or row_count < nthreads)
    split_rows = nthreads > 1 and not split_cols
    rows = part.share(b, row_count) if split_rows else None
    lo, hi = part.share(b, col_count) if split_cols else (i64(0), i64(col_count))
    full_hi = b.select(b.icmp_signed("<", hi, i64(n_tiles)), hi, i64(n_tiles))

    packed = tiling.pack_floats(N, K, W, b_trans) > 0
    assert not packed or pack is not None, "a packed tiling needs its buffer"

    def k_range(kblock):
        return (kblock[0], kblock[1]) if kblock else (i64(0), i64(K))

    def packed_row(k0):
        """b_at of a packed panel: its row k (the k-block starting at k0)."""
        return lambda b, k: _gep(b, pack, b.mul(b.sub(k, k0), i64(NR)))

    def transposed_panel(kblock, rows, j0, width, V_):
        k0, k1 = k_range(kblock)
        _pack_transposed(b, B, ldb, pack, NR, j0, width, k0, k1, W)
        lanes = None if width == V_ * W else width - (V_ - 1) * W
        row_tiles(b, A, B, C, M, K, lda, ldb, ldc, j0, W, V_, lanes, a_trans, rows, kblock,
                   epilogue, mr, b_at=packed_row(k0))

    def panel(kblock, rows, b, jt):
        j0 = b.mul(jt, i64(NR))
        if b_trans:
            transposed_panel(kblock, rows, j0, NR, V)
            return
        if not packed:
            row_tiles(b, A, B, C, M, K, lda, ldb, ldc, j0, W, V, None, a_trans, rows, kblock,
                       epilogue, mr)
            return
        # Rows k0..k1 of the panel, contiguous: B's rows are ldb apart, and at a
        # power-of-two stride they share a few L1 sets and evict one another.
        k0, k1 = k_range(kblock)
        vec = ir.VectorType(F32, W)

        def copy(b, k, _):
            src = _gep(b, B, b.add(b.mul(k, i64(ldb)), j0))
            dst = _gep(b, pack, b.mul(b.sub(k, k0), i64(NR)))
            for v in range(V):
                b.store(b.load(_gep(b, src, i64(v * W)), typ=vec, align=4),
                        _gep(b, dst, i64(v * W)), align=4)
        loop(b, k1, copy, name="pk", start=k0)
        row_tiles(b, A, B, C, M, K, lda, ldb, ldc, j0, W, V, None, a_trans, rows, kblock,
                   epilogue, mr, b_at=packed_row(k0))

    def panels_of(kblock, rows):
        if n_tiles:
            loop(b, full_hi, lambda b, jt, _: panel(kblock, rows, b, jt) or [], name="jt", start=lo)
        if rest:
            # The columns past the last full panel: ceil(rest / W) vectors, the last masked
            # (by the thread whose non-empty share of panels ends with it).
            last = b.and_(b.icmp_signed("==", hi, i64(col_count)), b.icmp_signed("<", lo, hi))
            if b_trans:
                _when(b, last, lambda: transposed_panel(kblock, rows, i64(n_tiles * NR), rest,
                                                        edge_v))
            else:
                _when(b, last, lambda: row_tiles(b, A, B, C, M, K, lda, ldb, ldc,
                                                 i64(n_tiles * NR), W, edge_v, edge_lanes,
                                                 a_trans, rows, kblock, epilogue, mr))

    per_block = tiling.mc // mr if tiling.mc else 0

    def panels(kblock):
        if not per_block or per_block >= row_count:
            panels_of(kblock, rows)
            return
        # Row blocks of mc rows: the block's rows of A stay in L2 while every column
        # panel passes over them (else all of A streams from L3 once per panel).
        rlo, rhi = rows or (i64(0), i64(row_count))
        nblocks = b.udiv(b.add(b.sub(rhi, rlo), i64(per_block - 1)), i64(per_block))

        def block(b, rb, _):
            blo = b.add(rlo, b.mul(rb, i64(per_block)))
            bhi = b.add(blo, i64(per_block))
            panels_of(kblock, (blo, b.select(b.icmp_signed("<", bhi, rhi), bhi, rhi)))
        loop(b, nblocks, block, name="rb")
    kc = k_block(K, tiling.kc_max)
    if kc >= K:
        panels(None)
        return
    assert epilogue is None or epilogue[1] is None, "k-blocks keep partial sums in C"

    # Long K: blocks of about KC, so the slice of B each tile streams stays in L1/L2.
    def kblock_of(b, p):
        k0 = b.mul(p, i64(kc))
        k1 = b.add(k0, i64(kc))
        k1 = b.select(b.icmp_signed("<", k1, i64(K)), k1, i64(K))
        return (k0, k1, b.icmp_signed("==", p, i64(0)),
                b.icmp_signed("==", p, i64(-(-K // kc) - 1)))
    # (Measured and not kept, W2's 1024x512 by 784 and 1024x256 by 512 on a Xeon with
    # AVX-512: row blocks outside the k-blocks, C's rows staying in L2 with k-blocks
    # of 128-196 whose panels of B fit L1: never faster than the tuned tilings.)
    loop(b, -(-K // kc), lambda b, p, _: panels(kblock_of(b, p)), name="pc")
