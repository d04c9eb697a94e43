"""The JSON-able documents of each stage: graphs, kernels, the memory plan, code, statistics."""
from __future__ import annotations

import math
import re

import numpy as np

from kcompile.ir.printer import value_name as _letters

_ROLE_ORDER = {"input": 0, "target": 1, "param": 2, "state": 3, "constant": 4}
_ALIGN = 64


def _json_num(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _json_attr(v):
    sub = getattr(v, "graph", None)
    if sub is not None and hasattr(sub, "nodes") and hasattr(sub, "outputs"):
        gdoc, _ = graph_doc(sub)          # a scan's body: a graph of its own
        return {"graph": gdoc, **{k: int(getattr(v, k)) for k in
                                  ("n_consts", "n_carry", "n_xs", "n_ys") if hasattr(v, k)},
                "key": str(getattr(v, "key", ""))[:16]}
    if isinstance(v, (tuple, list)):
        return [_json_attr(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _json_num(v)
    if v is None or isinstance(v, str):
        return v
    return str(v)


def _json_value(arr: np.ndarray):
    if arr.dtype.kind == "f":
        return _json_attr(arr.astype(np.float64).tolist())
    return _json_attr(arr.tolist())


def _literal(value, dtype) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if dtype == "int32" else str(np.float32(value))


def node_flops(g, v) -> float:
    """The estimate of ir/cost.py for one value: 2*M*N*K per matmul, conv_flops per
    convolution, the input size per reduction, one per output element otherwise; views and leaves cost nothing, and a
    scan costs its body's work times its length (its results nothing)."""
    from kcompile.ir.ops import get_op
    n = g.nodes[v]
    if n.is_leaf or n.op == "reshape":
        return 0.0
    kind = get_op(n.op).kind
    if kind == "scan":          # a scan does its body's work once per step
        body = n.params.get("body")
        if body is None:
            return 0.0
        sub = body.graph
        return float(n.params.get("length", 1)) * sum(
            node_flops(sub, u) for u, m in sub.nodes.items() if not m.is_leaf)
    if kind == "conv":
        from kcompile.ir.cost import conv_flops
        return conv_flops(g, v)
    if n.op == "matmul":
        from kcompile.ir.cost import matmul_flops
        return matmul_flops(g, v)
    if kind == "reduction":
        return float(g.type(n.inputs[0]).size)
    return float(n.type.size)


def graph_stats(g) -> dict:
    ops = [v for v, n in g.nodes.items() if not n.is_leaf]
    return {"values": len(g.nodes), "ops": len(ops),
            "flops": float(sum(node_flops(g, v) for v in ops))}


def kernel_stats(fg) -> dict:
    code = [k for k in fg.kernels if k.kind != "view"]
    return {"kernels": len(code), "views": len(fg.kernels) - len(code),
            "max_ops_per_kernel": max((len(k.members) for k in code), default=0)}


def graph_doc(g, op_order=None, keep=None):
    """(graph document, display names). op_order: the order ops are shown in (default
    topological); keep: only these value ids (narrowed views)."""
    order = g.order()
    pos = {v: n for n, v in enumerate(order)}
    leaves = sorted((v for v in order if g.nodes[v].is_leaf and g.nodes[v].role != "constant"),
                    key=lambda v: (_ROLE_ORDER.get(g.nodes[v].role, 9), pos[v]))
    consts = [v for v in order if g.nodes[v].is_leaf and g.nodes[v].role == "constant"]
    ops = list(op_order) if op_order is not None else [v for v in order if not g.nodes[v].is_leaf]
    shown = leaves + consts + ops
    names, k = {}, 0
    for v in shown:             # names over the whole graph, so narrowed views agree
        n = g.nodes[v]
        if n.role == "constant" and n.type.rank == 0:
            names[v] = _literal(_json_value(n.value), n.type.dtype)
        else:
            names[v] = _letters(k)
            k += 1
    if keep is not None:
        shown = [v for v in shown if v in keep]
        names = {v: names[v] for v in shown}
    values = []
    for v in shown:
        n = g.nodes[v]
        inline = n.role == "constant" and n.type.rank == 0
        values.append({
            "id": int(v), "name": names[v], "op": n.op, "shape": list(n.type.shape),
            "dtype": n.type.dtype, "inputs": [int(i) for i in n.inputs],
            "attrs": {str(a): _json_attr(b) for a, b in n.attrs}, "scope": n.scope or "",
            "role": n.role, "binding": n.name,
            "value": (_json_value(n.value) if n.role == "constant" and n.value.size <= 16 else None),
            "inline": inline})
    kept = set(names)
    outputs = {str(k): int(v) for k, v in g.outputs.items() if v in kept}
    updates = [{"leaf": int(l), "value": int(v)} for l, v in g.updates.items()
               if l in kept and v in kept]
    from kcompile.ir.passes import GRAD_PREFIX
    grads = {k[len(GRAD_PREFIX):]: v for k, v in outputs.items() if k.startswith(GRAD_PREFIX)}
    return {"values": values, "outputs": outputs, "updates": updates, "gradients": grads}, names


def _kernel_bytes(g, k) -> int:
    """Compulsory traffic: each materialized input read once, each output written once."""
    return int(sum(g.type(v).nbytes for v in k.inputs) + sum(g.type(v).nbytes for v in k.outputs))


def kernel_flops(g, k) -> float:
    return float(sum(node_flops(g, v) for v in k.members))


def fused_doc(fg, kidx=None):
    g = fg.graph
    order = [v for k in fg.kernels for v in k.members]
    rest = [v for v in g.order() if not g.nodes[v].is_leaf and v not in set(order)]
    keep = None
    kernels = list(enumerate(fg.kernels))
    if kidx is not None:
        kernels = [(kidx, fg.kernels[kidx])]
        k = fg.kernels[kidx]
        keep = set(k.members) | set(k.inputs) | {
            i for v in k.members for i in g.nodes[v].inputs
            if g.nodes[i].role == "constant"}
    gdoc, _ = graph_doc(g, order + rest, keep)
    kdocs = [{"name": k.name, "index": n, "kind": k.kind, "shape": list(k.shape),
              "scope": k.scope or "", "members": [int(v) for v in k.members],
              "inputs": [int(v) for v in k.inputs], "outputs": [int(v) for v in k.outputs],
              "flops": kernel_flops(g, k), "bytes": _kernel_bytes(g, k)} for n, k in kernels]
    return gdoc, kdocs


def _what(g, v) -> str:
    n = g.nodes[v]
    if n.is_leaf:
        return f"{n.role} {n.name!r}" if n.role != "constant" else "constant"
    return n.op


def memory_doc(fg, plan, state, kidx=None, nthreads=1) -> dict:
    g = fg.graph
    nk = len(fg.kernels)
    kernel_names = [k.name for k in fg.kernels]
    order = [v for k in fg.kernels for v in k.members]
    _, names = graph_doc(g, order + [v for v in g.order() if not g.nodes[v].is_leaf
                                     and v not in set(order)])
    producer = {o: k for k in fg.kernels for o in k.outputs}
    readers: dict[int, list[str]] = {}
    for k in fg.kernels:
        for i in k.inputs:
            readers.setdefault(i, []).append(k.name)
    alias = {}
    for k in fg.kernels:
        if k.kind == "view":
            (src,) = g.nodes[k.members[0]].inputs
            alias[k.members[0]] = src
    in_place = {u for l, u in g.updates.items()
                if u in plan.locations and l in plan.locations
                and u != l and plan.locations[u] == plan.locations[l]}
    buffers = []
    for v, loc in plan.locations.items():
        t = g.type(v)
        life = plan.lifetimes.get(v)
        root = v
        while root in alias and root not in plan.lifetimes:
            root = alias[root]
        if life is None and root != v:
            life = plan.lifetimes.get(root)
        k = producer.get(v)
        buffers.append({
            "id": int(v), "name": names.get(v, f"%{v}"), "shape": list(t.shape), "dtype": t.dtype,
            "region": loc.region, "offset": int(loc.offset), "bytes": int(t.nbytes),
            "start": None if life is None else int(life[0]),
            "end": None if life is None else int(life[1]),
            "what": _what(g, v), "scope": g.nodes[v].scope or "",
            "kernel": k.name if k is not None else None,
            "readers": readers.get(v, []),
            "alias_of": int(alias[v]) if v in alias else None,
            "in_place": v in in_place})
    region_rank = {"work": 0, "state": 1, "const": 2}
    buffers.sort(key=lambda b: (region_rank.get(b["region"], 3), b["offset"],
                                -1 if b["start"] is None else b["start"], b["id"]))
    from kcompile.codegen.module import scratch_bytes
    by_name = {k.name: k for k in fg.kernels}
    scratch = [{"kernel": name, "offset": int(off),
                "bytes": int(scratch_bytes(g, by_name[name], nthreads))}
               for name, off in plan.scratch.items()]
    copies = [{"from": int(s), "to": int(d), "bytes": int(g.type(d).nbytes),
               "leaf": g.nodes[d].name} for s, d in plan.copies]
    # Peak: the largest sum of live work buffers (and scratch) at any point of the step.
    peak, peak_at = 0, -1
    for t in range(-1, nk + 1):
        live = sum(_aligned(g.type(r).nbytes) for r, (s, e) in plan.lifetimes.items()
                   if s <= t <= e and plan.locations.get(r, None) is not None
                   and plan.locations[r].region == "work")
        live += sum(s["bytes"] for s in scratch if 0 <= t < nk and kernel_names[t] == s["kernel"])
        if live > peak:
            peak, peak_at = live, t
    doc = {"arena_bytes": int(plan.work_bytes), "peak_bytes": int(peak),
           "peak_at": int(peak_at), "state_bytes": int(state.buffer.nbytes),
           "constants": len(plan.constants), "kernels": kernel_names,
           "buffers": buffers, "scratch": scratch, "copies": copies}
    if kidx is not None:
        k = fg.kernels[kidx]
        used = set(k.inputs) | set(k.outputs)
        doc["buffers"] = [b for b in buffers if b["id"] in used]
        doc["scratch"] = [s for s in scratch if s["kernel"] == k.name]
        doc["copies"] = [c for c in copies if c["from"] in used or c["to"] in used]
    return doc


def _aligned(n: int) -> int:
    return (max(n, 4) + _ALIGN - 1) // _ALIGN * _ALIGN


def target_doc() -> dict:
    from kcompile.codegen.target import host
    triple, cpu, features = host()
    return {"triple": triple, "cpu": cpu,
            "features": sorted(f[1:] for f in features.split(",") if f.startswith("+"))}


def split_llvm(llvm_ir: str) -> dict[str, str]:
    """LLVM module text cut into its function definitions, by name."""
    out, chunk, current, previous = {}, [], None, ""
    define_re = re.compile(r'^define [^@]*@"?([^"(]+)"?\(')
    for line in llvm_ir.splitlines():
        m = define_re.match(line)
        if m:       # with the attribute comment LLVM prints above an optimized function
            current, chunk = m.group(1), [previous] if previous.startswith("; Function") else []
        previous = line
        if current is None:
            continue
        chunk.append(line)
        if line == "}":
            out[current] = "\n".join(chunk)
            current = None
    return out


def split_assembly(asm: str) -> dict[str, str]:
    """Host assembly cut into functions: each one from the end of the previous function
    (so with its constant pool) to its `.size` directive."""
    out, chunk, current = {}, [], None
    type_re = re.compile(r'^\s*\.type\s+"?([^",]+)"?\s*,\s*@function')
    size_re = re.compile(r'^\s*\.size\s+"?([^",]+)"?\s*,')
    for line in asm.splitlines():
        if line.strip().startswith(".file") or line.strip().startswith(".ident"):
            continue
        chunk.append(line)
        m = type_re.match(line)
        if m:
            current = m.group(1)
            continue
        m = size_re.match(line)
        if m and current is not None and m.group(1) == current:
            while chunk and not chunk[0].strip():
                chunk.pop(0)
            out[current] = "\n".join(chunk)
            chunk, current = [], None
    return out
