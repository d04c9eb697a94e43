"""Reduction kernels: reduce_sum / reduce_max / reduce_mean / argmax.

Suffix reductions (the reduced axes are the last ones, e.g. softmax's row sums,
a loss's mean over the batch): loops over the kept axes, an accumulator carried
through the inner loops (with reassoc so it vectorizes), then the fused
epilogue computed from the accumulator and stored. Other reductions (a bias
gradient summed over the batch) walk the input in memory order and accumulate
into the output buffer, which also vectorizes along the contiguous axis.
"""
from __future__ import annotations

import math

from llvmlite import ir

from ...ir.passes.fuse import Kernel, is_suffix_reduction
from ..irutil import F32, I32, REDUCE_FLAGS, f32, i64, loop, loop_nest
from .emitter import Emitter

_IDENTITY = {"reduce_sum": 0.0, "reduce_mean": 0.0, "reduce_max": float("-inf")}


def _combine(b, fn, op, acc, x):
    if op == "reduce_max":
        return fn.call(b, "llvm.maximum.f32", acc, x)
    return b.fadd(acc, x, flags=REDUCE_FLAGS)


def lower_reduce(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    r = kernel.reduce
    node = graph.nodes[r]
    src = node.inputs[0]
    rin = graph.type(src).shape
    em = Emitter(b, graph, set(kernel.members), buffers, fn)
    in_outputs = [o for o in kernel.outputs if o in kernel.prologue]
    out_outputs = [o for o in kernel.outputs if o not in kernel.prologue]
    if is_suffix_reduction(graph, r):
        _lower_suffix(b, graph, kernel, em, node, src, rin, in_outputs, out_outputs, fn, part)
    elif part is None:
        _lower_scatter(b, graph, kernel, em, r, node, src, rin, in_outputs, fn)
    else:
        # Accumulating into the output from several threads would race: one thread
        # does it (these are small: a bias gradient summed over the batch).
        part.only_first(b, lambda: _lower_scatter(b, graph, kernel, em, r, node, src, rin,
                                                  in_outputs, fn))


def _lower_suffix(b, graph, kernel, em, node, src, rin, in_outputs, out_outputs, fn, part):
    nred = len(node.params["axes"]) if "axes" in node.params else 1
    keep = rin[:len(rin) - nred]
    keepdims = node.params.get("keepdims", False)

    def outer(b, kidx):
        result = reduce_at(b, graph, kernel, em, kidx, in_outputs, fn)
        em.reset()
        em.override[kernel.reduce] = result
        oidx = kidx + (i64(0),) * nred if keepdims else kidx
        for o in out_outputs:
            em.store(o, oidx, em.value(o, oidx))
        del em.override[kernel.reduce]
    loop_nest(b, keep, outer, name="k", part=part)


def reduce_at(b, graph, kernel: Kernel, em: Emitter, kidx: tuple, in_outputs, fn,
              unroll: bool = False):
    """The suffix reduction of kernel at kept index kidx: a loop over the reduced
    axes carrying the accumulator; prologue values in in_outputs are stored on the
    way. Returns the result (argmax: i32; reduce_mean: scaled)."""
    node = graph.nodes[kernel.reduce]
    src = node.inputs[0]
    rin = graph.type(src).shape
    nred = len(node.params["axes"]) if "axes" in node.params else 1
    red = rin[len(rin) - nred:]

    def inner(level, ridx, carried):
        if level < len(red):
            return loop(b, red[level], lambda b, i, c: inner(level + 1, ridx + [i], c),
                        init=carried, name=f"r{level}", unroll=unroll)
        # Values computed in a loop body do not dominate code after the loop,
        # so nothing is memoized across bodies (LLVM hoists invariants itself).
        em.reset()
        idx = kidx + tuple(ridx)
        x = em.value(src, idx)
        for o in in_outputs:
            em.store(o, idx, em.value(o, idx))
        if node.op == "argmax":
            best, pos = carried
            if isinstance(x.type, ir.IntType):
                x = b.sitofp(x, F32)
            better = b.fcmp_ordered(">", x, best)
            return [b.select(better, x, best), b.select(better, b.sitofp(ridx[-1], F32), pos)]
        return [_combine(b, fn, node.op, carried[0], x)]

    init = [f32(float("-inf")), f32(0.0)] if node.op == "argmax" else [f32(_IDENTITY[node.op])]
    acc = inner(0, [], init)
    result = b.fptosi(acc[1], I32) if node.op == "argmax" else acc[0]
    if node.op == "reduce_mean":
        result = b.fmul(result, f32(1.0 / math.prod(red)))
    return result


def _lower_scatter(b, graph, kernel, em, r, node, src, rin, in_outputs, fn):
    axes = node.params["axes"]
    out_size = graph.type(r).size
    ptr = em.buffers[r]
    flat = lambda v: (out_size,)  # noqa: E731
    flat_em = Emitter(b, graph, set(), {r: ptr}, fn, flat)
    loop(b, out_size, lambda b, i, _: flat_em.store(r, (i,), f32(_IDENTITY[node.op])))

    def body(b, idx):
        em.reset()
        x = em.value(src, idx)
        for o in in_outputs:
            em.store(o, idx, em.value(o, idx))
        oidx = tuple(i for d, i in enumerate(idx) if d not in axes)
        if node.params["keepdims"]:
            oidx = tuple(i64(0) if d in axes else i for d, i in enumerate(idx))
        acc = em.load(r, oidx)
        em.store(r, oidx, _combine(b, fn, node.op, acc, x))
    loop_nest(b, rin, body)
    if node.op == "reduce_mean":
        scale = f32(1.0 / math.prod(rin[a] for a in axes))
        loop(b, out_size, lambda b, i, _: flat_em.store(r, (i,), b.fmul(flat_em.load(r, (i,)), scale)))
