"""Convolution kernels as implicit GEMMs on the register-blocked micro-kernel.

conv: C (pixels x Cout/G, per group) = A (pixels x taps*Cin/G) @ W, where W,
the kernel (*k, Cin/G, Cout), is already a (taps*Cin/G) x Cout matrix and A is
never built: a tile of MR output pixels keeps MR row pointers per tap, one per
pixel, at the input pixel it sees through that tap (or at a row of zeros where
it sees padding, as XNNPACK's indirect GEMM does), recomputed per tap from the
pixels' coordinates. For each tap the k loop runs over the input channels of
the group: V vector loads of W's row, MR broadcasts, MR*V FMAs into
accumulators that stay in registers over all taps and channels.

conv_weight_grad: for tap t, dW_t (Cin/G x Cout/G) = A_t^T G, the sum over
output pixels p of x[src(p, t)] (MR contiguous input channels, broadcast) times
G's row p (V vectors): the A^T B form of the GEMM. Pixels are taken in blocks
of KC (so that a block of G and of x stays in cache while every tile of the
gradient reads it); for each block, a table lists per tap the pixels that see
the input and their offsets in x and G, so the k loops run over those only.
Partial sums live in the gradient's buffer (or scratch) between blocks.

Epilogues (bias, activation, an optimizer update) run on each finished tile,
as on a matmul's; threads split the row tiles (conv) or the gradient's tiles
(conv_weight_grad). Depthwise convolutions take their own path
(conv_depthwise.py).
"""
from __future__ import annotations

import math

from llvmlite import ir

from ...ir.passes.fuse import Kernel
from ..irutil import F32, I8, I32, I64, i64, loop
from .conv_depthwise import is_depthwise, lower_depthwise, scratch_bytes as depthwise_scratch
from .conv_index import decompose, input_position, offset
from .emitter import Emitter
from .gemm import _fma, _masked, _splat, _when, tile_rows, vector_shape

CONV_OPS = ("conv", "conv_weight_grad")
# Pixels per block of the kernel gradient: G's block is 64 KiB at Cout = 64 (measured at
# 3x3 64->64 on 128x14x14x64, one core, CPU time: 128 -> 256 -> 512 within noise, about 70%).
KC = 256


def conv_of(graph, kernel: Kernel) -> int:
    return next(m for m in kernel.members if graph.nodes[m].op in CONV_OPS)


def _pad(n):
    return (n + 63) // 64 * 64


def _has_epilogue(kernel) -> bool:
    return len(kernel.members) > 1


def scratch_bytes(graph, kernel: Kernel, nthreads: int = 1) -> int:
    """conv: a product tile per thread for an epilogue. conv_weight_grad: the
    per-thread pixel tables, and a buffer for the partial sums when the gradient
    itself is not kept. Depthwise: a row per thread."""
    v = conv_of(graph, kernel)
    if is_depthwise(graph, v):
        return depthwise_scratch(graph, v, nthreads)
    if graph.nodes[v].op == "conv_weight_grad":
        return _weight_grad_scratch(graph, kernel, v, nthreads)
    if not _has_epilogue(kernel):
        return 0
    W, V = vector_shape()
    return _pad(max(tile_rows(u) * u for u in range(1, V + 1)) * W * 4) * nthreads


def _gep(b, p, off, typ=F32):
    return b.gep(p, [off], inbounds=True, source_etype=typ)


def _zero_row(b, n):
    """A module constant of n zero floats: what padding taps point at."""
    module = b.module
    name = f"kc.zeros.{n}"
    gv = module.globals.get(name)
    if gv is None:
        t = ir.ArrayType(F32, n)
        gv = ir.GlobalVariable(module, t, name=name)
        gv.global_constant = True
        gv.linkage = "private"
        gv.align = 64
        gv.initializer = ir.Constant(t, None)
    return b.bitcast(gv, ir.PointerType())


