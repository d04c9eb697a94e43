"""Small helpers over llvmlite.ir: types, fast-math flags, counted loops."""
from __future__ import annotations

from llvmlite import ir

F32 = ir.FloatType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()

# No nnan/ninf: NaN and inf must survive (losses, TerminateOnNaN).
FLAGS = ("nsz", "arcp", "contract", "afn")
# Reductions also need reassoc, or the loop vectorizer leaves them scalar.
REDUCE_FLAGS = FLAGS + ("reassoc",)


def f32(x: float) -> ir.Constant:
    return ir.Constant(F32, float(x))


def i64(x: int) -> ir.Constant:
    return ir.Constant(I64, int(x))


UNROLL_UP_TO = 16


def loop(b: ir.IRBuilder, n, body, init=(), name: str = "i", start=0, unroll: bool = False):
    """Emit `for i in range(start, n)` carrying values; body(b, i, carried) -> new carried.

    Returns the carried values after the loop.
    """
    if isinstance(n, int) and isinstance(start, int) and 0 <= n - start <= UNROLL_UP_TO \
            and unroll:
        # Short fixed trips are emitted straight: no loop for the vectorizer to miss.
        carried = list(init)
        for i in range(start, n):
            carried = body(b, i64(i), carried) if init else (body(b, i64(i), []) or [])
        return carried
    n = i64(n) if isinstance(n, int) else n
    start = i64(start) if isinstance(start, int) else start
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    body_bb = b.append_basic_block(f"{name}.body")
    exit_bb = b.append_basic_block(f"{name}.exit")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    phis = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        phis.append(p)
    b.cbranch(b.icmp_signed("<", i, n), body_bb, exit_bb)
    b.position_at_end(body_bb)
    new = body(b, i, phis)
    nxt = b.add(i, i64(1), flags=("nsw", "nuw"))
    latch = b.block
    i.add_incoming(nxt, latch)
    for p, v in zip(phis, new if init else ()):
        p.add_incoming(v, latch)
    b.branch(head)
    b.position_at_end(exit_bb)
    return phis


def loop_nest(b: ir.IRBuilder, shape, body, name: str = "d", part=None, align: int = 1):
    """Nested loops over `shape` (row-major); body(b, idx) with idx a tuple of i64 values.

    With a Partition, this thread runs only its share of the outermost axis.
    """
    def rec(level, idx):
        if level == len(shape):
            body(b, tuple(idx))
            return
        if level == 0 and part is not None and part.nthreads > 1:
            lo, hi = part.share(b, shape[0], align)
            loop(b, hi, lambda b, i, _: rec(1, [i]), name=f"{name}0", start=lo)
            return
        if shape[level] == 1:
            rec(level + 1, idx + [i64(0)])
            return
        loop(b, shape[level], lambda b, i, _: rec(level + 1, idx + [i]), name=f"{name}{level}")
    if not shape and part is not None and part.nthreads > 1:
        part.only_first(b, lambda: body(b, ()))
        return
    rec(0, [])


class Partition:
    """How one thread of an SPMD step splits a kernel's work: `tid` is a runtime
    value, `nthreads` fixed when the module is compiled."""

    def __init__(self, tid, nthreads: int, sync=None):
        self.tid = tid
        self.nthreads = nthreads
        self.sync = sync        # the step's barrier block, for a kernel that waits inside

    def barrier(self, b):
        """Wait until every thread has reached this point of the kernel (the kernel
        was given the sync block: codegen/module.py's needs_sync)."""
        from .sync import call_barrier     # (sync.py builds on this module)
        assert self.sync is not None, "a kernel with a barrier inside needs the sync block"
        call_barrier(b, self.sync, self.nthreads, self.tid)

    def share(self, b, size: int, align: int = 1):
        """[lo, hi) of range(size) for this thread: contiguous chunks, multiples of align."""
        if self.nthreads == 1:
            return i64(0), i64(size)
        chunk = -(-size // self.nthreads)
        chunk = -(-chunk // align) * align
        lo = b.mul(self.tid, i64(chunk))
        lo = b.select(b.icmp_signed("<", lo, i64(size)), lo, i64(size))
        hi = b.add(lo, i64(chunk))
        hi = b.select(b.icmp_signed("<", hi, i64(size)), hi, i64(size))
        return lo, hi

    def only_first(self, b, emit):
        """Run `emit` on thread 0 only (work too small or too serial to split)."""
        if self.nthreads == 1:
            emit()
            return
        then = b.append_basic_block("t0.only")
        done = b.append_basic_block("t0.done")
        b.cbranch(b.icmp_signed("==", self.tid, i64(0)), then, done)
        b.position_at_end(then)
        emit()
        b.branch(done)
        b.position_at_end(done)



def linear_index(b: ir.IRBuilder, idx, shape):
    """Row-major offset of idx in shape; dims of size 1 contribute nothing."""
    off = None
    stride = 1
    for i, d in reversed(list(zip(idx, shape))):
        if d != 1:
            term = i if stride == 1 else b.mul(i, i64(stride), flags=("nsw", "nuw"))
            off = term if off is None else b.add(off, term, flags=("nsw", "nuw"))
        stride *= d
    return off if off is not None else i64(0)


def kernel_function(module, name: str, npointers: int, shared: int = 0):
    """(function, tid, pointer arguments) of a kernel or a kernel's stage: internal,
    never inlined (the entry calls each kernel once per thread, and a shared body is
    one function), its buffers marked noalias (the memory plan never overlaps them),
    except the last `shared` ones: memory other threads write while the kernel runs
    (across a barrier inside it), which LLVM must not assume only this function
    touches."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64] + [PTR] * npointers),
                     name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    tid, *ptrs = fn.args
    tid.name = "tid"
    for a in ptrs[:npointers - shared]:
        a.add_attribute("noalias")
    return fn, tid, ptrs


def one_per_body(table: dict, fn):
    """fn, or the function of `table` (body text -> function) with the same body, fn
    then dropped from its module: functions of the same code are compiled once. The
    function's text is kept in `printed` (codegen/module.py's module_text reuses it)."""
    text = fn.printed = str(fn)
    body = text[text.index("("):]
    same = table.get(body)
    if same is None:
        table[body] = fn
        return fn
    del fn.module.globals[fn.name]
    return same
