"""Algebraic rewrites: identities, layout cancellations, and stable log-softmax.

Each rule looks at one value and returns a replacement value id (or None).
Rules only ever replace a value by one of equal type.
"""
from __future__ import annotations

import numpy as np

from .. import builder as F
from ..builder import Sym
from ..graph import Graph


def _node(g, v):
    return g.nodes[v]


def _is(g, v, op):
    return g.nodes[v].op == op


def _const_value(g, v):
    n = g.nodes[v]
    if n.is_leaf and n.role == "constant":
        return n.value
    if n.op == "broadcast_to":
        return _const_value(g, n.inputs[0])
    return None


def _is_const(g, v, x):
    val = _const_value(g, v)
    return val is not None and val.size > 0 and np.all(val == x)


def identities(g: Graph, v: int):
    n = g.nodes[v]
    t = n.type
    if n.op in ("add", "sub") and _is_const(g, n.inputs[1], 0) and g.type(n.inputs[0]) == t:
        return n.inputs[0]
    if n.op == "add" and _is_const(g, n.inputs[0], 0) and g.type(n.inputs[1]) == t:
        return n.inputs[1]
    if n.op in ("mul", "div") and _is_const(g, n.inputs[1], 1) and g.type(n.inputs[0]) == t:
        return n.inputs[0]
    if n.op == "mul" and _is_const(g, n.inputs[0], 1) and g.type(n.inputs[1]) == t:
        return n.inputs[1]
    if n.op == "neg" and _is(g, n.inputs[0], "neg"):
        return g.nodes[n.inputs[0]].inputs[0]
    if n.op in ("reshape", "broadcast_to", "cast") and g.type(n.inputs[0]) == t:
        return n.inputs[0]
    return None


def layout(g: Graph, v: int):
    n = g.nodes[v]
    if n.op == "reshape" and _is(g, n.inputs[0], "reshape"):
        return F.reshape(Sym(g, g.nodes[n.inputs[0]].inputs[0]), n.type.shape).id
    if n.op == "transpose" and _is(g, n.inputs[0], "transpose"):
        inner = g.nodes[n.inputs[0]]
        perm = tuple(inner.params["perm"][p] for p in n.params["perm"])
        return F.transpose(Sym(g, inner.inputs[0]), perm).id
    if n.op == "matmul":
        a, b = n.inputs
        p = n.params
        if _is(g, a, "transpose") or _is(g, b, "transpose"):
            ta, tb = p["transpose_a"], p["transpose_b"]
            if _is(g, a, "transpose"):
                a, ta = g.nodes[a].inputs[0], not ta
            if _is(g, b, "transpose"):
                b, tb = g.nodes[b].inputs[0], not tb
            return F.matmul(Sym(g, a), Sym(g, b), transpose_a=ta, transpose_b=tb).id
    return None


def _softmax_parts(g, v):
    """If v = exp(u) / sum(exp(u), axis, keepdims=True), return (u, the sum)."""
    n = g.nodes[v]
    if n.op != "div":
        return None
    e, s = n.inputs
    sn = g.nodes[s]
    if not (_is(g, e, "exp") and sn.op == "reduce_sum" and sn.inputs[0] == e and sn.params["keepdims"]):
        return None
    return g.nodes[e].inputs[0], s


def stable_log_softmax(g: Graph, v: int):
    """Rewrites of softmax followed by a cross-entropy.

    p / sum(p)                      -> p            when p is already a softmax
    log(softmax(u))                 -> u - log(sum(exp(u)))
    log(clip(softmax(u), lo, hi))   -> clip(u - log(sum(exp(u))), log lo, log hi)
    The last is exact (log is monotone) and never takes the log of an underflowed
    probability, so the gradient stays finite.
    """
    n = g.nodes[v]
    if n.op == "div":
        p, s = n.inputs
        sn = g.nodes[s]
        if (sn.op == "reduce_sum" and sn.inputs[0] == p and sn.params["keepdims"]
                and _softmax_parts(g, p) is not None
                and g.nodes[_softmax_parts(g, p)[1]].params["axes"] == sn.params["axes"]):
            return p
    if n.op != "log":
        return None
    x = n.inputs[0]
    lo = hi = None
    if _is(g, x, "minimum") and _const_value(g, g.nodes[x].inputs[1]) is not None:
        hi = _const_value(g, g.nodes[x].inputs[1])
        x = g.nodes[x].inputs[0]
        if _is(g, x, "maximum") and _const_value(g, g.nodes[x].inputs[1]) is not None:
            lo = _const_value(g, g.nodes[x].inputs[1])
            x = g.nodes[x].inputs[0]
        else:
            return None
    parts = _softmax_parts(g, x)
    if parts is None:
        return None
    u, s = Sym(g, parts[0]), Sym(g, parts[1])
    out = u - F.log(s)
    if lo is not None:
        if lo.size != 1 or hi.size != 1 or lo.item() <= 0:
            return None
        out = F.clip(out, float(np.log(lo.item())), float(np.log(hi.item())))
    return out.id if out.type == g.type(v) else None


RULES = [identities, layout, stable_log_softmax]


def rewrite_algebraic(graph: Graph, rules=RULES, max_rounds: int = 4) -> Graph:
    g = graph.copy()
    for _ in range(max_rounds):
        changed = False
        for v in g.order():
            if v not in g.nodes or g.nodes[v].is_leaf:
                continue
            for rule in rules:
                g.scope = g.nodes[v].scope
                new = rule(g, v)
                if new is not None and new != v:
                    g.replace_uses(v, new)
                    changed = True
                    break
        g.scope = ""
        if not changed:
            break
    return g
