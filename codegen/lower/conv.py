"""Convolution kernels: conv and conv_weight_grad, with their fused epilogues.

This is the direct lowering: one output row (an output pixel's Cout values, or
a kernel tap's input channel's Cout values for the weight gradient) at a time,
accumulated in a per-thread scratch row over the taps (or pixels) whose input
position is inside the (dilated, padded) input, the loop over the Cout
columns contiguous so that it vectorizes. Then the epilogue (bias, activation,
an optimizer update) runs on the finished row, as on a GEMM tile.
"""
from __future__ import annotations



from ...ir.passes.fuse import Kernel
from ..irutil import F32, I8, FLAGS, f32, i64, loop, loop_nest
from .emitter import Emitter

CONV_OPS = ("conv", "conv_weight_grad")


def conv_of(graph, kernel: Kernel) -> int:
    return next(m for m in kernel.members if graph.nodes[m].op in CONV_OPS)


def _pad(n):
    return (n + 63) // 64 * 64


def scratch_bytes(graph, kernel: Kernel, nthreads: int = 1) -> int:
    """One row of Cout floats per thread."""
    return _pad(graph.type(conv_of(graph, kernel)).shape[-1] * 4) * nthreads


def _gep(b, p, off):
    return b.gep(p, [off], inbounds=True, source_etype=F32)


def _when(b, cond, emit):
    then = b.append_basic_block("when")
    done = b.append_basic_block("when.done")
    b.cbranch(cond, then, done)
    b.position_at_end(then)
    emit()
    b.branch(done)
    b.position_at_end(done)


def input_position(b, out_idx, tap_idx, a, in_spatial):
    """(inside, positions): the input pixel an output pixel sees through a tap, per
    spatial axis (o*stride + t*rhs_dilation - lo, undilated by lhs_dilation), and
    whether it exists (inside the input, on the lhs_dilation lattice)."""
    inside, pos = None, []
    for o, t, s, (lo, _), ld, rd, n in zip(out_idx, tap_idx, a["strides"], a["padding"],
                                           a["lhs_dilation"], a["rhs_dilation"], in_spatial):
        p = b.sub(b.add(b.mul(o, i64(s)), b.mul(t, i64(rd))), i64(lo))
        ok = b.icmp_signed(">=", p, i64(0))
        if ld > 1:
            ok = b.and_(ok, b.icmp_signed("==", b.srem(p, i64(ld)), i64(0)))
            p = b.sdiv(p, i64(ld))
        ok = b.and_(ok, b.icmp_signed("<", p, i64(n)))
        inside = ok if inside is None else b.and_(inside, ok)
        pos.append(p)
    return inside, pos


def _offset(b, idx, shape):
    off = i64(0)
    for i, d in zip(idx, shape):
        off = b.add(b.mul(off, i64(d)), i)
    return off


class _Finish:
    """Stores a finished row of the product: through the epilogue (which stores
    every output of the kernel, the product too when it is kept) or directly."""

    def __init__(self, b, graph, kernel, buffers, fn, v):
        self.v, self.outputs = v, kernel.outputs
        self.em = Emitter(b, graph, {m for m in kernel.members if m != v}, buffers, fn) \
            if len(kernel.members) > 1 else None
        self.out = buffers.get(v)
        self.shape = graph.type(v).shape

    def row(self, b, lead_idx, row):
        width = self.shape[-1]

        def col(b, j, _):
            x = b.load(_gep(b, row, j), typ=F32)
            idx = (*lead_idx, j)
            if self.em is None:
                b.store(x, _gep(b, self.out, _offset(b, idx, self.shape)))
                return
            em = self.em
            em.b = b
            em.reset()
            em.override[self.v] = x
            values = [(o, em.value(o, idx)) for o in self.outputs]
            for o, y in values:
                em.store(o, idx, y)
            del em.override[self.v]
        loop(b, width, col, name="ej")


