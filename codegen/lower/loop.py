"""Loop kernels: every output of the kernel computed and stored in one loop nest.

When every buffer the kernel touches has the kernel's full shape or a single
element, the nest collapses to one flat loop (the optimizer update, most
elementwise chains): the simplest loop for the vectorizer.
"""
from __future__ import annotations

import math

from ...ir.passes.fuse import Kernel
from ..irutil import loop_nest
from .emitter import Emitter


def flat_shape_of(graph, kernel: Kernel):
    """A shape function that views the kernel as 1-D, or None when it can't."""
    if any(graph.nodes[m].op in ("transpose", "broadcast_to", "slice", "pad", "gather")
           for m in kernel.members):
        return None
    size = math.prod(kernel.shape)
    for v in kernel.inputs:
        if graph.type(v).size not in (1, size):
            return None
    return lambda v: (size,) if graph.type(v).size == size and size != 1 else ()


def lower_loop(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    shape_of = flat_shape_of(graph, kernel)
    shape = (math.prod(kernel.shape),) if shape_of else kernel.shape
    em = Emitter(b, graph, set(kernel.members), buffers, fn, shape_of)

    def body(b, idx):
        em.reset()
        for o in kernel.outputs:
            em.store(o, idx, em.value(o, idx))
    # Flat loops split in chunks of 64 floats: whole cache lines per thread.
    loop_nest(b, shape, body, part=part, align=64 if shape_of else 1)