class _Tile:
    """The vector shape of one tile: `rows` rows of V vectors of W floats, the last
    vector masked to `last_lanes` columns when given."""

    def __init__(self, b, rows, V, last_lanes):
        self.W, _ = vector_shape()
        self.rows, self.V = rows, V
        self.vec = ir.VectorType(F32, self.W)
        self.zero = ir.Constant(self.vec, [0.0] * self.W)
        self.fma = _fma(b.module, self.vec)
        self.mask = None
        if last_lanes is not None and last_lanes < self.W:
            self.mask = ir.Constant(ir.VectorType(ir.IntType(1), self.W),
                                    [int(lane < last_lanes) for lane in range(self.W)])
        self.width = (V - 1) * self.W + (last_lanes if last_lanes is not None else self.W)

    def load(self, b, p, v):
        if self.mask is not None and v == self.V - 1:
            return b.call(_masked(b.module, "load", self.vec), [p, ir.Constant(I32, 4), self.mask,
                                                                 self.zero])
        return b.load(p, typ=self.vec, align=4)

    def store(self, b, x, p, v):
        if self.mask is not None and v == self.V - 1:
            b.call(_masked(b.module, "store", self.vec), [x, p, ir.Constant(I32, 4), self.mask])
        else:
            b.store(x, p, align=4)

    def step(self, b, acc, brow, a_addrs):
        """acc += (the float at a_addrs[r] for each row r) x (the V vectors at brow)."""
        bv = [self.load(b, _gep(b, brow, i64(v * self.W)), v) for v in range(self.V)]
        out = []
        for r in range(self.rows):
            a = _splat(b, b.load(a_addrs[r], typ=F32), self.vec)
            out += [b.call(self.fma, [a, bv[v], acc[r * self.V + v]]) for v in range(self.V)]
        return out


class _Epilogue:
    """The fused elementwise ops after the convolution, run element by element on a
    finished tile (from a scratch tile or the product's buffer); every output of the
    kernel is stored, the product too when it is kept."""

    def __init__(self, b, graph, kernel, buffers, fn, v):
        self.v, self.outputs = v, kernel.outputs
        self.em = Emitter(b, graph, {m for m in kernel.members if m != v}, buffers, fn)

    def row(self, b, lead_idx, j0, width, src):
        """Columns j0 .. j0 + width of the row at index lead_idx; src[j] the product."""
        em = self.em

        def col(b, j, _):
            x = b.load(_gep(b, src, j), typ=F32)
            idx = (*lead_idx, b.add(j0, j))
            em.b = b
            em.reset()
            em.override[self.v] = x
            values = [(o, em.value(o, idx)) for o in self.outputs]
            for o, y in values:
                em.store(o, idx, y)
            del em.override[self.v]
        loop(b, width, col, name="ej")


