"""The dataflow graph: typed values, leaves with roles, ops from the registry.

A `Graph` is a DAG kept in a networkx DiGraph whose nodes are integer value
ids. Every value is produced by exactly one `Node`: either a leaf (op 'leaf',
with a role) or a primitive op applied to earlier values. Graphs are treated
as immutable by passes: a pass copies, edits the copy and returns it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import heapq
import math

import networkx as nx
import numpy as np

DTYPES = ("float32", "int32")
ROLES = ("param", "input", "target", "state", "constant")


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise TypeError(f"unsupported dtype {self.dtype!r}; expected one of {DTYPES}")
        if any((not isinstance(d, (int, np.integer))) or d < 0 for d in self.shape):
            raise ValueError(f"invalid shape {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return 4 * self.size

    def __str__(self):
        short = {"float32": "f32", "int32": "i32"}[self.dtype]
        return f"{short}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class Node:
    """One value of the graph and the op that produces it."""
    op: str                                  # primitive name, or 'leaf'
    inputs: tuple[int, ...]
    type: TensorType
    attrs: tuple = ()                        # sorted (key, value) pairs, hashable
    role: str | None = None                  # leaves only
    name: str | None = None                  # leaves: their binding name
    scope: str = ""                          # the layer that emitted it
    value: np.ndarray | None = field(default=None, compare=False, hash=False)  # constants

    @property
    def params(self) -> dict:
        return dict(self.attrs)

    @property
    def is_leaf(self) -> bool:
        return self.op == "leaf"


def freeze_attrs(attrs: dict) -> tuple:
    def freeze(v):
        if isinstance(v, list):
            return tuple(freeze(x) for x in v)
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        return v
    return tuple(sorted((k, freeze(v)) for k, v in attrs.items()))


class Graph:
    """A static dataflow graph with named outputs and in-place state updates.

    outputs: name -> value id (what an entry point returns).
    updates: leaf id -> value id (the new value a param/state leaf takes after the step).
    """

    def __init__(self):
        self.dag = nx.DiGraph()
        self.nodes: dict[int, Node] = {}
        self.outputs: dict[str, int] = {}
        self.updates: dict[int, int] = {}
        self.input_bounds: dict[str, int] = {}   # input name -> ids must lie in [0, bound)
        self._next = 0
        self.scope = ""
        self._order: list[int] | None = None    # order(), until the next edit

    # -- construction -------------------------------------------------------
    def _insert(self, node: Node) -> int:
        self._order = None
        vid = self._next
        self._next += 1
        self.nodes[vid] = node
        self.dag.add_node(vid)
        for i in node.inputs:
            self.dag.add_edge(i, vid)
        return vid

    def leaf(self, role: str, type: TensorType, name: str | None = None, value=None) -> int:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        if role == "constant":
            value = np.asarray(value, dtype=type.dtype)
            if value.shape != type.shape:
                raise ValueError(f"constant of shape {value.shape} declared as {type}")
            value.setflags(write=False)
        elif name is None:
            raise ValueError(f"a {role} leaf needs a name")
        return self._insert(Node("leaf", (), type, role=role, name=name, scope=self.scope, value=value))

    def constant(self, value, dtype: str = "float32") -> int:
        arr = np.asarray(value, dtype=dtype)
        return self.leaf("constant", TensorType(arr.shape, dtype), value=arr)

    def add(self, op: str, inputs, **attrs) -> int:
        from .ops import get_op
        opdef = get_op(op)
        inputs = tuple(int(i) for i in inputs)
        for i in inputs:
            if i not in self.nodes:
                raise KeyError(f"{op}: operand %{i} is not a value of this graph")
        attrs = opdef.normalize(tuple(self.nodes[i].type for i in inputs), dict(attrs))
        out_type = opdef.shape_rule([self.nodes[i].type for i in inputs], attrs)
        return self._insert(Node(op, inputs, out_type, freeze_attrs(attrs), scope=self.scope))

    # -- queries ------------------------------------------------------------
    def type(self, vid: int) -> TensorType:
        return self.nodes[vid].type

    def order(self) -> list[int]:
        """Topological order, deterministic (smallest id first among ready nodes): the
        order of networkx's lexicographical_topological_sort, from the nodes' operands
        (the dag's edges) without its per-node overhead (passes ask for it dozens of
        times; a 30-block model's graphs have ~6000 nodes), kept until the graph is edited."""
        if getattr(self, "_order", None) is None:
            self._order = self._topological_order()
        return list(self._order)

    def _topological_order(self) -> list[int]:
        pending, users = {}, {}
        for v, n in self.nodes.items():
            operands = set(n.inputs)
            pending[v] = len(operands)
            for i in operands:
                users.setdefault(i, []).append(v)
        ready = [v for v, k in pending.items() if k == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            v = heapq.heappop(ready)
            out.append(v)
            for u in users.get(v, ()):
                pending[u] -= 1
                if pending[u] == 0:
                    heapq.heappush(ready, u)
        if len(out) != len(pending):
            raise ValueError("the graph has a cycle")
        return out

    def users(self, vid: int) -> list[int]:
        return sorted(self.dag.successors(vid))

    def leaves(self, role: str | None = None) -> list[int]:
        return [v for v, n in sorted(self.nodes.items())
                if n.is_leaf and (role is None or n.role == role)]

    def leaf_by_name(self, name: str) -> int:
        for v, n in self.nodes.items():
            if n.is_leaf and n.name == name:
                return v
        raise KeyError(f"no leaf named {name!r}")

    def roots(self) -> list[int]:
        """Values the graph must compute: outputs and update values."""
        return list(dict.fromkeys([*self.outputs.values(), *self.updates.values()]))

    # -- editing (passes work on copies) -------------------------------------
    def copy(self) -> "Graph":
        g = Graph()
        g.dag = _copy_dag(self.dag)
        g.nodes = dict(self.nodes)
        g.outputs = dict(self.outputs)
        g.updates = dict(self.updates)
        g.input_bounds = dict(self.input_bounds)
        g._next = self._next
        g._order = self._order
        return g

    def replace_node(self, vid: int, node: Node) -> None:
        self._order = None
        for i in list(self.dag.predecessors(vid)):
            self.dag.remove_edge(i, vid)
        self.nodes[vid] = node
        for i in node.inputs:
            self.dag.add_edge(i, vid)

    def replace_uses(self, old: int, new: int) -> None:
        """Point every user of `old` (and outputs/updates) at `new`."""
        for u in self.users(old):
            n = self.nodes[u]
            self.replace_node(u, replace(n, inputs=tuple(new if i == old else i for i in n.inputs)))
        # In place, keys kept in order (a new dict per call made this quadratic in
        # a deep model's hundreds of outputs).
        for table in (self.outputs, self.updates):
            for k, v in table.items():
                if v == old:
                    table[k] = new

    def remove(self, vids) -> None:
        self._order = None
        for v in vids:
            self.dag.remove_node(v)
            del self.nodes[v]

    def __len__(self):
        return len(self.nodes)

    def __str__(self):
        from .printer import format_graph
        return format_graph(self)


def _copy_dag(dag: nx.DiGraph) -> nx.DiGraph:
    """dag.copy() for a DiGraph with no graph, node or edge attributes (a Graph keeps
    its nodes' data in `nodes`), filling networkx's adjacency dicts directly: half the
    time of copy(), which passes over a deep model's graph pay dozens of times."""
    new = nx.DiGraph()
    succ, pred = new._succ, new._pred
    for v in dag._node:
        new._node[v] = {}
        succ[v] = {}
        pred[v] = {}
    for u, users in dag._succ.items():
        out = succ[u]
        for v in users:
            out[v] = pred[v][u] = {}        # one data dict per edge, as add_edge makes
    return new
