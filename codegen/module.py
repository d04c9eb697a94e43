"""Fused, planned graphs -> one llvmlite module.

Each kernel becomes a function taking the thread id and its distinct buffers
as `noalias` pointers; each entry point (`train_step`, `eval_step`, `predict`)
becomes `void entry(ptr state, ptr work, i64 tid, ptr sync)` that calls its
kernels in order with pointers at planned offsets (a barrier between kernels
when the module runs on several threads), then copies back updates that could
not be written in place. Python pays one call per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ir.passes.fuse import FusedGraph, Kernel
from ir.passes.plan_memory import MemoryPlan
from .irutil import F32, I8, I32, I64, PTR, Partition, i64
from .lower.elementwise import Intrinsics
from .lower.loop import lower_loop
from .lower.matmul import lower_matmul, scratch_bytes as matmul_scratch
from .lower.reduce import lower_reduce
from .lower.scatter import lower_scatter

LOWER = {"loop": lower_loop, "reduce": lower_reduce, "matmul": lower_matmul,
         "scatter": lower_scatter}


def scratch_bytes(graph, kernel: Kernel, nthreads: int = 1) -> int:
    return matmul_scratch(graph, kernel, nthreads) if kernel.kind == "matmul" else 0


@dataclass
class Entry:
    name: str
    fused: FusedGraph
    plan: MemoryPlan


def _constant_global(module, name, value: np.ndarray):
    dt = I32 if value.dtype == np.int32 else F32
    flat = value.reshape(-1)
    arr_t = ir.ArrayType(dt, max(flat.size, 1))
    gv = ir.GlobalVariable(module, arr_t, name=name)
    gv.global_constant = True
    gv.linkage = "private"
    gv.align = 64
    vals = [ir.Constant(dt, int(x) if dt is I32 else float(x)) for x in flat] or [ir.Constant(dt, 0)]
    gv.initializer = ir.Constant(arr_t, vals)
    return gv


def build_module(entries: list[Entry], nthreads: int = 1, name: str = "kcompile") -> ir.Module:
    module = ir.Module(name=name)
    fn = Intrinsics(module)
    for e in entries:
        _build_entry(module, fn, e, nthreads)
    return module


def _build_entry(module, fn, e: Entry, nthreads: int):
    g, plan = e.fused.graph, e.plan
    consts = {v: _constant_global(module, f"{e.name}.c{n}", g.nodes[v].value)
              for n, v in enumerate(plan.constants)}
    kernel_fns = []
    for k in e.fused.kernels:
        if k.kind == "view":
            continue
        kernel_fns.append((k, *_build_kernel(module, fn, e, k, nthreads)))

    step = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, PTR]), name=e.name)
    state, work, tid, sync = step.args
    state.name, work.name, tid.name, sync.name = "state", "work", "tid", "sync"
    b = ir.IRBuilder(step.append_basic_block("entry"))
    barrier = module.globals.get("kc_barrier") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [PTR, I32]), name="kc_barrier")

    def sync_threads():
        if nthreads > 1:
            b.call(barrier, [sync, ir.Constant(I32, nthreads)])

    def address(loc):
        if loc.region == "const":
            return consts[plan.constants[loc.offset]]
        base = state if loc.region == "state" else work
        return b.gep(base, [i64(loc.offset)], inbounds=True, source_etype=I8)

    for k, kf, arg_locs in kernel_fns:
        args = [tid]
        for loc in arg_locs:
            if loc == "scratch":
                args.append(b.gep(work, [i64(plan.scratch[k.name])], inbounds=True, source_etype=I8))
            else:
                args.append(address(loc))
        b.call(kf, args)
        sync_threads()
    memcpy = module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, ir.IntType(1)]), name="llvm.memcpy.p0.p0.i64")
    if plan.copies:
        first = b.append_basic_block("copies")
        done = b.append_basic_block("done")
        b.cbranch(b.icmp_signed("==", tid, i64(0)), first, done)
        b.position_at_end(first)
        for src, dst in plan.copies:
            b.call(memcpy, [address(plan.locations[dst]), address(plan.locations[src]),
                            i64(g.type(dst).nbytes), ir.Constant(ir.IntType(1), 0)])
        b.branch(done)
        b.position_at_end(done)
        sync_threads()
    b.ret_void()


def _build_kernel(module, fn, e: Entry, k: Kernel, nthreads: int):
    g, plan = e.fused.graph, e.plan
    # One argument per distinct buffer: an in-place update shares its leaf's buffer.
    arg_locs, buffers_by_loc = [], {}
    for v in [*k.inputs, *k.outputs]:
        loc = plan.locations[v]
        if loc not in buffers_by_loc:
            buffers_by_loc[loc] = len(arg_locs)
            arg_locs.append(loc)
    needs_scratch = scratch_bytes(g, k) > 0
    if needs_scratch:
        arg_locs.append("scratch")
    kf = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64] + [PTR] * len(arg_locs)),
                     name=f"{e.name}.{k.name}")
    kf.linkage = "internal"
    kf.attributes.add("noinline")
    kf.attributes.add("nounwind")
    tid, *ptrs = kf.args
    tid.name = "tid"
    for a in ptrs:
        a.add_attribute("noalias")
    buffers = {v: ptrs[buffers_by_loc[plan.locations[v]]] for v in [*k.inputs, *k.outputs]}
    b = ir.IRBuilder(kf.append_basic_block("entry"))
    part = Partition(tid, nthreads) if nthreads > 1 else None
    LOWER[k.kind](b, g, k, buffers, fn, ptrs[-1] if needs_scratch else None, part)
    b.ret_void()
    return kf, arg_locs
