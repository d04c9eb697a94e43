"""Rows kernels (ir/passes/fuse_rows.py): one loop over the rows, every stage per row.

For each row this thread owns, the stages run in order: a reduction loops over
the row and leaves its result (and its per-row epilogue) in registers; a row
stage loops over the row storing its outputs; a per-row stage computes one
value. Later stages read the per-row values of earlier ones as registers
(Emitter.override) and their row values from the buffers just written, which
are in L1. Rows are split between threads; no stage reads another row, so
threads need no barrier between stages.
"""
from __future__ import annotations

from ...ir.passes.fuse import Kernel
from ..irutil import i64, loop, loop_nest
from .emitter import Emitter
from .reduce import reduce_at


def lower_rows(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    rows = kernel.shape
    stored = set(kernel.outputs)
    views = [(v, graph.nodes[v].inputs[0]) for v in kernel.views]

    def per_row(v):
        s = graph.type(v).shape
        return s == rows or s == rows + (1,)

    def row_index(ridx, v):
        return ridx if graph.type(v).shape == rows else ridx + (i64(0),)

    def body(b, ridx):
        scalars = {}        # per-row values of earlier stages, as registers

        def alias_views():
            for v, src in views:
                if src in scalars:
                    scalars[v] = scalars[src]

        for st in kernel.stages:
            alias_views()
            em = Emitter(b, graph, set(st.members), buffers, fn)
            em.override.update({v: x for v, x in scalars.items() if v not in st.members})
            if st.kind == "reduce":
                in_outputs = [o for o in st.outputs if o in st.prologue and o in stored]
                result = reduce_at(b, graph, st, em, ridx, in_outputs, fn, unroll=True)
                em.reset()
                em.override[st.reduce] = result
                epilogue = [m for m in st.members if m not in st.prologue]
            elif per_row(st.members[-1]):
                em.reset()
                epilogue = st.members
            else:
                _row_stage(b, st, em, ridx, stored)
                continue
            for m in epilogue:
                idx = row_index(ridx, m)
                x = em.value(m, idx)
                scalars[m] = x
                if m in stored:
                    em.store(m, idx, x)
    loop_nest(b, rows, body, name="row", part=part)


def _row_stage(b, st: Kernel, em: Emitter, ridx, stored):
    width = em.g.type(st.members[-1]).shape[-1]
    outs = [o for o in st.outputs if o in stored]

    def elem(b, j, _):
        em.reset()
        idx = ridx + (j,)
        for o in outs:
            em.store(o, idx, em.value(o, idx))
        return []
    loop(b, width, elem, name="col", unroll=True)
