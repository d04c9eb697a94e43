"""A kernel's code identity, from the fused graph, before it is lowered.

Many kernels of a program are the same code: the forward kernels of train_step,
eval_step and predict, and every block of a deep model built from repeated layers
(a 30-block model has ~600 kernels and a few dozen distinct ones). Lowering each
and comparing the texts cost more than compiling the distinct ones; this key,
computed from what lowering reads, finds a repeat before it is lowered.

What lowering reads, and the key holds: the kernel's fields (kind, iteration shape,
members in order, outputs, inputs in order, the reduction, the prologue, merged
stages and views), each member's op, attributes, type and operands, the type of
each value read from a buffer, the value of each constant read inline, which of
the kernel's values share a buffer, whether it has scratch space, and the thread
count. Value ids are renamed in the order they are met, so two kernels over
different values of the same shape get the same key. Anything unknown (an
attribute without a stable repr) can only make keys differ, never match wrongly.
"""
from __future__ import annotations

import dataclasses
import hashlib


def kernel_key(graph, kernel, aliasing, scratch: bool, nthreads: int) -> str:
    names: dict[int, int] = {}
    lines: list[str] = []
    buffers = set(kernel.inputs)
    computed = set()

    def collect(k):
        computed.update(k.members)
        for sub in (*k.stages, *k.views):
            if isinstance(sub, int):
                computed.add(sub)
            else:
                collect(sub)
    collect(kernel)

    def ref(v) -> int:
        if v in names:
            return names[v]
        n = graph.nodes[v]
        if v in buffers and v not in computed:
            desc = ("buffer", n.type.shape, n.type.dtype)
        elif n.is_leaf:
            value = None if n.value is None else (n.value.dtype.str, n.value.shape,
                                                  hashlib.sha256(n.value.tobytes()).hexdigest())
            desc = ("leaf", n.role, n.name, n.type.shape, n.type.dtype, value)
        else:
            desc = (n.op, repr(n.attrs), n.type.shape, n.type.dtype,
                    tuple(ref(i) for i in n.inputs))
        names[v] = len(names)
        lines.append(repr(desc))
        return names[v]

    def describe(k) -> str:
        parts = []
        for f in dataclasses.fields(k):
            if f.name in ("name", "scope"):
                continue
            x = getattr(k, f.name)
            if f.name in ("members", "outputs", "inputs"):
                x = [ref(v) for v in x]
            elif f.name == "prologue":
                x = sorted(ref(v) for v in x)
            elif f.name == "reduce":
                x = None if x is None else ref(x)
            elif f.name in ("stages", "views"):
                x = [ref(sub) if isinstance(sub, int) else describe(sub) for sub in x]
            parts.append(f"{f.name}={x!r}")
        return "(" + ", ".join(parts) + ")"

    head = describe(kernel)
    text = "\n".join([head, *lines, f"aliasing={aliasing!r} scratch={scratch} threads={nthreads}"])
    return hashlib.sha256(text.encode()).hexdigest()