def _panels(cols, W, vmax):
    """(V, full panels, (edge vectors, edge lanes) or None) for `cols` columns."""
    V = max(1, min(vmax, cols // W))
    NR = V * W
    n_full, rest = cols // NR, cols % NR
    edge = None
    if rest:
        ev = -(-rest // W)
        edge = (ev, rest - (ev - 1) * W)
    return V, n_full, edge


def lower_conv(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    v = conv_of(graph, kernel)
    if is_depthwise(graph, v):
        epi = _Epilogue(b, graph, kernel, buffers, fn, v) if _has_epilogue(kernel) else None
        lower_depthwise(b, graph, buffers, scratch, part, v, epi)
    elif graph.nodes[v].op == "conv":
        _Forward(b, graph, kernel, buffers, fn, scratch, part, v).emit()
    else:
        _WeightGrad(b, graph, kernel, buffers, fn, scratch, part, v).emit()


# ------------------------------------------------------------------ conv
class _Forward:
    def __init__(self, b, graph, kernel, buffers, fn, scratch, part, v):
        node = graph.nodes[v]
        self.b, self.part, self.a = b, part, node.params
        x_id, w_id = node.inputs
        self.X, self.Wt = buffers[x_id], buffers[w_id]
        self.C = buffers.get(v)
        xs, ws = graph.type(x_id).shape, graph.type(w_id).shape
        self.x_shape, self.in_spatial, self.cin = xs, xs[1:-1], xs[-1]
        self.kernel, self.cig, self.cout = ws[:-2], ws[-2], ws[-1]
        self.taps = math.prod(self.kernel)
        self.G = self.a["groups"]
        self.cog = self.cout // self.G
        self.out_shape = graph.type(v).shape
        self.M = math.prod(self.out_shape[:-1])
        self.epi = _Epilogue(b, graph, kernel, buffers, fn, v) if _has_epilogue(kernel) else None
        self.tile_buf = None
        if self.epi is not None:
            per_thread = scratch_bytes(graph, kernel, 1)
            off = b.mul(part.tid, i64(per_thread)) if part is not None else i64(0)
            self.tile_buf = b.gep(scratch, [off], inbounds=True, source_etype=I8)
        self.zeros = _zero_row(b, self.cig)

    def emit(self):
        b = self.b
        W, vmax = vector_shape()
        V, n_full, edge = _panels(self.cog, W, vmax)
        mr = tile_rows(V)
        m_tiles, rem = divmod(self.M, mr)
        count = m_tiles + (1 if rem else 0)
        lo, hi = self.part.share(b, count) if self.part is not None else (i64(0), i64(count))
        full_hi = b.select(b.icmp_signed("<", hi, i64(m_tiles)), hi, i64(m_tiles))

        def panel(b, g, j0, V, last_lanes):
            tile = _Tile(b, mr, V, last_lanes)
            if m_tiles:
                loop(b, full_hi, lambda b, it, _: self.tile(b, tile, g, j0, b.mul(it, i64(mr))),
                     name="it", start=lo)
            if rem:
                small = _Tile(b, rem, V, last_lanes)
                _when(b, b.and_(b.icmp_signed("==", hi, i64(count)), b.icmp_signed("<", lo, hi)),
                      lambda: self.tile(b, small, g, j0, i64(m_tiles * mr)))

        def group(b, g, _):
            if n_full:
                NR = V * W
                loop(b, n_full, lambda b, jt, _: panel(b, g, b.mul(jt, i64(NR)), V, None),
                     name="jt")
            if edge:
                panel(b, g, i64(n_full * V * W), edge[0], edge[1])
        loop(b, self.G, group, name="g")

    def tile(self, b, tile: _Tile, g, j0, i0):
        """Rows i0 .. i0 + tile.rows (output pixels) x columns j0 .. of group g."""
        a = self.a
        pix = [decompose(b, b.add(i0, i64(r)), self.out_shape[:-1]) for r in range(tile.rows)]
        gin = b.mul(g, i64(self.cig))
        col = b.add(b.mul(g, i64(self.cog)), j0)

        def tap(b, t, acc):
            tidx = decompose(b, t, self.kernel)
            ptrs = []
            for n, *o in pix:
                inside, pos = input_position(b, o, tidx, a, self.in_spatial)
                off = b.add(b.mul(offset(b, (n, *pos), self.x_shape[:-1]), i64(self.cin)), gin)
                ptrs.append(b.select(inside, _gep(b, self.X, off), self.zeros))
            wtap = _gep(b, self.Wt, b.add(b.mul(t, i64(self.cig * self.cout)), col))
            return loop(b, self.cig, lambda b, ci, acc: tile.step(
                b, acc, _gep(b, wtap, b.mul(ci, i64(self.cout))), [_gep(b, p, ci) for p in ptrs]),
                init=acc, name="ci", unroll=self.cig <= 4)
        acc = loop(b, self.taps, tap, init=[tile.zero] * (tile.rows * tile.V), name="tap")
        if self.epi is None:
            for r in range(tile.rows):
                crow = _gep(b, self.C, b.add(b.mul(b.add(i0, i64(r)), i64(self.cout)), col))
                for v in range(tile.V):
                    tile.store(b, acc[r * tile.V + v], _gep(b, crow, i64(v * tile.W)), v)
            return
        ld = tile.V * tile.W
        for r in range(tile.rows):
            for v in range(tile.V):
                b.store(acc[r * tile.V + v], _gep(b, self.tile_buf, i64(r * ld + v * tile.W)),
                        align=4)
        for r, (n, *o) in enumerate(pix):
            self.epi.row(b, (n, *o), col, tile.width, _gep(b, self.tile_buf, i64(r * ld)))


# ------------------------------------------------------------------ conv_weight_grad
def _table_bytes(taps: int) -> int:
    """Per thread: for each tap, KC (x offset, G offset) pairs and a count."""
    return _pad(taps * (KC * 16 + 8))


def _weight_grad_scratch(graph, kernel, v, nthreads):
    partials = 0 if v in kernel.outputs else _pad(graph.type(v).nbytes)
    return partials + _table_bytes(math.prod(graph.nodes[v].params["kernel_shape"])) * nthreads


class _WeightGrad:
    """dW as A^T G over blocks of KC pixels. For each block each thread first lists,
    per tap, the pixels that see the input (their x and G offsets): the k loops then
    run over those pixels only, with no padding taps and no per-row setup."""

    def __init__(self, b, graph, kernel, buffers, fn, scratch, part, v):
        node = graph.nodes[v]
        self.b, self.part, self.a = b, part, node.params
        x_id, g_id = node.inputs
        self.X, self.Gy = buffers[x_id], buffers[g_id]
        xs, gs = graph.type(x_id).shape, graph.type(g_id).shape
        self.x_shape, self.in_spatial, self.cin = xs, xs[1:-1], xs[-1]
        self.g_shape, self.cout = gs, gs[-1]
        self.kernel = self.a["kernel_shape"]
        self.taps = math.prod(self.kernel)
        self.G = self.a["groups"]
        self.cig, self.cog = self.cin // self.G, self.cout // self.G
        self.pixels = math.prod(gs[:-1])
        self.epi = _Epilogue(b, graph, kernel, buffers, fn, v) if _has_epilogue(kernel) else None
        C = buffers.get(v) if v in kernel.outputs else None
        partials = 0
        if C is None:       # partial sums in scratch
            C = b.gep(scratch, [i64(0)], inbounds=True, source_etype=I8)
            partials = _pad(graph.type(v).nbytes)
        self.C = C
        off = i64(partials)
        if part is not None:
            off = b.add(off, b.mul(part.tid, i64(_table_bytes(self.taps))))
        self.table = b.gep(scratch, [off], inbounds=True, source_etype=I8)
        self.counts = _gep(b, self.table, i64(self.taps * KC * 2), I64)

    def build_table(self, b, p0, p1):
        """For each tap, the pixels of [p0, p1) that see the input through it."""
        loop(b, self.taps, lambda b, t, _: b.store(i64(0), _gep(b, self.counts, t, I64)),
             name="zc")

        def pixel(b, p, _):
            n, *o = decompose(b, p, self.g_shape[:-1])

            def tap(b, t, _):
                inside, pos = input_position(b, o, decompose(b, t, self.kernel), self.a,
                                             self.in_spatial)
                cnt_ptr = _gep(b, self.counts, t, I64)
                cnt = b.load(cnt_ptr, typ=I64)
                entry = _gep(b, self.table, b.mul(b.add(b.mul(t, i64(KC)), cnt), i64(2)), I64)
                b.store(b.mul(offset(b, (n, *pos), self.x_shape[:-1]), i64(self.cin)), entry)
                b.store(b.mul(p, i64(self.cout)), _gep(b, entry, i64(1), I64))
                b.store(b.add(cnt, b.zext(inside, I64)), cnt_ptr)
            loop(b, self.taps, tap, name="tt")
        loop(b, p1, pixel, name="tp", start=p0)

    def emit(self):
        b = self.b
        W, vmax = vector_shape()
        V, n_full, edge = _panels(self.cog, W, vmax)
        mr = tile_rows(V)
        r_tiles = -(-self.cig // mr)
        c_tiles = n_full + (1 if edge else 0)
        count = self.G * self.taps * r_tiles * c_tiles
        lo, hi = self.part.share(b, count) if self.part is not None else (i64(0), i64(count))
        n_blocks = -(-self.pixels // KC)
        variants = {}

        def variant(rows, panel_v, last_lanes):
            key = (rows, panel_v, last_lanes)
            if key not in variants:
                variants[key] = _Tile(b, rows, panel_v, last_lanes)
            return variants[key]

        def item(b, k, blk):
            g, t, it, jt = decompose(b, k, (self.G, self.taps, r_tiles, c_tiles))
            i0 = b.mul(it, i64(mr))
            j0 = b.mul(jt, i64(V * W))
            rows_rem = self.cig - (r_tiles - 1) * mr

            def by_cols(rows):
                def emit_full():
                    self.tile(b, variant(rows, V, None), g, t, i0, j0, blk, n_blocks)

                def emit_edge():
                    self.tile(b, variant(rows, *edge), g, t, i0, j0, blk, n_blocks)
                if not edge:
                    emit_full()
                    return
                if not n_full:
                    emit_edge()
                    return
                is_edge = b.icmp_signed("==", jt, i64(c_tiles - 1))
                _when(b, is_edge, emit_edge)
                _when(b, b.not_(is_edge), emit_full)

            if rows_rem == mr:
                by_cols(mr)
                return
            is_last = b.icmp_signed("==", it, i64(r_tiles - 1))
            _when(b, is_last, lambda: by_cols(rows_rem))
            if r_tiles > 1:
                _when(b, b.not_(is_last), lambda: by_cols(mr))

        def block(b, blk, _):
            p0 = b.mul(blk, i64(KC))
            p1 = b.add(p0, i64(KC))
            self.build_table(b, p0, b.select(b.icmp_signed("<", p1, i64(self.pixels)), p1,
                                             i64(self.pixels)))
            loop(b, hi, lambda b, k, _: item(b, k, blk), name="item", start=lo)
        loop(b, n_blocks, block, name="blk")

    def tile(self, b, tile: _Tile, g, t, i0, j0, blk, n_blocks):
        """dW rows (tap t, input channels i0 .. + rows of group g) x columns j0 .. of
        group g: this block's pixels added to the partial sums."""
        col = b.add(b.mul(g, i64(self.cog)), j0)
        crow0 = b.add(b.mul(t, i64(self.cig)), i0)          # row of dW as (taps*Cig) x Cout
        first = b.icmp_signed("==", blk, i64(0))
        c_ptrs = [[_gep(b, self.C, b.add(b.mul(b.add(crow0, i64(r)), i64(self.cout)),
                                         b.add(col, i64(v * tile.W))))
                   for v in range(tile.V)] for r in range(tile.rows)]
        acc = [b.select(first, tile.zero, tile.load(b, c_ptrs[r][v], v))
               for r in range(tile.rows) for v in range(tile.V)]
        xbase = _gep(b, self.X, b.add(b.mul(g, i64(self.cig)), i0))
        gbase = _gep(b, self.Gy, col)
        entries = _gep(b, self.table, b.mul(t, i64(KC * 2)), I64)

        def pixel(b, e, acc):
            entry = _gep(b, entries, b.mul(e, i64(2)), I64)
            src = _gep(b, xbase, b.load(entry, typ=I64))
            grow = _gep(b, gbase, b.load(_gep(b, entry, i64(1), I64), typ=I64))
            return tile.step(b, acc, grow, [_gep(b, src, i64(r)) for r in range(tile.rows)])
        acc = loop(b, b.load(_gep(b, self.counts, t, I64), typ=I64), pixel, init=acc, name="px")
        for r in range(tile.rows):
            for v in range(tile.V):
                tile.store(b, acc[r * tile.V + v], c_ptrs[r][v], v)
        if self.epi is not None:
            def finish():
                tidx = decompose(b, t, self.kernel)
                for r in range(tile.rows):
                    self.epi.row(b, (*tidx, b.add(i0, i64(r))), col, tile.width, c_ptrs[r][0])
            _when(b, b.icmp_signed("==", blk, i64(n_blocks - 1)), finish)
