"""A document as Graphviz source: values (clustered by layer or kernel), or the arena's buffers."""
from __future__ import annotations

from .stages import InspectError
from .text import _type_str


def _q(s) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_LEAF_COLORS = {"input": "#d4edda", "target": "#d1ecf1", "param": "#ffe8cc",
                "state": "#e2e3e5", "constant": "#f8f9fa"}


def render_dot(doc: dict) -> str:
    stage = doc["stage"]
    if stage in ("llvm", "asm"):
        raise InspectError(f"there is no DOT view of the {stage} stage; use --stage fused "
                           f"(the kernel graph) or --format text")
    title = f"{doc['model']} {doc['entry']} @ {stage}"
    lines = [f"digraph {_q(doc['entry'] + '.' + stage)} {{",
             f"  label={_q(title)}; labelloc=t; rankdir=TB; newrank=true;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="monospace", '
             'fontsize=10];',
             '  edge [fontname="monospace", fontsize=9];']
    if stage == "memory":
        return "\n".join(lines + _dot_memory(doc) + ["}"])
    gd = doc["graph"]
    by_id = {v["id"]: v for v in gd["values"]}

    def node(v):
        t = _type_str(v["shape"], v["dtype"])
        if v["op"] == "leaf":
            label = (f"{v['name']} = const\n{t}" if v["role"] == "constant"
                     else f"{v['binding']}\n{v['role']} {t}")
            return (f"  v{v['id']} [label={_q(label)}, shape=ellipse, "
                    f"fillcolor={_q(_LEAF_COLORS.get(v['role'], 'white'))}];")
        lits = [by_id[i]["name"] for i in v["inputs"] if i in by_id and by_id[i]["inline"]]
        label = f"{v['name']} = {v['op']}" + (f" ({', '.join(lits)})" if lits else "") + f"\n{t}"
        return f"  v{v['id']} [label={_q(label)}];"

    shown = [v for v in gd["values"] if not v["inline"]]
    leaves = [v for v in shown if v["op"] == "leaf"]
    lines += [node(v) for v in leaves]
    if stage == "fused":
        for k in doc["kernels"]:
            lines.append(f"  subgraph cluster_k{k['index']} {{")
            shape = ",".join(map(str, k["shape"]))
            lines.append(f"    label={_q(k['name'] + ': ' + k['kind'] + ' (' + shape + ')')}; "
                         f"style=filled; fillcolor=\"#eef3fb\"; color=\"#4a78c2\";")
            lines += ["  " + node(by_id[m]) for m in k["members"] if m in by_id]
            lines.append("  }")
    else:
        scopes: dict[str, list] = {}
        for v in shown:
            if v["op"] != "leaf":
                scopes.setdefault(v["scope"], []).append(v)
        for n, (scope, vs) in enumerate(scopes.items()):
            if scope:
                lines.append(f"  subgraph cluster_s{n} {{ label={_q(scope)}; color=\"#999999\";")
                lines += ["  " + node(v) for v in vs]
                lines.append("  }")
            else:
                lines += [node(v) for v in vs]
    for v in shown:
        for i in v["inputs"]:
            if i in by_id and not by_id[i]["inline"]:
                lines.append(f"  v{i} -> v{v['id']};")
    for n, (k, vid) in enumerate(gd["outputs"].items()):
        if vid in by_id:
            lines.append(f"  out{n} [label={_q(k)}, shape=plaintext, style=\"\"];")
            lines.append(f"  v{vid} -> out{n} [style=bold];")
    for u in gd["updates"]:
        lines.append(f"  v{u['value']} -> v{u['leaf']} [style=dashed, color=\"#c0392b\", "
                     f"constraint=false, label=\"update\"];")
    lines.append("}")
    return "\n".join(lines)


def _dot_memory(doc) -> list[str]:
    """Kernels as nodes, in order; a work buffer as edges from the kernel writing it (or the
    step's start) to each kernel reading it (or the step's end), labelled with its place."""
    m = doc["memory"]
    kernels = m["kernels"]
    index = {k: n for n, k in enumerate(kernels)}
    lines = [f"  k{n} [label={_q(k)}];" for n, k in enumerate(kernels)]
    lines.append('  start [label="step start", shape=plaintext, style=""];')
    lines.append('  end [label="step end", shape=plaintext, style=""];')
    for n in range(len(kernels) - 1):
        lines.append(f"  k{n} -> k{n + 1} [style=invis, weight=10];")
    for b in m["buffers"]:
        if b["region"] != "work" or b["start"] is None:
            continue
        src = f"k{index[b['kernel']]}" if b["kernel"] in index else "start"
        dsts = [f"k{index[r]}" for r in b["readers"] if r in index]
        if b["end"] is not None and b["end"] >= len(kernels):
            dsts.append("end")
        label = f"{b['name']} {_type_str(b['shape'], b['dtype'])}\n@{b['offset']} {b['bytes']} B"
        for n, dst in enumerate(dict.fromkeys(dsts)):
            if dst != src:
                lines.append(f"  {src} -> {dst} [label={_q(label if n == 0 else b['name'])}];")
    return lines
