"""plan_memory: a place for every buffer, so a step allocates nothing.

Regions:
  state  params and state leaves, at offsets fixed by the caller's state layout
  work   one arena per executable: entry inputs, outputs, intermediates and
         kernel scratch, at offsets chosen from liveness over the kernel order
  const  constants baked into the module

An update whose kernel reads the old value only elementwise, after every
other reader of it has run, is written straight into the state buffer; any
other update is computed into the arena and copied back at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..graph import Graph
from ..ops import get_op
from .fuse import FusedGraph, Kernel

ALIGN = 64


@dataclass(frozen=True)
class Location:
    region: str          # state | work | const | input
    offset: int          # bytes into the region (const: index of the constant; input: leaf id)


@dataclass
class MemoryPlan:
    locations: dict[int, Location]
    work_bytes: int
    scratch: dict[str, int]                       # kernel name -> work offset
    copies: list[tuple[int, int]] = field(default_factory=list)   # (src value, dst leaf)
    constants: list[int] = field(default_factory=list)            # const values, by index
    lifetimes: dict[int, tuple[int, int]] = field(default_factory=dict)

    def describe(self, graph: Graph) -> str:
        lines = [f"work arena: {self.work_bytes} bytes"]
        for v, loc in sorted(self.locations.items(), key=lambda kv: (kv[1].region, kv[1].offset)):
            life = self.lifetimes.get(v)
            lines.append(f"  %{v:<5} {str(graph.type(v)):<16} {loc.region:<5} @{loc.offset:<9}"
                         f"{graph.type(v).nbytes:>9} B" + (f"  live {life[0]}..{life[1]}" if life else ""))
        return "\n".join(lines)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _in_place_ok(fg: FusedGraph, kidx: dict, leaf: int, upd: int, producer: dict) -> bool:
    g = fg.graph
    k = producer.get(upd)
    if k is None:
        return False
    at = kidx[k.name]
    # Kernels still to read the old value: later ones, and (in a group) the other
    # stages, whose shares threads run out of step.
    later = [o for o in fg.kernels if o is not k and kidx[o.name] >= at]
    if k.kind == "group":
        stage = next(st for st in k.stages if upd in st.outputs)
        later += [st for st in k.stages if st is not stage]
        k = stage
    if k.kind not in ("loop", "matmul", "conv") or g.type(leaf).shape != k.shape:
        return False
    if k.kind in ("matmul", "conv") and any(leaf in g.nodes[m].inputs for m in k.members
                                            if get_op(g.nodes[m].op).kind == k.kind):
        return False        # the product reads it whole, across tiles
    if any(leaf in other.inputs for other in later):
        return False
    users = [u for u in g.users(leaf) if u in k.members]
    return all(get_op(g.nodes[u].op).kind == "elementwise" for u in users)


def plan_memory(fg: FusedGraph, state_offsets: dict[str, int],
                scratch_bytes: Callable[[Kernel], int] = lambda k: 0,
                pinned_inputs: bool = False) -> MemoryPlan:
    """pinned_inputs: input leaves are not placed in the arena but bound by the
    caller (Location('input', n) for the n-th input leaf): a scan body's inputs
    are slices of buffers outside it."""
    g = fg.graph
    kidx = {k.name: n for n, k in enumerate(fg.kernels)}
    producer = fg.producer()
    end = len(fg.kernels)
    loc: dict[int, Location] = {}
    constants: list[int] = []

    # Leaves: state leaves where the caller keeps them, constants in the module.
    for v in g.leaves():
        n = g.nodes[v]
        if n.role in ("param", "state"):
            loc[v] = Location("state", state_offsets[n.name])
        elif pinned_inputs and n.role in ("input", "target"):
            loc[v] = Location("input", v)
        elif n.role == "constant":
            loc[v] = Location("const", len(constants))
            constants.append(v)

    copies = []
    for leaf, upd in g.updates.items():
        if upd == leaf:
            continue
        if upd not in loc and _in_place_ok(fg, kidx, leaf, upd, producer):
            loc[upd] = loc[leaf]
        else:
            copies.append((upd, leaf))

    # Lifetimes of work buffers: [first kernel writing it, last kernel reading it].
    start: dict[int, int] = {}
    last: dict[int, int] = {}
    for v in g.leaves():
        if g.nodes[v].role in ("input", "target"):
            start[v] = -1
            last[v] = -1
    for n, k in enumerate(fg.kernels):
        for o in k.outputs:
            start.setdefault(o, n)
            last.setdefault(o, n)
        for i in k.inputs:
            # (one kernel longer: the next kernel, which may run without a barrier
            # on several threads, never writes over what this one reads)
            last[i] = max(last.get(i, n), n + 1)
    for v in list(g.outputs.values()) + [src for src, _ in copies]:
        last[v] = end
    # A view shares its operand's buffer: merge their lifetimes under the root buffer.
    alias: dict[int, int] = {}
    for k in fg.kernels:
        if k.kind == "view":
            (src,) = g.nodes[k.members[0]].inputs
            alias[k.members[0]] = alias.get(src, src)
    def root(v):
        return alias.get(v, v)
    intervals: dict[int, list[int]] = {}
    for v in start:
        r = root(v)
        if r in loc:
            continue
        s, e = start[v], last.get(v, start[v])
        if r in intervals:
            intervals[r][0] = min(intervals[r][0], s)
            intervals[r][1] = max(intervals[r][1], e)
        else:
            intervals[r] = [s, e]

    # Kernel scratch is a buffer live during its kernel only.
    requests = [(s, e, g.type(r).nbytes, ("value", r)) for r, (s, e) in intervals.items()]
    for n, k in enumerate(fg.kernels):
        nbytes = scratch_bytes(k)
        if nbytes:
            requests.append((n, n + 1, nbytes, ("scratch", k.name)))
    placed: list[tuple[int, int, int, int]] = []   # (offset, size, start, end)
    scratch: dict[str, int] = {}
    work = 0
    for s, e, size, (what, key) in sorted(requests, key=lambda r: (r[0], -r[2])):
        size = _align(max(size, 4))
        busy = sorted((o, o + sz) for o, sz, s2, e2 in placed if not (e2 < s or e < s2))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((offset, size, s, e))
        work = max(work, offset + size)
        if what == "value":
            loc[key] = Location("work", offset)
        else:
            scratch[key] = offset
    for v, r in alias.items():
        loc[v] = loc[r]
    lifetimes = {r: (s, e) for r, (s, e) in intervals.items()}
    return MemoryPlan(loc, work, scratch, copies, constants, lifetimes)