def _row_scratch(b, graph, kernel, scratch, part):
    per_thread = scratch_bytes(graph, kernel, 1)
    off = b.mul(part.tid, i64(per_thread)) if part is not None else i64(0)
    return b.gep(scratch, [off], inbounds=True, source_etype=I8)


def _zero(b, row, n):
    loop(b, n, lambda b, j, _: b.store(f32(0.0), _gep(b, row, j)), name="z")


def _axpy(b, row, x, src, n):
    """row[j] += x * src[j], j < n."""
    def body(b, j, _):
        p = _gep(b, row, j)
        y = b.fadd(b.load(p, typ=F32), b.fmul(x, b.load(_gep(b, src, j), typ=F32), flags=FLAGS),
                   flags=FLAGS)
        b.store(y, p)
    loop(b, n, body, name="co")


def _rows(b, shape, part, body):
    """body(b, idx) for every index of `shape`, its leading axis split between threads."""
    loop_nest(b, shape, body, name="r", part=part)


def lower_conv(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    v = conv_of(graph, kernel)
    node = graph.nodes[v]
    a = node.params
    x_id, w_id = node.inputs
    X, W = buffers[x_id], buffers[w_id]
    xs = graph.type(x_id).shape
    in_spatial, cin = xs[1:-1], xs[-1]
    finish = _Finish(b, graph, kernel, buffers, fn, v)
    row = _row_scratch(b, graph, kernel, scratch, part)
    G = a["groups"]
    if node.op == "conv":
        ws = graph.type(w_id).shape
        kernel_shape, cig, cout = ws[:-2], ws[-2], ws[-1]
        cog = cout // G

        def out_row(b, idx):
            n, o = idx[0], idx[1:]
            _zero(b, row, cout)

            def tap(b, t):
                inside, pos = input_position(b, o, t, a, in_spatial)

                def accumulate():
                    xrow = _gep(b, X, b.mul(_offset(b, (n, *pos), xs[:-1]), i64(cin)))
                    wtap = _gep(b, W, b.mul(_offset(b, t, kernel_shape), i64(cig * cout)))

                    def group(b, g, _):
                        def channel(b, i, _):
                            xv = b.load(_gep(b, xrow, b.add(b.mul(g, i64(cig)), i)), typ=F32)
                            src = _gep(b, wtap, b.add(b.mul(i, i64(cout)), b.mul(g, i64(cog))))
                            _axpy(b, _gep(b, row, b.mul(g, i64(cog))), xv, src, cog)
                        loop(b, cig, channel, name="ci")
                    loop(b, G, group, name="g")
                _when(b, inside, accumulate)
            loop_nest(b, kernel_shape, tap, name="t")
            finish.row(b, idx, row)
        _rows(b, graph.type(v).shape[:-1], part, out_row)
        return

    # conv_weight_grad: one row per (tap, input channel of a group), over all pixels.
    G_id = w_id
    gs = graph.type(G_id).shape
    kernel_shape = a["kernel_shape"]
    cout = gs[-1]
    cig, cog = cin // G, cout // G

    def weight_row(b, idx):
        t, i = idx[:-1], idx[-1]
        _zero(b, row, cout)

        def pixel(b, pidx):
            n, o = pidx[0], pidx[1:]
            inside, pos = input_position(b, o, t, a, in_spatial)

            def accumulate():
                xrow = _gep(b, X, b.mul(_offset(b, (n, *pos), xs[:-1]), i64(cin)))
                grow = _gep(b, W, b.mul(_offset(b, pidx, gs[:-1]), i64(cout)))

                def group(b, g, _):
                    xv = b.load(_gep(b, xrow, b.add(b.mul(g, i64(cig)), i)), typ=F32)
                    off = b.mul(g, i64(cog))
                    _axpy(b, _gep(b, row, off), xv, _gep(b, grow, off), cog)
                loop(b, G, group, name="g")
            _when(b, inside, accumulate)
        loop_nest(b, gs[:-1], pixel, name="p")
        finish.row(b, idx, row)
    _rows(b, (*kernel_shape, cig), part, weight_row)



