"""merge_updates: the optimizer's remaining update loops become one kernel.

The update of a weight matrix runs in the epilogue of the GEMM that computes
its gradient (the gradient never goes to memory). Every other update (biases,
normalization parameters, the iteration counter, slots of parameters whose
gradient is not a GEMM) is a loop kernel of its own; these are independent of
each other, so they run as the stages of one kernel: one call that walks all
of those parameter buffers, each stage split between the threads, and no
barrier between them.

A loop kernel is merged when every value it stores is an update (written back
to the state) and read by no other kernel; it then has no reader to wait for,
so it can run as late as the last of them, where the group is placed.
"""
from __future__ import annotations

from .fuse import FusedGraph, Kernel, kernel_reads


def merge_updates(fg: FusedGraph) -> FusedGraph:
    g = fg.graph
    updates = set(g.updates.values())
    roots_out = set(g.outputs.values())
    read = {i for k in fg.kernels for i in kernel_reads(g, k)}
    stages = [k for k in fg.kernels
              if k.kind == "loop" and k.outputs
              and all(o in updates and o not in read and o not in roots_out for o in k.outputs)]
    if len(stages) < 2:
        return fg
    members = [m for k in stages for m in k.members]
    outputs = [o for k in stages for o in k.outputs]
    inputs = sorted({i for k in stages for i in k.inputs})
    group = Kernel("k0_update", "group", members, outputs, inputs, (), None, stages[-1].scope,
                   stages=stages)
    ids = {id(k) for k in stages}
    kernels = []
    for k in fg.kernels:
        if k is stages[-1]:
            kernels.append(group)
        elif id(k) not in ids:
            kernels.append(k)
    for n, k in enumerate(kernels):
        k.name = f"k{n}_{k.name.split('_', 1)[1]}"
    for n, st in enumerate(stages):
        st.name = f"{group.name}.{n}"
    return FusedGraph(g, kernels)
