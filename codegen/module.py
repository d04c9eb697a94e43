"""Fused, planned graphs -> one llvmlite module.

Each kernel becomes a function taking the thread id and its distinct buffers
as `noalias` pointers; each entry point (`train_step`, `eval_step`, `predict`)
becomes `void entry(ptr state, ptr work, i64 tid, ptr sync)` that calls its
kernels in order with pointers at planned offsets (on several threads, a
barrier before a kernel that depends on one since the last barrier), then
copies back updates that could not be written in place. Kernels with the same
code are one function. Python pays one call per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ..ir.cost import flops, matmul_flops
from ..ir.passes.fuse import FusedGraph, Kernel
from ..ir.passes.plan_memory import MemoryPlan
from .irutil import F32, I8, I32, I64, PTR, Partition, i64, kernel_function, one_per_body
from . import cold as cold_code, io_pointers
from .kernel_key import kernel_key
from .sync import call_barrier
from .target import host
from .lower.elementwise import Intrinsics
from .lower.group import lower_group as _lower_group
from .lower.conv import lower_conv, scratch_bytes as conv_scratch
from .lower.loop import lower_loop
from .lower.matmul import k_split, lower_matmul, scratch_bytes as matmul_scratch
from .lower.reduce import lower_reduce
from .lower.rows import lower_rows
from .lower.scatter import lower_scatter

def lower_group(b, graph, kernel: Kernel, buffers, fn, scratch=None, part=None):
    """Independent stages, one after another (codegen/lower/group.py)."""
    _lower_group(LOWER, b, graph, kernel, buffers, fn, scratch, part)


LOWER = {"loop": lower_loop, "reduce": lower_reduce, "matmul": lower_matmul, "conv": lower_conv,
         "scatter": lower_scatter, "rows": lower_rows, "group": lower_group}


def scratch_bytes(graph, kernel: Kernel, nthreads: int = 1) -> int:
    if kernel.kind == "matmul":
        return matmul_scratch(graph, kernel, nthreads)
    if kernel.kind == "conv":
        return conv_scratch(graph, kernel, nthreads)
    if kernel.kind == "scan":
        from .lower.scan import scan_scratch_bytes
        return scan_scratch_bytes(graph, kernel, nthreads)
    return 0


# A kernel this small runs on thread 0 alone: splitting it saves less than the barrier
# before the next kernel costs (1-2.4 us between two cores of a VM, measured by
# runtime/barrier_probe.py), and a chain of such kernels then needs no barrier between
# them, nor one before the step returns (W2's batch-1 predict ends in a 256x10 product
# and a softmax: two barriers of its four).
SERIAL_BYTES = 16384
SERIAL_FLOPS = 32768
_SPLIT_ONLY = ("scan", "view", "conv")


def serial(graph, k: Kernel, nthreads: int) -> bool:
    """Whether kernel k runs on thread 0 alone in a step on `nthreads` threads."""
    if nthreads == 1 or k.kind in _SPLIT_ONLY:
        return False
    nbytes = sum(graph.type(v).nbytes for v in [*k.inputs, *k.outputs])
    if nbytes > SERIAL_BYTES:
        return False
    work = 0.0
    for v in k.members:
        n = graph.nodes[v]
        if n.op == "matmul":
            work += matmul_flops(graph, v)
        else:
            work += max(n.type.size, *(graph.type(i).size for i in n.inputs)) \
                if n.inputs else n.type.size
    return work <= SERIAL_FLOPS


def step_barriers(fused: FusedGraph, nthreads: int) -> int:
    """About how many barriers a step of these kernels makes on `nthreads` threads: one
    before each kernel the threads share (kernels on thread 0 alone need none between
    them), one inside each product split along K, and the one before the step returns."""
    g = fused.graph
    shared = [k for k in fused.kernels if k.kind != "view" and not serial(g, k, nthreads)]
    return len(shared) + sum(needs_sync(g, k, nthreads) for k in shared) + 1


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


def build_module(entries: list[Entry], nthreads: int = 1, name: str = "kcompile",
                 bind_io: bool = False, on_kernel=None) -> ir.Module:
    """bind_io: the entries' inputs and outputs also take pointers from slots past
    the arena (codegen/io_pointers.py); the arena must then be io_pointers.slots'
    work_bytes long, zeroed. on_kernel(module, function, cold): called with each
    distinct kernel function once it is complete (codegen/jit.py's Stream compiles it
    while the rest is lowered)."""
    module = ir.Module(name=name)
    ctx = _Context(module, Intrinsics(module), nthreads)
    ctx.on_kernel = on_kernel
    table = io_pointers.slots(entries) if bind_io else None
    for e in entries:
        step = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, PTR]), name=e.name)
        state, work, tid, sync = step.args
        state.name, work.name, tid.name, sync.name = "state", "work", "tid", "sync"
        b = ir.IRBuilder(step.append_basic_block("entry"))
        restore = _flush_denormals(module, b)
        placed, bound = _bind_io(b, e, work, table) if table is not None else (e, {})
        # (barriers from the arena plan: a bound value's buffer is its arena place
        # whenever its slot is zero, and that place is other values' at other times)
        emit_entry(ctx, b, placed, state, work, tid, sync, inputs=bound, arena=e.plan,
                   returns=True)
        restore(b)
        b.ret_void()
    return module


def _bind_io(b, e: Entry, work, table):
    """(the entry placed with its bound values, {root value: its pointer}): the
    pointer in the value's slot, or its arena buffer when the slot holds zero."""
    bound, fallback = io_pointers.bound_plan(e)
    names = io_pointers.output_names(e)
    pointers = {}
    for r, offset in fallback.items():
        slot = table.inputs[e.name].get(r)
        if slot is None:
            slot = table.outputs[e.name][names[r]]
        given = b.load(b.gep(work, [i64(slot)], inbounds=True, source_etype=I8), typ=PTR)
        own = b.gep(work, [i64(offset)], inbounds=True, source_etype=I8)
        pointers[r] = b.select(b.icmp_unsigned("==", given, ir.Constant(PTR, None)), own, given)
    return bound, pointers


