"""A jaxpr-like text form: one line per value, its type, the op and operands."""
from __future__ import annotations

import numpy as np


def value_name(i: int) -> str:
    """a, b, ..., z, aa, ab, ...: jaxpr's names for the i-th value."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(97 + r) + s
    return s


def _fmt_attr(v):
    if isinstance(v, tuple):
        return "(" + ",".join(map(str, v)) + ")"
    return str(v)


def format_node(graph, vid, names) -> str:
    node = graph.nodes[vid]
    lhs = f"{names[vid]}:{node.type}"
    if node.is_leaf:
        if node.role == "constant":
            v = node.value
            shown = np.array2string(v, precision=6, threshold=6) if v.size <= 6 else f"<{v.size} values>"
            return f"{lhs} = const {shown}"
        return f"{lhs} = {node.role} {node.name!r}"
    attrs = " ".join(f"{k}={_fmt_attr(v)}" for k, v in node.attrs)
    args = " ".join(names[i] for i in node.inputs)
    scope = f"    # {node.scope}" if node.scope else ""
    return f"{lhs} = {node.op}{'[' + attrs + ']' if attrs else ''} {args}{scope}"


def format_graph(graph) -> str:
    order = graph.order()
    names = {v: value_name(k) for k, v in enumerate(order)}
    lines = ["{ lambda"]
    lines += ["    " + format_node(graph, v, names) for v in order]
    outs = ", ".join(f"{k}={names[v]}" for k, v in graph.outputs.items())
    ups = ", ".join(f"{graph.nodes[l].name}<-{names[v]}" for l, v in graph.updates.items())
    lines.append(f"  in ({outs})" + (f" updates ({ups})" if ups else "") + " }")
    return "\n".join(lines)
