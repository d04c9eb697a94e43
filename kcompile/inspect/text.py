"""A document as text: jaxpr-like graphs, kernels with their ops, the memory table, code."""
from __future__ import annotations

import math

import numpy as np

_SHORT = {"float32": "f32", "int32": "i32"}


def _type_str(shape, dtype) -> str:
    return f"{_SHORT.get(dtype, dtype)}[{','.join(map(str, shape))}]"


def _is_body(v) -> bool:
    return isinstance(v, dict) and "graph" in v


def _attr_str(v) -> str:
    if _is_body(v):
        return f"Body#{v.get('key', '')[:10]}"
    if isinstance(v, list):
        return "(" + ",".join(_attr_str(x) for x in v) + ")"
    return str(v)


def _const_str(val) -> str:
    if val["value"] is None:
        return f"<{math.prod(val['shape'])} values>"
    arr = np.asarray(_from_json_nums(val["value"]),
                     dtype=np.int32 if val["dtype"] == "int32" else np.float32)
    return np.array2string(arr, precision=6, threshold=6, separator=" ").replace("\n", "")


def _from_json_nums(x):
    if isinstance(x, list):
        return [_from_json_nums(y) for y in x]
    if isinstance(x, str):
        return float(x)
    return x


def _human(x: float, unit="") -> str:
    for scale, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {p}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def _bytes(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _with_scope(line: str, scope: str, width: int = 64) -> str:
    if not scope:
        return line
    return f"{line:<{width}}  # {scope}"


class _Names:
    def __init__(self, values):
        self.by_id = {v["id"]: v for v in values}

    def __call__(self, vid) -> str:
        v = self.by_id.get(vid)
        return v["name"] if v is not None else f"%{vid}"

    def typed(self, vid) -> str:
        v = self.by_id.get(vid)
        if v is None:
            return f"%{vid}"
        return f"{v['name']}:{_type_str(v['shape'], v['dtype'])}"


def _op_line(v, name) -> str:
    attrs = " ".join(f"{k}={_attr_str(a)}" for k, a in v["attrs"].items())
    args = " ".join(name(i) for i in v["inputs"])
    return (f"{v['name']}:{_type_str(v['shape'], v['dtype'])} = {v['op']}"
            f"{'[' + attrs + ']' if attrs else ''} {args}").rstrip()


def _body_lines(v, indent: str) -> list[str]:
    """The sub-graphs among an op's attributes (a scan's body), nested as in jaxpr."""
    out = []
    for key, a in v["attrs"].items():
        if _is_body(a):
            inner = _graph_block({"graph": a["graph"], "stage": "trace"}).splitlines()
            out.append(f"{indent}{key} = {inner[0]}")
            out += [indent + "  " + line for line in inner[1:]]
    return out


def _leaf_line(v) -> str:
    lhs = f"{v['name']}:{_type_str(v['shape'], v['dtype'])}"
    if v["role"] == "constant":
        return f"{lhs} = const {_const_str(v)}"
    return f"{lhs} = {v['role']} {v['binding']!r}"


def _header(doc) -> str:
    s = doc["stats"]
    facts = [f"batch {doc['batch_size']}"]
    if doc.get("nthreads"):
        facts.append(f"{doc['nthreads']} thread{'s' if doc['nthreads'] > 1 else ''}")
    facts.append(f"{s['values']} values, {s['ops']} ops, {_human(s['flops'], 'FLOP')}")
    if "kernels" in s:
        facts.append(f"{s['kernels']} kernels" + (f" (+{s['views']} views)" if s["views"] else ""))
    if doc.get("kernel"):
        facts.append(f"kernel {doc['kernel']}")
    stage = doc["stage"] + (" (after LLVM's passes)" if doc.get("optimized") else "")
    return f"model {doc['model']!r}  {doc['entry']} @ {stage}  ({'; '.join(facts)})"


def _graph_tail(doc, name, lines):
    gd = doc["graph"]
    if gd["outputs"]:
        lines.append("  in (")
        lines += [f"    {k} = {name(v)}" for k, v in gd["outputs"].items()]
        lines.append("  )")
    if gd["gradients"]:
        lines.append("  grads (")
        lines += [f"    {k} = {name(v)}" for k, v in gd["gradients"].items()]
        lines.append("  )")
    if gd["updates"]:
        lines.append("  updates (")
        lines += [f"    {name.by_id[u['leaf']]['binding']} <- {name(u['value'])}"
                  for u in gd["updates"]]
        lines.append("  )")
    lines.append("}")


def render_text(doc: dict) -> str:
    stage = doc["stage"]
    head = _header(doc)
    notes = [f"# note: {n}" for n in doc.get("notes", [])]
    if stage in ("llvm", "asm"):
        return "\n".join([_render_code(doc, head)] + notes)
    lines = [f"# {head}", *notes]
    if stage == "memory":
        return "\n".join(lines + _render_memory(doc))
    return "\n".join(lines + [_graph_block(doc)])


def _graph_block(doc) -> str:
    stage = doc["stage"]
    gd = doc["graph"]
    name = _Names(gd["values"])
    lines = ["{ lambda"]
    for v in gd["values"]:
        if v["op"] == "leaf" and not v["inline"]:
            lines.append("    " + _leaf_line(v))
    lines.append("  let")
    if stage == "fused":
        for k in doc["kernels"]:
            reads = " ".join(name.typed(i) for i in k["inputs"]) or "-"
            writes = " ".join(name(o) for o in k["outputs"]) or "-"
            head_line = (f"    {k['name']}: {k['kind']} over ({','.join(map(str, k['shape']))})"
                         f"  reads {reads}  writes {writes}")
            lines.append(_with_scope(head_line, k["scope"]))
            for m in k["members"]:
                v = name.by_id.get(m)
                if v is not None:
                    lines.append("        " + _op_line(v, name))
                    lines += _body_lines(v, "          ")
    else:
        for v in gd["values"]:
            if v["op"] != "leaf":
                lines.append(_with_scope("    " + _op_line(v, name), v["scope"]))
                lines += _body_lines(v, "      ")
    _graph_tail(doc, name, lines)
    return "\n".join(lines)


def _life(doc, t) -> str:
    if t is None:
        return "-"
    kernels = doc["memory"]["kernels"]
    if t < 0:
        return "start"
    if t >= len(kernels):
        return "end"
    return kernels[t].split("_", 1)[0]


def _render_memory(doc) -> list[str]:
    m = doc["memory"]
    kernels = m["kernels"]
    at = m["peak_at"]
    where = "the step's start" if at < 0 else ("its end" if at >= len(kernels) else kernels[at])
    pct = 100.0 * m["peak_bytes"] / m["arena_bytes"] if m["arena_bytes"] else 0.0
    lines = [f"work arena {m['arena_bytes']} B ({_bytes(m['arena_bytes'])}); peak live "
             f"{m['peak_bytes']} B at {where} ({pct:.0f}% of the arena)",
             f"state {m['state_bytes']} B ({_bytes(m['state_bytes'])}): params, non-trainable "
             f"state and optimizer slots; {m['constants']} constants in the module",
             "lifetimes are kernel spans: start = before the first kernel, end = after the last"]
    rows = [("buffer", "type", "region", "offset", "bytes", "live", "what")]
    names = {b["id"]: b["name"] for b in m["buffers"]}
    for b in m["buffers"]:
        what = b["what"]
        if b["alias_of"] is not None:
            what += f" (view of {names.get(b['alias_of'], '%' + str(b['alias_of']))})"
        if b["in_place"]:
            what += " (update, in place)"
        if b["scope"]:
            what += f"  # {b['scope']}"
        live = "-" if b["start"] is None else f"{_life(doc, b['start'])}..{_life(doc, b['end'])}"
        rows.append((b["name"], _type_str(b["shape"], b["dtype"]), b["region"], str(b["offset"]),
                     str(b["bytes"]), live, what))
    for s in m["scratch"]:
        short = s["kernel"].split("_", 1)[0]
        rows.append((f"({short} scratch)", "-", "work", str(s["offset"]), str(s["bytes"]),
                     f"{short}..{short}", f"scratch of {s['kernel']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 r[3].rjust(widths[3]), r[4].rjust(widths[4]), r[5].ljust(widths[5]), r[6]]
        lines.append("  " + "  ".join(cells).rstrip())
    if m["copies"]:
        lines.append("copied back into the state after the last kernel (not updated in place):")
        for c in m["copies"]:
            lines.append(f"  {names.get(c['from'], '%' + str(c['from']))} -> {c['leaf']} "
                         f"({c['bytes']} B)")
    return lines


def _render_code(doc, head) -> str:
    c = ";" if doc["stage"] == "llvm" else "#"
    t = doc["target"]
    lines = [f"{c} {head}", f"{c} target {t['triple']}, cpu {t['cpu']}"]
    for f in doc["functions"]:
        lines.append("")
        if f["kernel"] is None:
            lines.append(f"{c} entry point {f['symbol']}: calls the kernels in order")
        else:
            shape = ",".join(map(str, f["shape"]))
            lines.append(f"{c} kernel {f['kernel']}: {f['kind']} over ({shape})"
                         + (f"   # {f['scope']}" if f["scope"] else ""))
        lines.append(f["text"].rstrip() if f["text"] else
                     f"{c} (no function of its own: emitted inline in the entry point)")
    return "\n".join(lines)