def module_text(module: ir.Module) -> str:
    """str(module), with the text of each function already printed while the module
    was built (`printed`: a kernel, compared with the others by its text) reused."""
    lines = ['; ModuleID = "%s"' % (module.name,), 'target triple = "%s"' % (module.triple,),
             'target datalayout = "%s"' % (module.data_layout,), '']
    lines += [t.get_declaration() for t in module.get_identified_types().values()]
    lines += [getattr(v, "printed", None) or str(v) for v in module.globals.values()]
    lines += module._get_metadata_lines()
    return "\n".join(lines)


# MXCSR's FTZ bit: results below float32's normal range become zero. (Subnormal inputs
# are still read as they are: log(1e-40) stays -92.1, not log(0).)
_FTZ = 0x8000


def _flush_denormals(module, b):
    """Run the entry with subnormal results flushed to zero (TensorFlow and XLA run their
    CPU code so too), and restore the caller's mode on return. Optimizer slots that decay
    geometrically (RMSprop's and Adam's velocities of a weight whose gradient stays zero)
    become subnormal after a few hundred steps, and each subnormal operand costs a
    microcode assist of ~100 cycles: a 784-32-10 RMSprop step took 170 us instead of 45.
    Values that small are below float32's precision next to any normal value they meet;
    since no compiled op makes one, only subnormal data a user passes in still costs.
    Returns the function that emits the restore."""
    if not host()[0].startswith(("x86_64", "i386", "i686")):
        return lambda b: None
    void = ir.VoidType()
    get = module.globals.get("llvm.x86.sse.stmxcsr") or ir.Function(
        module, ir.FunctionType(void, [PTR]), name="llvm.x86.sse.stmxcsr")
    put = module.globals.get("llvm.x86.sse.ldmxcsr") or ir.Function(
        module, ir.FunctionType(void, [PTR]), name="llvm.x86.sse.ldmxcsr")
    saved, flushed = b.alloca(I32, name="mxcsr_caller"), b.alloca(I32, name="mxcsr_flush")
    b.call(get, [saved])
    b.store(b.or_(b.load(saved), ir.Constant(I32, _FTZ)), flushed)
    b.call(put, [flushed])
    return lambda b: b.call(put, [saved])


