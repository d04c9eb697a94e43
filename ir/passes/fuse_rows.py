"""merge_rows: chains of row-wise kernels become one kernel that walks the rows once.

A softmax, its cross-entropy and their gradient are a dozen small kernels over
the same rows: a max, an exp, a sum, a log, a loss sum, the gradient's sums
and the gradient itself, each reading the previous one's result for the same
row. As separate kernels each is a call, a loop and (on several threads) a
barrier; merged, one loop over the rows runs every stage for a row while the
row is in registers and L1, and a thread needs no barrier between stages
because a row's stages read only that row's results.

A kernel is a stage over rows R when it is
  a suffix reduction over its last axis, of an input of shape R + (W,), or
  a loop of shape R + (W,) (a row), R or R + (1,) (one value per row),
with elementwise (and layout) members only. A stage may read anything from
outside the merged kernel, but values of earlier stages only at its own row
(same shape, or a per-row value broadcast along the row). Per-row values that
no other kernel reads stay in registers. Merging keeps the kernel graph
acyclic: a kernel joins a merged group only if no kernel outside the group
lies on a path from the group to it. A group has at least two stages. A lone
elementwise loop that a reduction over its rows reads (masked attention scores
before their softmax) is a row stage of the reduction's group.

Loop kernels of one shape whose values several later loops read (an LSTM
backward step's gate activations and their products) form such groups with
every element a row: one pass computes them all, and values only they read
stay in registers instead of buffers.
"""
from __future__ import annotations

import networkx as nx

from ..graph import Graph
from ..ops import get_op
from .fuse import FusedGraph, Kernel, is_suffix_reduction, kernel_reads, producers

# Layout ops and gathers may read buffers from outside the group at any index;
# reads of the group's own values are checked for row alignment (_can_join).
ROW_OPS = ("elementwise", "layout", "gather")


def _row_space(g: Graph, k: Kernel):
    """The rows R a kernel can be a stage of (None: it can't)."""
    if k.kind == "reduce":
        n = g.nodes[k.reduce]
        nred = len(n.params["axes"]) if "axes" in n.params else 1
        rin = g.type(n.inputs[0]).shape
        if nred != 1 or len(rin) < 2 or not is_suffix_reduction(g, k.reduce):
            return None
        return rin[:-1]
    if k.kind == "loop" and k.shape:
        return k.shape[:-1] if len(k.shape) >= 2 else k.shape
    return None


def _elementwise_only(g: Graph, k: Kernel) -> bool:
    return all(m == k.reduce or get_op(g.nodes[m].op).kind in ROW_OPS
               or g.nodes[m].op == "broadcast_to" for m in k.members)


def _role(g: Graph, k: Kernel, rows) -> str | None:
    """'reduce', 'row' or 'scalar' if k is a stage over rows, else None."""
    if not _elementwise_only(g, k):
        return None
    if k.kind == "reduce":
        return "reduce" if _row_space(g, k) == rows else None
    if k.kind != "loop":
        return None
    s = k.shape
    if s == rows or s == rows + (1,):
        return "scalar"
    if s[:-1] == rows:
        return "row"
    return None


def _per_row(g: Graph, v: int, rows) -> bool:
    s = g.type(v).shape
    return s == rows or s == rows + (1,)


def _row_aligned_read(g: Graph, reader: int, v: int, rows) -> bool:
    """Does op `reader` read value v (of an earlier stage) at the reader's own row?"""
    s, t = g.type(v).shape, g.type(reader).shape
    op = g.nodes[reader].op
    if op == "reshape":
        return _per_row(g, v, rows) and _per_row(g, reader, rows)
    if get_op(op).kind == "reduction":     # over the last axis of the row
        return s[:-1] == rows
    if get_op(op).kind != "elementwise" and op != "broadcast_to":
        return False        # a transpose, slice, pad or gather reads other indices
    if s == t:
        return True
    # a per-row value broadcast along the row (keepdims shape, aligned right)
    return s == rows + (1,) and t[:-1] == rows and len(t) == len(s)


class _Group:
    def __init__(self, rows, first):
        self.rows = rows
        self.stages: list[Kernel] = [first]
        self.views: list[Kernel] = []        # reshapes of the group's per-row values
        self.ids = {id(first)}

    def produced(self):
        return {m for k in self.stages for m in k.members} | \
            {k.members[0] for k in self.views}


