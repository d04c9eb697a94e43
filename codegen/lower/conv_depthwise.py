"""Depthwise convolutions (groups > 1, one input channel per group): vectorized
over the channels instead of on the GEMM, whose tiles would hold one column.

Output channel c reads input channel c // m (m = Cout / Cin, the depth
multiplier). conv: per output pixel, a row of Cout partial sums (per-thread
scratch, in L1) takes one multiply-add per channel for each tap that sees the
input. conv_weight_grad: per tap, a row of Cout sums over every pixel that sees
the input. Then the epilogue runs on the finished row.
"""
from __future__ import annotations

import math

from ..irutil import F32, FLAGS, I8, f32, i64, loop, loop_nest
from .conv_index import decompose, input_position, offset


def _gep(b, p, off):
    return b.gep(p, [off], inbounds=True, source_etype=F32)


def is_depthwise(graph, v) -> bool:
    node = graph.nodes[v]
    groups = node.params["groups"]
    cin = graph.type(node.inputs[0]).shape[-1]
    return groups > 1 and cin == groups


def scratch_bytes(graph, v, nthreads) -> int:
    return (graph.type(v).shape[-1] * 4 + 63) // 64 * 64 * nthreads


def _when(b, cond, emit):
    then = b.append_basic_block("when")
    done = b.append_basic_block("when.done")
    b.cbranch(cond, then, done)
    b.position_at_end(then)
    emit()
    b.branch(done)
    b.position_at_end(done)


def _accumulate(b, row, xrow, src, cout, m):
    """row[c] += xrow[c // m] * src[c] for c < cout."""
    def body(b, c, _):
        p = _gep(b, row, c)
        xi = c if m == 1 else b.udiv(c, i64(m))
        y = b.fadd(b.load(p, typ=F32), b.fmul(b.load(_gep(b, xrow, xi), typ=F32),
                                              b.load(_gep(b, src, c), typ=F32), flags=FLAGS),
                   flags=FLAGS)
        b.store(y, p)
    loop(b, cout, body, name="c")


def lower_depthwise(b, graph, buffers, scratch, part, v, epilogue):
    """epilogue: conv.py's _Epilogue of the kernel, or None."""
    node = graph.nodes[v]
    a = node.params
    x_id, y_id = node.inputs
    X, Y = buffers[x_id], buffers[y_id]
    xs = graph.type(x_id).shape
    out_shape = graph.type(v).shape
    cout = out_shape[-1]
    m = cout // xs[-1]
    off = b.mul(part.tid, i64(scratch_bytes(graph, v, 1))) if part is not None else i64(0)
    row = b.gep(scratch, [off], inbounds=True, source_etype=I8)
    C = buffers.get(v)

    def finish(b, lead):
        if epilogue is not None:
            epilogue.row(b, lead, i64(0), cout, row)
            return
        dst = _gep(b, C, b.mul(offset(b, lead, out_shape[:-1]), i64(cout)))
        loop(b, cout, lambda b, c, _: b.store(b.load(_gep(b, row, c), typ=F32), _gep(b, dst, c)),
             name="st")

    def zero(b):
        loop(b, cout, lambda b, c, _: b.store(f32(0.0), _gep(b, row, c)), name="z")

    def xrow_at(b, n, pos):
        return _gep(b, X, b.mul(offset(b, (n, *pos), xs[:-1]), i64(xs[-1])))

    if node.op == "conv":
        kshape = graph.type(y_id).shape[:-2]

        def pixel(b, idx):
            n, o = idx[0], idx[1:]
            zero(b)

            def tap(b, t):
                inside, pos = input_position(b, o, t, a, xs[1:-1])
                wt = _gep(b, Y, b.mul(offset(b, t, kshape), i64(cout)))
                _when(b, inside, lambda: _accumulate(b, row, xrow_at(b, n, pos), wt, cout, m))
            loop_nest(b, kshape, tap, name="t")
            finish(b, idx)
        loop_nest(b, out_shape[:-1], pixel, name="p", part=part)
        return

    # conv_weight_grad: dW is (*k, 1, Cout); one row per tap
    gshape = graph.type(y_id).shape
    kshape = a["kernel_shape"]
    taps = math.prod(kshape)

    def tap_row(b, t, _):
        tidx = decompose(b, t, kshape)
        zero(b)

        def pixel(b, idx):
            n, o = idx[0], idx[1:]
            inside, pos = input_position(b, o, tidx, a, xs[1:-1])
            grow = _gep(b, Y, b.mul(offset(b, idx, gshape[:-1]), i64(cout)))
            _when(b, inside, lambda: _accumulate(b, row, xrow_at(b, n, pos), grow, cout, m))
        loop_nest(b, gshape[:-1], pixel, name="p")
        finish(b, (*tidx, i64(0)))
    lo, hi = part.share(b, taps) if part is not None else (i64(0), i64(taps))
    loop(b, hi, tap_row, name="tap", start=lo)
