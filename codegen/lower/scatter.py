"""scatter_add: rows of updates added into a zeroed table at data-dependent rows.

The backward pass of an embedding lookup: it never builds a dense one-hot.
One thread does it, in index order, so repeated ids add up deterministically.
"""
from __future__ import annotations

import math

from ...ir.passes.fuse import Kernel
from ..irutil import F32, I32, I64, FLAGS, f32, i64, loop


def _gep(b, p, off, typ=F32):
    return b.gep(p, [off], inbounds=True, source_etype=typ)


def lower_scatter(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    (v,) = kernel.members
    idx_id, upd_id = graph.nodes[v].inputs
    out, idx, upd = buffers[v], buffers[idx_id], buffers[upd_id]
    num = graph.type(v).shape[0]
    row = math.prod(graph.type(v).shape[1:])
    count = graph.type(idx_id).size

    def body():
        loop(b, num * row, lambda b, i, _: b.store(f32(0.0), _gep(b, out, i)), name="zero")

        def each(b, i, _):
            r = b.sext(b.load(_gep(b, idx, i, I32), typ=I32), I64)
            r = b.select(b.icmp_signed("<", r, i64(0)), i64(0), r)
            r = b.select(b.icmp_signed(">", r, i64(num - 1)), i64(num - 1), r)
            dst = _gep(b, out, b.mul(r, i64(row)))
            src = _gep(b, upd, b.mul(i, i64(row)))

            def add(b, d, _):
                p = _gep(b, dst, d)
                b.store(b.fadd(b.load(p, typ=F32), b.load(_gep(b, src, d), typ=F32), flags=FLAGS), p)
            loop(b, row, add, name="d")
        loop(b, count, each, name="n")
    if part is None:
        body()
    else:
        part.only_first(b, body)