def _dependencies(g: Graph, kernels) -> nx.DiGraph:
    """Kernel -> kernels that read what it writes (nodes are id(kernel))."""
    producer = producers(kernels)
    deps = nx.DiGraph()
    for k in kernels:
        deps.add_node(id(k))
        for i in kernel_reads(g, k):
            if i in producer and producer[i] is not k:
                deps.add_edge(id(producer[i]), id(k))
    return deps


def merge_rows(fg: FusedGraph) -> FusedGraph:
    g = fg.graph
    kernels = fg.kernels
    reach = _Reach(g, kernels)

    groups: list[_Group] = []
    group_of: dict[int, _Group] = {}
    updates = set(g.updates.values())
    producer = producers(kernels)

    def groups_read_by(k):
        """The groups whose values k reads (through reshapes): its only candidates, so
        the work stays linear in the kernels, and a merge saves a store and a load."""
        out = []
        for i in kernel_reads(g, k):
            p = producer.get(i)
            while p is not None and p.kind == "view" and id(p) not in group_of:
                p = producer.get(g.nodes[p.members[0]].inputs[0])
            grp = group_of.get(id(p)) if p is not None else None
            if grp is not None and grp not in out:
                out.append(grp)
        return out

    for k in kernels:
        if k.kind == "view" or updates & set(k.outputs):
            # (a kernel writing the state is left to merge_updates: it can write in place)
            continue
        placed = False
        for grp in groups_read_by(k):
            _rows_for_reduction(g, grp, k)
            role = _role(g, k, grp.rows)
            if role is None:
                continue
            _absorb_views(g, grp, k, producer, group_of)
            if _can_join(g, grp, k, reach, groups):
                grp.stages.append(k)
                grp.ids.add(id(k))
                group_of[id(k)] = grp
                placed = True
                break
        if not placed:
            rows = _row_space(g, k)
            if k.kind == "reduce" and rows is not None and _role(g, k, rows) == "reduce":
                grp = _Group(rows, k)
            elif k.kind == "loop" and k.shape and _role(g, k, k.shape) == "scalar":
                # elementwise loops of one shape: every element is a "row"
                grp = _Group(k.shape, k)
            else:
                continue
            groups.append(grp)
            group_of[id(k)] = grp

    kept = [grp for grp in groups if len(grp.stages) >= 2]
    if not kept:
        return fg
    return _rebuild(fg, kept)


def _rows_for_reduction(g, grp: _Group, k: Kernel) -> None:
    """A lone elementwise loop read by a reduction over its last axis (masked attention
    scores, then their softmax's max) becomes a row stage of the reduction's rows: the
    masking then runs in the softmax's rows kernel."""
    if len(grp.stages) == 1 and not grp.views and k.kind == "reduce" and \
            grp.rows == grp.stages[0].shape and len(grp.rows) >= 2 and \
            _row_space(g, k) == grp.rows[:-1] and \
            _role(g, grp.stages[0], grp.rows[:-1]) == "row":
        grp.rows = grp.rows[:-1]


def _absorb_views(g, grp: _Group, k: Kernel, producer, group_of):
    """Row-aligned reshapes of the group's per-row values that k reads: they become
    the group's (no code, an alias of a register)."""
    stage_values = {m for st in grp.stages for m in st.members}
    for i in kernel_reads(g, k):
        v = producer.get(i)
        if v is None or v.kind != "view" or id(v) in grp.ids:
            continue
        (src,) = g.nodes[v.members[0]].inputs
        if src in stage_values and _per_row(g, src, grp.rows) and \
                _per_row(g, v.members[0], grp.rows):
            grp.views.append(v)
            grp.ids.add(id(v))
            group_of[id(v)] = grp


class _Reach:
    """Reachability between the kernels of the list (a topological order), as bitmasks."""

    def __init__(self, g, kernels):
        self.bit = {id(k): 1 << n for n, k in enumerate(kernels)}
        producer = producers(kernels)
        preds = {id(k): [producer[i] for i in kernel_reads(g, k) if i in producer and producer[i] is not k]
                 for k in kernels}
        self.anc = {}
        for k in kernels:
            a = 0
            for p in preds[id(k)]:
                a |= self.anc[id(p)] | self.bit[id(p)]
            self.anc[id(k)] = a
        self.desc = {id(k): 0 for k in kernels}
        for k in reversed(kernels):
            for p in preds[id(k)]:
                self.desc[id(p)] |= self.desc[id(k)] | self.bit[id(k)]

    def mask(self, ids):
        m = 0
        for i in ids:
            m |= self.bit[i]
        return m

    def reachable_from(self, ids):
        m = 0
        for i in ids:
            m |= self.desc[i]
        return m