class _Context:
    def __init__(self, module, fn, nthreads):
        self.module, self.fn, self.nthreads = module, fn, nthreads
        self.kernels: dict[str, ir.Function] = {}
        self.by_key: dict[str, ir.Function] = {}
        module.kernel_symbols = {}     # "entry.kernel" -> the function it calls
        # function -> cold in every entry that calls it (codegen/cold.py)
        module.cold_functions = {}
        self.entry_flops: dict[str, float] = {}
        self.on_kernel = None

    def kernel(self, e: Entry, k: Kernel, alone: bool = False):
        """(function, argument locations) of kernel k of entry e: lowered once per
        distinct code (codegen/kernel_key.py), then reused; `alone`: lowered for one
        thread (called by thread 0 only)."""
        nthreads = 1 if alone else self.nthreads
        arg_locs, aliasing, scratch = _kernel_args(e, k, nthreads)
        key = kernel_key(e.fused.graph, k, aliasing, scratch, nthreads)
        kf = self.by_key.get(key)
        new = kf is None
        if new:
            # one function per distinct kernel body: the forward kernels of train_step,
            # eval_step and predict at one batch size are the same code, compiled once
            kf = one_per_body(self.kernels, _build_kernel(self.module, self.fn, e, k,
                                                          nthreads))
            self.by_key[key] = kf
            new = kf.name not in self.module.cold_functions
        if e.name not in self.entry_flops:
            self.entry_flops[e.name] = flops(e.fused.graph)
        cold = cold_code.is_cold(e.fused.graph, k, self.entry_flops[e.name])
        self.module.cold_functions[kf.name] = self.module.cold_functions.get(kf.name, True) and cold
        if new and self.on_kernel is not None:
            self.on_kernel(self.module, kf, cold)
        return kf, arg_locs

    def barrier(self, b, sync, tid):
        if self.nthreads > 1:
            call_barrier(b, sync, self.nthreads, tid)

    def memcpy(self, b, dst, src, nbytes):
        f = self.module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, ir.IntType(1)]),
            name="llvm.memcpy.p0.p0.i64")
        b.call(f, [dst, src, nbytes if isinstance(nbytes, ir.Value) else i64(nbytes),
                   ir.Constant(ir.IntType(1), 0)])

    def shared_memcpy(self, b, dst, src, nbytes: int, tid):
        """Copy `nbytes` from src to dst, each thread its share (whole cache lines): a
        copy of a scan step's outputs no longer waits on thread 0 alone."""
        if self.nthreads == 1:
            self.memcpy(b, dst, src, nbytes)
            return
        lo, hi = Partition(tid, self.nthreads).share(b, nbytes, align=64)

        def at(p):
            return b.gep(p, [lo], inbounds=True, source_etype=I8)
        self.memcpy(b, at(dst), at(src), b.sub(hi, lo))

    def memset(self, b, dst, nbytes):
        """Zero `nbytes` (an i64 value or int) at dst."""
        f = self.module.globals.get("llvm.memset.p0.i64") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [PTR, ir.IntType(8), I64, ir.IntType(1)]),
            name="llvm.memset.p0.i64")
        b.call(f, [dst, ir.Constant(ir.IntType(8), 0),
                   nbytes if isinstance(nbytes, ir.Value) else i64(nbytes),
                   ir.Constant(ir.IntType(1), 0)])

    def thread0(self, b, tid, emit):
        """emit() on thread 0 only."""
        then = b.append_basic_block("t0")
        done = b.append_basic_block("t0.done")
        b.cbranch(b.icmp_signed("==", tid, i64(0)), then, done)
        b.position_at_end(then)
        emit()
        b.branch(done)
        b.position_at_end(done)


