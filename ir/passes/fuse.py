"""fuse: group the ops of a graph into kernels, each one loop nest.

Kinds of kernel:
  loop     elementwise and layout ops over one iteration shape
  reduce   one reduction, with the elementwise ops that produce its input fused
           in (prologue) and, when it reduces a suffix of the axes, the
           elementwise ops that consume its result fused after it (epilogue)
  matmul   one matrix product, with the elementwise ops that consume it run on
           each finished tile (epilogue: bias, activation, an optimizer update)
  conv     one convolution (or a convolution's kernel gradient), epilogue as matmul
  scatter  one scatter_add
  scan     a loop running the kernels of its body graph once per step
  view     a reshape: no code, its result aliases its operand's buffer
  rows     loop and reduce kernels over the same rows, run stage after stage
           for each row (see fuse_rows)
  group    independent loop kernels run one after another in one call: the
           optimizer's updates outside GEMM epilogues (see fuse_updates)

Grouping is greedy in reverse topological order, in the spirit of XLA's
instruction fusion: a producer joins the group of its users when all its users
are in one group and it has the shape that group iterates over. A cheap (or
small) elementwise producer whose users are in several groups is recomputed in
each of them rather than stored. Other values read by more than one kernel,
roots (outputs and updates) and leaves are materialized in buffers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..graph import Graph
from ..ops import get_op

FUSIBLE = ("elementwise", "layout", "gather")


@dataclass
class Kernel:
    name: str
    kind: str                        # loop | reduce | matmul | scatter | scan | view
    members: list[int]               # value ids computed here, topological order
    outputs: list[int]               # members stored to buffers
    inputs: list[int] = field(default_factory=list)   # materialized values read
    shape: tuple = ()                # iteration shape (the outputs' shape)
    reduce: int | None = None        # the reduction of a reduce kernel
    scope: str = ""

    prologue: set = field(default_factory=set)   # reduce kernels: members in the input space
    stages: list = field(default_factory=list)   # rows kernels: the merged kernels, in order
    views: list = field(default_factory=list)    # rows kernels: reshapes of per-row values

    def describe(self, graph: Graph) -> str:
        ops = ", ".join(graph.nodes[m].op for m in self.members)
        return f"{self.name} [{self.kind} {self.shape}]: {ops}"


@dataclass
class FusedGraph:
    graph: Graph
    kernels: list[Kernel]

    def producer(self) -> dict[int, Kernel]:
        return {o: k for k in self.kernels for o in k.outputs}

    def __str__(self):
        return "\n".join(k.describe(self.graph) for k in self.kernels)


def kernel_reads(g: Graph, k: Kernel) -> list[int]:
    """The values a kernel reads: a view its operand, any other kernel its inputs."""
    return list(g.nodes[k.members[0]].inputs) if k.kind == "view" else k.inputs


def producers(kernels) -> dict[int, Kernel]:
    """value -> the kernel that writes it (a view "writes" its alias)."""
    out = {}
    for k in kernels:
        for o in (k.members[:1] if k.kind == "view" else k.outputs):
            out[o] = k
    return out


def is_suffix_reduction(graph: Graph, r: int) -> bool:
    n = graph.nodes[r]
    rank = graph.type(n.inputs[0]).rank
    axes = n.params["axes"] if "axes" in n.params else (n.params["axis"],)
    return tuple(axes) == tuple(range(rank - len(axes), rank))


class _Group:
    def __init__(self, kind, shape, seed):
        self.kind = kind
        self.shape = shape          # the space outputs are computed in
        self.members = {seed}
        self.reduce = seed if kind == "reduce" else None
        self.in_space = set()       # prologue members (the reduction's input shape)


def _group_kind(op_kind):
    return {"elementwise": "loop", "layout": "loop", "gather": "loop", "reduction": "reduce",
            "matmul": "matmul", "conv": "conv", "scatter": "scatter"}[op_kind]


def fuse(graph: Graph) -> FusedGraph:
    g = graph
    roots = set(g.roots())
    group_of: dict[int, _Group] = {}
    order = [v for v in g.order() if not g.nodes[v].is_leaf]
    scan_groups: dict[int, _Group] = {}
    duplicated: dict[int, list] = {}      # value -> every group that computes it

    def groups_of(u):
        return duplicated.get(u) or [group_of[u]]

    for v in reversed(order):
        node = g.nodes[v]
        kind = get_op(node.op).kind
        if kind == "scan":
            # A scan and the results read from it are one kernel (one loop).
            s = node.inputs[0] if node.op == "scan_result" else v
            if s not in scan_groups:
                scan_groups[s] = _Group("scan", (), s)
            scan_groups[s].members.add(v)
            group_of[v] = scan_groups[s]
            continue
        users = g.users(v)
        user_groups = {id(G): G for u in users if u in group_of for G in groups_of(u)}
        target = next(iter(user_groups.values())) if len(user_groups) == 1 else None
        joined = False
        if target is not None and node.op != "reshape" and len(user_groups) == 1:
            joined = _try_join(g, target, v, kind)
        if joined:
            group_of[v] = target
            continue
        if len(user_groups) > 1 and _duplicable(g, v, kind, roots) and \
                _join_all(g, list(user_groups.values()), v, kind):
            # Cheap enough to compute again in each consumer than to store and reload.
            duplicated[v] = list(user_groups.values())
            group_of[v] = duplicated[v][0]
            continue
        grp = _Group("view" if node.op == "reshape" else _group_kind(kind), node.type.shape, v)
        group_of[v] = grp

    # Build kernels in a deterministic topological order of groups.
    groups = {id(grp): grp for grp in group_of.values()}
    gdag = nx.DiGraph()
    first = {gid: min(grp.members) for gid, grp in groups.items()}
    for gid in groups:
        gdag.add_node(gid)
    for grp in groups.values():
        for v in grp.members:
            for i in g.nodes[v].inputs:
                if i in group_of and i not in grp.members:
                    gdag.add_edge(id(group_of[i]), id(grp))
    writes_state = {id(group_of[u]) for u in g.updates.values() if u in group_of}
    # Groups that write updates go as late as possible, so they can write in place.
    gorder = list(nx.lexicographical_topological_sort(
        gdag, key=lambda gid: (gid in writes_state, first[gid])))
    kernels = []
    position = {v: i for i, v in enumerate(order)}
    for n, gid in enumerate(gorder):
        grp = groups[gid]
        members = sorted((v for v in grp.members if v in position), key=position.__getitem__)
        outputs = [v for v in members if v not in duplicated and (
                   v in roots or any(G is not grp for u in g.users(v) for G in groups_of(u)))]
        inline_ok = grp.kind in ("loop", "reduce")
        inputs = sorted({i for v in members for i in g.nodes[v].inputs
                         if i not in grp.members and not (inline_ok and _inlined_constant(g, i))})
        k = Kernel(f"k{n}_{g.nodes[members[-1]].op}", grp.kind, members, outputs, inputs,
                   grp.shape, grp.reduce, g.nodes[members[-1]].scope, set(grp.in_space))
        kernels.append(k)
    from .fuse_rows import merge_rows
    from .fuse_updates import merge_updates
    from .schedule import schedule
    return schedule(merge_updates(merge_rows(FusedGraph(g, kernels))))


# Recomputed in every consumer instead of stored: ops cheaper than a load and a store.
# (Transcendentals are not: duplicating an LSTM's gate activations into each of their
# consumers measured 1.2 -> 1.6 ms per W4 step.)
CHEAP = {"add", "sub", "mul", "neg", "maximum", "minimum", "select", "broadcast_to", "abs",
         "sign", "cast", "greater", "greater_equal", "less", "less_equal", "equal", "not_equal"}


def _duplicable(g: Graph, v: int, kind: str, roots) -> bool:
    n = g.nodes[v]
    if any(g.nodes[u].op == "reduce_max" for u in g.users(v)):
        # The max's gradient masks the elements equal to the max: every kernel must
        # see the same bits, and a recomputation may round differently (LLVM may
        # contract a*b - c into one FMA in one kernel and not in another).
        return False
    return v not in roots and kind in ("elementwise", "layout") and n.op in CHEAP


def _join_all(g: Graph, targets, v: int, kind: str) -> bool:
    """Join v to every target group, or to none (undoing partial joins)."""
    done = []
    for grp in targets:
        if grp.kind not in ("loop", "reduce") or not _try_join(g, grp, v, kind):
            for d in done:
                d.members.discard(v)
                d.in_space.discard(v)
            return False
        done.append(grp)
    return True


def _inlined_constant(g: Graph, v: int) -> bool:
    n = g.nodes[v]
    return n.is_leaf and n.role == "constant" and n.type.size == 1


def _read_by_index(g: Graph, grp: _Group, v: int) -> bool:
    """Is v the table of a gather in grp? (read at data-dependent rows: must be a buffer)"""
    return any(g.nodes[u].op == "gather" and g.nodes[u].inputs[0] == v
               for u in g.users(v) if u in grp.members)


def _reads_at_same_index(g: Graph, grp: _Group, v: int) -> bool:
    """Does grp read v only elementwise (no layout op between them)? An epilogue sees one
    tile of the product at a time: a transpose, slice or pad of it would read elements
    of other tiles (a (2, 6, 6) product transposed has the product's shape)."""
    stack, seen = [v], set()
    while stack:
        for w in g.users(stack.pop()):
            if w in grp.members and w not in seen:
                if get_op(g.nodes[w].op).kind == "layout":
                    return False
                seen.add(w)
                stack.append(w)
    return True


def _try_join(g: Graph, grp: _Group, v: int, kind: str) -> bool:
    node = g.nodes[v]
    shape = node.type.shape
    if _read_by_index(g, grp, v):
        return False
    if grp.kind == "loop":
        if kind in FUSIBLE and shape == grp.shape:
            grp.members.add(v)
            return True
        if (kind in ("matmul", "conv") and shape == grp.shape
                and not any(g.nodes[m].op in ("gather", "random_uniform") for m in grp.members)
                and _reads_at_same_index(g, grp, v)):
            # GEMM epilogue: the loop (bias, activation; in a backward pass the
            # activation's derivative) runs on each tile of the product while it
            # is in cache, instead of as a pass of its own.
            grp.kind = kind
            grp.members.add(v)
            return True
        if kind == "reduction" and shape == grp.shape and is_suffix_reduction(g, v):
            # The loop becomes this reduction's epilogue.
            grp.kind = "reduce"
            grp.reduce = v
            grp.members.add(v)
            return True
        return False
    if grp.kind == "reduce":
        rin = g.type(g.nodes[grp.reduce].inputs[0]).shape
        if kind not in FUSIBLE:
            return False
        users_in = [u for u in g.users(v) if u in grp.members]
        feeds_prologue = all(u == grp.reduce or u in grp.in_space for u in users_in)
        feeds_epilogue = all(u != grp.reduce and u not in grp.in_space for u in users_in)
        if shape == rin and feeds_prologue:
            grp.members.add(v)
            grp.in_space.add(v)
            return True
        if (shape == grp.shape and feeds_epilogue and grp.reduce is not None
                and is_suffix_reduction(g, grp.reduce) and grp.shape != rin):
            grp.members.add(v)
            return True
        return False
    return False
