"""scan: a loop in the step function around the kernels of the body graph.

The body is compiled like an entry of its own (simplify, fuse, plan) with its
carries as its state region and its inputs pinned: each step binds the
loop-invariant operands and the current slices of the scanned sequences. The
scan's scratch holds the carries and the body's arena:

  [ carries | body arena ]

Per step (t, or T-1-t for a reverse scan): the carries are saved to the
step's slot of the saved-carries result (when something reads it), the body
kernels run (threads split each one, barriers between dependent ones), the body's
outputs are copied to their slots, each thread a share. The other copies are made
by thread 0 between barriers. The graph and the compile time do not grow with the
sequence length.
"""
from __future__ import annotations

import functools

from ...ir.passes import simplify
from ...ir.passes.fuse import fuse
from ...ir.passes.plan_memory import plan_memory
from llvmlite import ir

from ..irutil import I8, I64, i64, loop
from ..target import host

ALIGN = 64


def _pad(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def scan_layout(body, nthreads: int):
    """(fused body, plan, carry offsets by name, carry bytes) for a Body."""
    return _scan_layout(body, nthreads, host())


@functools.lru_cache(maxsize=64)
def _scan_layout(body, nthreads: int, target):
    # Keyed by the target too: scratch sizes follow its vector width (an export for
    # another CPU must not reuse this machine's plan, nor leave its own behind).
    from ..module import scratch_bytes
    g = simplify(body.graph)
    offsets, off = {}, 0
    for i in range(body.n_carry):
        offsets[f"c{i}"] = off
        off += _pad(body.type_of(f"c{i}").nbytes)
    fg = fuse(g)
    plan = plan_memory(fg, offsets, lambda k: scratch_bytes(g, k, nthreads), pinned_inputs=True)
    return fg, plan, offsets, off


def scan_scratch_bytes(graph, kernel, nthreads: int) -> int:
    body = graph.nodes[kernel.members[0]].params["body"]
    _, plan, _, carry_bytes = scan_layout(body, nthreads)
    return carry_bytes + _pad(plan.work_bytes)


def emit_scan(ctx, b, e, k, address, work, tid, sync):
    from ..module import Entry, emit_entry
    g, plan = e.fused.graph, e.plan
    scan = k.members[0]
    node = g.nodes[scan]
    body, T, reverse = node.params["body"], node.params["length"], node.params["reverse"]
    nk, nc, ny = body.n_consts, body.n_carry, body.n_ys
    fg, bplan, offsets, carry_bytes = scan_layout(body, ctx.nthreads)
    base = b.gep(work, [i64(plan.scratch[k.name])], inbounds=True, source_etype=I8)
    carries = base
    body_work = b.gep(base, [i64(carry_bytes)], inbounds=True, source_etype=I8)
    consts = node.inputs[:nk]
    init = node.inputs[nk:nk + nc]
    seqs = node.inputs[nk + nc:nk + nc + body.n_xs]
    steps = i64(T)
    if node.params["dynamic"]:     # the trip count is an int32 read from the arena
        ptr = address(plan.locations[node.inputs[-1]])
        steps = b.sext(b.load(ptr, typ=ir.IntType(32)), I64)
        steps = b.select(b.icmp_signed(">", steps, i64(T)), i64(T), steps)
        steps = b.select(b.icmp_signed("<", steps, i64(0)), i64(0), steps)
    results = {}
    for r in k.members[1:]:
        index = g.nodes[r].params["index"]
        if index in results:
            # the loop writes each result once: a second reader of it would read nothing
            raise ValueError(f"scan kernel {k.name}: values %{results[index]} and %{r} both "
                             f"read its result {index}; merge them first "
                             f"(ir/passes/cse.py) so one buffer holds it")
        results[index] = r

    def carry_ptr(i):
        return b.gep(carries, [i64(offsets[f"c{i}"])], inbounds=True, source_etype=I8)

    def slot(buf, nbytes, t):
        return b.gep(buf, [b.mul(t, i64(nbytes))], inbounds=True, source_etype=I8)

    def load_init():
        for i, v in enumerate(init):
            ctx.memcpy(b, carry_ptr(i), address(plan.locations[v]), g.type(v).nbytes)
    ctx.thread0(b, tid, load_init)
    ctx.barrier(b, sync, tid)
    bg = fg.graph
    body_entry = Entry(f"{e.name}.{k.name}", fg, bplan)

    if node.params["dynamic"]:
        # Slots past the run-time count read as zeros (a backward pass sums over them).
        stacked = [(r, g.type(r).nbytes // T) for idx, r in results.items() if idx >= nc]

        def zero_tail():
            for r, nbytes in stacked:
                start = b.mul(steps, i64(nbytes))
                ctx.memset(b, b.gep(address(plan.locations[r]), [start], inbounds=True,
                                    source_etype=I8), b.sub(i64(T * nbytes), start))
        ctx.thread0(b, tid, zero_tail)

    def step(b, i, _):
        t = b.sub(b.sub(steps, i64(1)), i) if reverse else i
        saved = [(n, results[nc + ny + n]) for n in range(nc) if nc + ny + n in results]
        if saved:
            def save():
                for n, r in saved:
                    nbytes = body.type_of(f"c{n}").nbytes
                    ctx.memcpy(b, slot(address(plan.locations[r]), nbytes, t), carry_ptr(n), nbytes)
            ctx.thread0(b, tid, save)
        inputs = {}
        for v in bg.leaves("input"):
            name = bg.nodes[v].name
            if name.startswith("k"):
                inputs[v] = address(plan.locations[consts[int(name[1:])]])
            else:
                j = int(name[1:])
                inputs[v] = slot(address(plan.locations[seqs[j]]), bg.type(v).nbytes, t)
        saved_ranges = [("state", offsets[f"c{n}"], offsets[f"c{n}"] + body.type_of(f"c{n}").nbytes)
                        for n, _ in saved]
        emit_entry(ctx, b, body_entry, carries, body_work, tid, sync, inputs, saved_ranges)
        outs = [(j, results[nc + j]) for j in range(ny) if nc + j in results]
        if outs:
            # every thread copies its share of each output (they are the step's largest
            # copies: an LSTM's kept gates for its backward pass, 128 KB a step in W3)
            for j, r in outs:
                y = bg.outputs[f"y{j}"]
                loc = bplan.locations[y]
                src = {"state": carries, "work": body_work}.get(loc.region)
                src = inputs[loc.offset] if loc.region == "input" else (
                    b.gep(src, [i64(loc.offset)], inbounds=True, source_etype=I8)
                    if src is not None else None)
                if src is None:
                    raise NotImplementedError("a scan output that is a constant")
                nbytes = bg.type(y).nbytes
                ctx.shared_memcpy(b, slot(address(plan.locations[r]), nbytes, t), src, nbytes, tid)
            ctx.barrier(b, sync, tid)
    loop(b, steps, step, name="t")

    finals = [(i, results[i]) for i in range(nc) if i in results]
    if finals:
        def store_final():
            for i, r in finals:
                ctx.memcpy(b, address(plan.locations[r]), carry_ptr(i), g.type(r).nbytes)
        ctx.thread0(b, tid, store_final)
        ctx.barrier(b, sync, tid)