def emit_entry(ctx: _Context, b, e: Entry, state, work, tid, sync, inputs: dict,
               read_before=(), arena=None, returns=False):
    """Call e's kernels in order (a barrier before each that depends on one since
    the last), then its copy-backs. Small kernels (`serial`) run on thread 0 alone:
    one after another on thread 0 needs no barrier between them.

    returns: the step returns after these kernels (not a scan body's iteration): the
    workers need not wait for thread 0's last kernels (the next step starts after
    thread 0 returns), only thread 0 for the others' shares.

    state/work: base pointers of the regions; inputs: pointers bound to pinned
    input leaves (scan bodies), by leaf id; read_before: (region, start, end) byte
    ranges thread 0 may still be reading when the entry starts (a scan step's copy
    of its carries), which no kernel may overwrite before a barrier; arena: the
    plan whose places the barriers are decided from (default: e's).
    """
    g, plan = e.fused.graph, e.plan
    consts = {v: _constant_global(ctx.module, f"{e.name}.c{n}", g.nodes[v].value)
              for n, v in enumerate(plan.constants)}

    def address(loc):
        if loc.region == "const":
            return consts[plan.constants[loc.offset]]
        if loc.region == "input":
            return inputs[loc.offset]
        base = state if loc.region == "state" else work
        return b.gep(base, [i64(loc.offset)], inbounds=True, source_etype=I8)

    pending = _Pending(g, arena or plan, ctx.nthreads)
    pending.reads += list(read_before)
    for k in e.fused.kernels:
        if k.kind == "view":
            continue
        if k.kind == "scan":
            from .lower.scan import emit_scan
            if pending:
                ctx.barrier(b, sync, tid)
            pending.clear()
            emit_scan(ctx, b, e, k, address, work, tid, sync)
            continue
        alone = serial(g, k, ctx.nthreads)
        if pending.conflicts(k, alone):
            ctx.barrier(b, sync, tid)
            pending.clear()
        pending.add(k, alone)
        kf, arg_locs = ctx.kernel(e, k, alone)
        ctx.module.kernel_symbols[f"{e.name}.{k.name}"] = kf.name

        def call(kf=kf, arg_locs=arg_locs, k=k):
            args = [i64(0)] if alone else [tid]
            for loc in arg_locs:
                if loc == "scratch":
                    args.append(b.gep(work, [i64(plan.scratch[k.name])], inbounds=True,
                                      source_etype=I8))
                elif loc == "sync":
                    args.append(sync)
                else:
                    args.append(address(loc))
            b.call(kf, args)
        if alone:
            ctx.thread0(b, tid, call)
        else:
            call()
    # Every thread finishes the step's kernels before the copies or the return (at the
    # return, thread 0 waits for the others' shares; its own kernels are done).
    if pending.shared if returns else pending:
        ctx.barrier(b, sync, tid)
    if plan.copies:
        def copies():
            for src, dst in plan.copies:
                ctx.memcpy(b, address(plan.locations[dst]), address(plan.locations[src]),
                           g.type(dst).nbytes)
        ctx.thread0(b, tid, copies)
        ctx.barrier(b, sync, tid)


