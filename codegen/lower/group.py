"""A group kernel (independent stages: the optimizer's update of every weight, merged
by fuse_updates) lowered as one call per stage, to a function per distinct stage body.

A deep model's update kernel has a stage per weight and slot (a 30-block model: ~120),
most of them the same code on buffers of the same shapes. Lowered inline they made one
function of thousands of lines, the longest to optimize (its time grows with the model,
and no other core can share it). Each stage as a function of its own buffers only is
the same code as every other stage of that shape: identical bodies are one function
(the module keeps a table of them), so the update kernel's code stays a few small
functions whatever the depth. A call per stage costs nanoseconds; a stage streams
its buffers.
"""
from __future__ import annotations

from llvmlite import ir

from ..irutil import Partition, kernel_function, one_per_body


def lower_group(lower: dict, b, graph, kernel, buffers, fn, scratch=None, part=None):
    """Independent stages, one after another; each split between the threads."""
    for n, st in enumerate(kernel.stages):
        if scratch is not None:     # the stages share the kernel's scratch space: inline
            lower[st.kind](b, graph, st, buffers, fn, scratch, part)
            continue
        callee, args = _outlined(lower, b, graph, st, buffers, fn, part, n)
        b.call(callee, [b.function.args[0], *args])


def _outlined(lower, b, graph, st, buffers, fn, part, n):
    """(function, its buffer arguments) computing stage st: an existing function with
    the same body when the module has one."""
    module = b.function.module
    used = [v for v in dict.fromkeys([*st.inputs, *st.outputs]) if v in buffers]
    pointers = list(dict.fromkeys(buffers[v] for v in used))     # aliasing values: one
    stage, tid, args = kernel_function(module, module.get_unique_name(f"{b.function.name}.s{n}"),
                                       len(pointers))
    own = {v: args[pointers.index(buffers[v])] for v in used}
    sb = ir.IRBuilder(stage.append_basic_block("entry"))
    lower[st.kind](sb, graph, st, own, fn, None,
                   Partition(tid, part.nthreads) if part is not None else None)
    sb.ret_void()
    return one_per_body(module.__dict__.setdefault("stage_bodies", {}), stage), pointers