def _can_join(g, grp: _Group, k: Kernel, reach, groups) -> bool:
    produced = grp.produced()
    reads_group = False
    for m in k.members:
        for i in g.nodes[m].inputs:
            if i in produced and i not in k.members:
                reads_group = True
                if not _row_aligned_read(g, m, i, grp.rows):
                    return False
    if reads_group and any(get_op(g.nodes[m].op).kind not in ("elementwise", "reduction")
                           and g.nodes[m].op != "broadcast_to" for m in k.members):
        # a transpose, slice, pad or gather evaluates k's other members at other
        # indices, where an earlier stage's register holds the wrong element
        return False
    # The kernel graph with every group contracted to one node must stay acyclic:
    # nothing outside the group may lie on a path from the group to k. Paths may
    # enter a multi-stage group at one member and leave at another, so the kernels
    # reachable from the group grow by whole groups until they stop changing.
    mine = reach.mask(grp.ids)
    after = reach.reachable_from(grp.ids)
    others = [(reach.mask(h.ids), h.ids) for h in groups
              if h is not grp and len(h.stages) + len(h.views) >= 2]
    changed = True
    while changed:
        changed = False
        for hmask, hids in others:
            if after & hmask and (after | hmask | reach.reachable_from(hids)) != after:
                after |= hmask | reach.reachable_from(hids)
                changed = True
    return not (reach.anc[id(k)] & after & ~mine)


def _rebuild(fg: FusedGraph, groups: list[_Group]) -> FusedGraph:
    g = fg.graph
    roots = set(g.roots())
    unit_of = {}
    for grp in groups:
        for k in grp.stages:
            unit_of[id(k)] = grp
    merged: dict[int, Kernel] = {}
    for grp in groups:
        merged[id(grp)] = _merged_kernel(g, grp, roots, fg.kernels)

    # The new kernel list, in a topological order of units (a group or a kernel).
    units = []
    for k in fg.kernels:
        u = unit_of.get(id(k))
        if u is None:
            units.append(k)
        elif u.stages[0] is k:
            units.append(merged[id(u)])
    absorbed_internal = {id(v) for grp in groups for v in grp.views
                         if not _read_outside(g, v.members[0], grp, fg.kernels, roots)}
    units = [u for u in units if id(u) not in absorbed_internal]
    dag = _dependencies(g, units)
    first = {id(u): n for n, u in enumerate(units)}
    by_id = {id(u): u for u in units}
    ordered = [by_id[i] for i in nx.lexicographical_topological_sort(dag, key=lambda i: first[i])]
    for n, k in enumerate(ordered):
        k.name = f"k{n}_{k.name.split('_', 1)[1]}"
    return FusedGraph(g, ordered)


def _read_outside(g, v, grp: _Group, kernels, roots) -> bool:
    if v in roots:
        return True
    return any(id(k) not in grp.ids and v in kernel_reads(g, k) for k in kernels)


def _merged_kernel(g: Graph, grp: _Group, roots, kernels) -> Kernel:
    members, seen = [], set()
    for k in grp.stages:
        for m in k.members:
            if m not in seen:
                seen.add(m)
                members.append(m)
        for v in grp.views:         # aliases of per-row values, listed after them
            src = g.nodes[v.members[0]].inputs[0]
            if src in seen and v.members[0] not in seen:
                seen.add(v.members[0])
                members.append(v.members[0])
    produced = grp.produced()
    outputs = []
    for k in grp.stages:
        for o in k.outputs:
            # A per-row value read only by later stages stays in a register.
            if _per_row(g, o, grp.rows) and not _read_outside(g, o, grp, kernels, roots) and \
                    not any(_read_outside(g, v.members[0], grp, kernels, roots)
                            for v in grp.views if g.nodes[v.members[0]].inputs[0] == o):
                continue
            if o not in outputs:
                outputs.append(o)
    inputs = sorted({i for k in grp.stages for i in k.inputs if i not in produced})
    scopes = {k.scope for k in grp.stages}
    scope = scopes.pop() if len(scopes) == 1 else ""
    return Kernel("k0_rows", "rows", members, outputs, inputs, grp.rows, None, scope,
                  stages=list(grp.stages), views=[v.members[0] for v in grp.views])