class _Pending:
    """The buffers read and written by the kernels since the last barrier.

    A kernel needs a barrier before it only if it reads what one of them writes
    or writes what one of them reads or writes (another thread may still be
    running its share of that kernel); independent kernels run back to back.
    Buffers are byte ranges of their region, so reuse of arena space is seen.
    """

    def __init__(self, graph, plan, nthreads):
        self.g, self.plan, self.nthreads = graph, plan, nthreads
        self.reads: list = []
        self.writes: list = []
        # the same, of the kernels every thread ran a share of (the others: thread 0's)
        self.shared_reads: list = []
        self.shared_writes: list = []

    def _ranges(self, values):
        out = []
        for v in values:
            loc = self.plan.locations[v]
            if loc.region != "const":
                out.append((loc.region, loc.offset, loc.offset + max(self.g.type(v).nbytes, 1)))
        return out

    @staticmethod
    def _overlap(xs, ys):
        return any(r == q and lo < hi2 and lo2 < hi for r, lo, hi in xs for q, lo2, hi2 in ys)

    def _writes(self, k):
        out = self._ranges(k.outputs)
        nbytes = scratch_bytes(self.g, k, self.nthreads)
        if nbytes:      # arena space, live during this kernel only: others may reuse it
            off = self.plan.scratch[k.name]
            out.append(("work", off, off + nbytes))
        return out

    def conflicts(self, k, alone: bool = False) -> bool:
        """Whether k needs a barrier first; `alone`: k runs on thread 0 only, after
        thread 0's own kernels, so only the shared kernels' buffers count."""
        pr, pw = (self.shared_reads, self.shared_writes) if alone else (self.reads, self.writes)
        reads, writes = self._ranges(k.inputs), self._writes(k)
        return self._overlap(reads, pw) or self._overlap(writes, pr + pw)

    def add(self, k, alone: bool = False):
        reads, writes = self._ranges(k.inputs), self._writes(k)
        self.reads += reads
        self.writes += writes
        if not alone:
            self.shared_reads += reads
            self.shared_writes += writes

    def clear(self):
        self.reads, self.writes = [], []
        self.shared_reads, self.shared_writes = [], []

    @property
    def shared(self) -> bool:
        """Whether a kernel every thread runs a share of ran since the last barrier."""
        return bool(self.shared_reads or self.shared_writes)

    def __bool__(self):
        return bool(self.reads or self.writes)


def needs_sync(graph, kernel: Kernel, nthreads: int) -> bool:
    """Whether the kernel waits for the other threads inside (a product split along K
    adds the threads' partial sums after a barrier)."""
    return kernel.kind == "matmul" and k_split(graph, kernel, nthreads)


def _kernel_args(e: Entry, k: Kernel, nthreads: int):
    """(argument locations, which argument each input and output is, has scratch).
    One argument per distinct buffer: an in-place update shares its leaf's buffer.
    After the buffers: "scratch" (the kernel's arena space) and "sync" (the step's
    barrier block), where the kernel takes them."""
    plan = e.plan
    arg_locs, buffers_by_loc = [], {}
    for v in [*k.inputs, *k.outputs]:
        loc = plan.locations[v]
        if loc not in buffers_by_loc:
            buffers_by_loc[loc] = len(arg_locs)
            arg_locs.append(loc)
    aliasing = tuple(buffers_by_loc[plan.locations[v]] for v in [*k.inputs, *k.outputs])
    needs_scratch = scratch_bytes(e.fused.graph, k, nthreads) > 0
    if needs_scratch:
        arg_locs.append("scratch")
    if needs_sync(e.fused.graph, k, nthreads):
        arg_locs.append("sync")
    return arg_locs, aliasing, needs_scratch


def _build_kernel(module, fn, e: Entry, k: Kernel, nthreads: int):
    g, plan = e.fused.graph, e.plan
    arg_locs, _, needs_scratch = _kernel_args(e, k, nthreads)
    buffers_by_loc = {loc: i for i, loc in enumerate(arg_locs) if loc not in ("scratch", "sync")}
    sync = "sync" in arg_locs
    # (threads write the scratch of a kernel that waits inside: not noalias there)
    kf, tid, ptrs = kernel_function(module, f"{e.name}.{k.name}", len(arg_locs),
                                    shared=(needs_scratch + 1) if sync else 0)
    buffers = {v: ptrs[buffers_by_loc[plan.locations[v]]] for v in [*k.inputs, *k.outputs]}
    b = ir.IRBuilder(kf.append_basic_block("entry"))
    part = Partition(tid, nthreads, ptrs[arg_locs.index("sync")] if sync else None) \
        if nthreads > 1 else None
    scratch = ptrs[arg_locs.index("scratch")] if needs_scratch else None
    LOWER[k.kind](b, g, k, buffers, fn, scratch, part)
    b.ret_void()
    return kf
