"""Inspection: every stage of a model's compilation, from the traced layers to machine code.

    view = model.compiled_graph("train_step", stage="fused")
    print(view)              # jaxpr-like text
    view.to_json()           # stable, documented JSON (docs/inspect-json.md, JSON_SCHEMA)
    view.to_dot()            # Graphviz source

Stages, in pipeline order (`STAGES`):

  trace      the entry graph as traced from the layers, before any pass
  grad       after autodiff: a `grad/<weight>` output per trainable weight (train_step)
  update     with the optimizer's update rule appended (train_step)
  optimized  after simplify: the graph that is fused and compiled
  fused      the kernels and the ops inside each
  memory     the work arena: each buffer's offset, size and lifetime, the peak
  llvm       the LLVM IR of each kernel (optimized=True: after LLVM's O3 passes)
  asm        the host assembly of each kernel

The graphs are produced by the model's own tracing methods (the ones fit/evaluate/
predict use) and the compiler's passes, in the same order and with the same
arguments as the trainer and `NativeExecutable`, so what is shown is what runs.
Every view is a JSON-able document; the text and DOT forms are rendered from it,
so `CompiledView.from_json(v.to_json())` prints the same text.
"""
from __future__ import annotations

from kcompile.codegen.jit import function_texts
from kcompile.ir.printer import value_name as _letters

import json
import math
import re

import numpy as np

ENTRIES = ("train_step", "eval_step", "predict")
STAGES = ("trace", "grad", "update", "optimized", "fused", "memory", "llvm", "asm")
GRAPH_STAGES = ("trace", "grad", "update", "optimized")
KERNEL_STAGES = ("fused", "memory", "llvm", "asm")
TRAIN_ONLY_STAGES = ("grad", "update")
FORMAT = "kcompile-inspect"
VERSION = 1

_ROLE_ORDER = {"input": 0, "target": 1, "param": 2, "state": 3, "constant": 4}
_SHORT = {"float32": "f32", "int32": "i32"}
_ALIGN = 64


class InspectError(ValueError):
    """A request that cannot be served (unknown stage or entry, uncompiled model, ...)."""


# ======================================================================== public API
def compiled_graph(model, entry="train_step", stage="fused", batch_size=32, *, kernel=None,
                   optimized=False, nthreads=None) -> "CompiledView":
    """The compiled form of `entry` at `stage` (see STAGES).

    kernel: narrow a kernel stage (fused, memory, llvm, asm) to one kernel, by name
    ('k3_matmul'), number ('k3') or symbol ('train_step.k3_matmul').
    optimized: for the llvm stage, the IR after LLVM's passes.
    nthreads: the thread count to compile for (default: what the trainer would pick).
    """
    check_request(entry, stage)
    if optimized and stage != "llvm":
        raise InspectError("`optimized` applies to the llvm stage only (asm is always optimized)")
    if kernel is not None and stage not in KERNEL_STAGES:
        raise InspectError(f"there are no kernels before fusion: --kernel applies to the "
                           f"stages {', '.join(KERNEL_STAGES)}, not {stage!r}")
    session = Session(model, batch_size, nthreads)
    return CompiledView(session.document(entry, stage, kernel=kernel, optimized=optimized))


def check_request(entry, stage):
    if entry not in ENTRIES:
        raise InspectError(f"unknown entry {entry!r}; expected one of {', '.join(ENTRIES)}")
    if stage not in STAGES:
        raise InspectError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if stage in TRAIN_ONLY_STAGES and entry != "train_step":
        raise InspectError(f"stage {stage!r} exists only for the train_step entry "
                           f"({entry} is not differentiated)")


class CompiledView:
    """One entry point at one stage: text (`str`), `to_json()`, `to_dot()`."""

    def __init__(self, doc: dict):
        self.doc = doc

    # -- identity ------------------------------------------------------------------
    @property
    def entry(self) -> str:
        return self.doc["entry"]

    @property
    def stage(self) -> str:
        return self.doc["stage"]

    @property
    def kernel_names(self) -> list[str]:
        d = self.doc
        if "kernels" in d:
            return [k["name"] for k in d["kernels"]]
        if "functions" in d:
            return [f["kernel"] for f in d["functions"] if f["kernel"]]
        if "memory" in d:
            return list(d["memory"]["kernels"])
        return []

    def __repr__(self):
        return (f"<CompiledView {self.doc['model']!r} {self.entry} @ {self.stage}, "
                f"batch {self.doc['batch_size']}>")

    # -- forms -----------------------------------------------------------------------
    def __str__(self):
        return render_text(self.doc)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self.doc))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.doc, indent=indent, allow_nan=False)

    def to_dot(self) -> str:
        return render_dot(self.doc)

    @classmethod
    def from_json(cls, text) -> "CompiledView":
        doc = json.loads(text) if isinstance(text, (str, bytes)) else text
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InspectError(f"not a {FORMAT} document")
        if doc.get("version") != VERSION:
            raise InspectError(f"{FORMAT} version {doc.get('version')!r} is not supported "
                               f"(this kcompile reads version {VERSION})")
        return cls(doc)

    def _repr_pretty_(self, p, cycle):      # IPython
        p.text(str(self))


# ======================================================================== the pipeline
def _is_model(obj) -> bool:
    from .trainer import Trainer
    return isinstance(obj, Trainer) and hasattr(obj, "forward")


def _is_compiled(model) -> bool:
    return bool(getattr(model, "compiled", False)) and getattr(model, "optimizer", None) is not None \
        and getattr(model, "_loss_spec", None) is not None


class Session:
    """One model at one batch size, read from the compile pipeline the model keeps for
    that batch size (runtime/pipeline.py): the stages its executable is built from,
    so nothing runs again to be shown."""

    def __init__(self, model, batch_size=32, nthreads=None):
        if not _is_model(model):
            raise InspectError(f"expected a kcompile model, got {type(model).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise InspectError(f"batch size must be a positive integer, got {batch_size!r}")
        if nthreads is not None and (isinstance(nthreads, bool) or not isinstance(nthreads, int)
                                     or nthreads < 1):
            raise InspectError(f"nthreads must be a positive integer, got {nthreads!r}")
        self.model = model
        self.batch_size = int(batch_size)
        self._nthreads = nthreads
        self._pipeline = None
        try:
            model.input_specs
        except ValueError as e:
            raise InspectError(f"model {model.name!r} cannot be traced: {e}") from None
        model.build_for_data()
        self.state = model._ensure_state()

    @property
    def compiled(self) -> bool:
        return _is_compiled(self.model)

    def entries(self) -> list[str]:
        return list(ENTRIES) if self.compiled else ["predict"]

    def _require(self, entry):
        if entry != "predict" and not self.compiled:
            raise InspectError(f"model {self.model.name!r} is not compiled with an optimizer and "
                               f"a loss, so it has no {entry}; call model.compile(optimizer=..., "
                               f"loss=...) first, or inspect the 'predict' entry")

    def y_specs(self):
        """(per-sample shape, dtype) of each target: as a previous fit used, else the
        outputs' shapes (sparse losses: integer labels without the class axis)."""
        for key in self.model._pipelines:
            if key[0] == self.batch_size and key[2]:
                return list(key[2])
        g = self.model._trace_predict(self.batch_size)      # for the output shapes only
        out_types = [g.type(g.outputs[f"y{i}"]) for i in range(len(g.outputs))]
        specs = []
        loss_specs = self.model._per_output(self.model._loss_spec, len(out_types), "loss")
        for t, spec in zip(out_types, loss_specs):
            if spec is not None and _is_sparse_loss(spec):
                specs.append((tuple(t.shape[1:-1]), "int32"))
            else:
                specs.append((tuple(t.shape[1:]), "float32"))
        return specs

    def pipeline(self, entry=None):
        """The model's pipeline for this batch size (the one fit/evaluate/predict run),
        for the requested thread count (default: the one the model runs with)."""
        if entry is not None:
            self._require(entry)
        if self._pipeline is None:
            _, p = self.model._pipeline(self.batch_size, self.y_specs() if self.compiled else None)
            self._pipeline = p if self._nthreads is None else p.with_threads(self._nthreads)
        return self._pipeline

    # -- stages ------------------------------------------------------------------------
    def graph(self, entry, stage):
        p = self.pipeline(entry)
        if stage in ("trace", "grad", "update"):
            return getattr(p, stage)(entry)
        return p.optimized(entry)

    def optimized(self, entry):
        return self.pipeline(entry).optimized(entry)

    def fused(self, entry):
        return self.pipeline(entry).fused(entry)

    @property
    def nthreads(self) -> int:
        return self.pipeline().nthreads

    def plan(self, entry, nthreads=None):
        p = self.pipeline(entry)
        return (p if nthreads is None else p.with_threads(nthreads)).memory(entry).plan

    # -- documents ---------------------------------------------------------------------
    def document(self, entry, stage, kernel=None, optimized=False) -> dict:
        check_request(entry, stage)
        self._require(entry)
        doc = {"format": FORMAT, "version": VERSION, "model": str(self.model.name),
               "entry": entry, "stage": stage, "batch_size": self.batch_size,
               "nthreads": None, "kernel": None, "optimized": bool(optimized),
               "stats": {}, "notes": []}
        if stage in GRAPH_STAGES:
            g = self.graph(entry, stage)
            doc["graph"], _ = graph_doc(g)
            doc["stats"] = graph_stats(g)
        else:
            fg = self.fused(entry)
            kidx = _find_kernel(fg, entry, kernel) if kernel is not None else None
            if kidx is not None:
                doc["kernel"] = fg.kernels[kidx].name
            doc["stats"] = {**graph_stats(fg.graph), **kernel_stats(fg)}
            if stage == "fused":
                doc["graph"], doc["kernels"] = fused_doc(fg, kidx)
            elif stage == "memory":
                doc["nthreads"] = self.nthreads
                doc["memory"] = memory_doc(fg, self.plan(entry), self.state, kidx, self.nthreads)
                doc["stats"]["arena_bytes"] = doc["memory"]["arena_bytes"]
            else:
                doc["nthreads"] = self.nthreads
                doc["target"] = target_doc()
                doc["functions"] = self._functions(entry, stage, optimized, kidx)
        return doc

    def _functions(self, entry, stage, optimized, kidx):
        fg = self.fused(entry)
        kernels = [(n, k) for n, k in enumerate(fg.kernels) if k.kind != "view"]
        if kidx is not None:
            kernels = [(n, k) for n, k in kernels if n == kidx]
            if not kernels:
                raise InspectError(f"kernel {fg.kernels[kidx].name} is a view (a reshape that "
                                   f"aliases its operand): it has no code")
        p = self.pipeline(entry)
        if stage == "llvm" and not optimized:
            texts = {f.name: str(f) for f in p.llvm().functions}
        elif stage == "llvm":
            texts = function_texts(p.optimized_llvm_ir())
        else:
            texts = split_assembly(p.assembly())
        # the program's module holds every entry: a kernel whose body another kernel
        # already has (the forward pass of train_step and predict) calls that function
        called = p.llvm().kernel_symbols
        out = []
        for n, k in kernels:
            sym = called.get(f"{entry}.{k.name}")
            sym = sym if sym in texts else _kernel_symbol(texts, entry, k.name)
            text = texts.get(sym, "") if sym else ""
            if not sym:         # emitted inline in the entry (a scan): its body's kernels
                prefix = f"{entry}.{k.name}."
                body = dict.fromkeys(s for key, s in called.items() if key.startswith(prefix))
                text = "\n\n".join(texts[s] for s in body if s in texts)
            out.append({"kernel": k.name, "symbol": sym or f"{entry}.{k.name}", "kind": k.kind,
                        "shape": list(k.shape), "scope": k.scope, "text": text})
        if kidx is None:
            out.append({"kernel": None, "symbol": entry, "kind": "entry", "shape": [],
                        "scope": "", "text": texts.get(entry, "")})
        return out


def _kernel_symbol(texts, entry, kname):
    for cand in (f"{entry}.{kname}", kname):
        if cand in texts:
            return cand
    for name in texts:
        if name.endswith("." + kname):
            return name
    return None


def _is_sparse_loss(spec) -> bool:
    try:
        from .data import _wants_int_labels
        from .losses import get
        if _wants_int_labels(get(spec)):
            return True
    except Exception:
        pass
    name = spec if isinstance(spec, str) else getattr(spec, "__name__", type(spec).__name__)
    return "sparse" in str(name).lower()


def _find_kernel(fg, entry, name) -> int:
    names = [k.name for k in fg.kernels]
    want = str(name)
    if want.startswith(entry + "."):
        want = want[len(entry) + 1:]
    for n, k in enumerate(names):
        if want == k or want == k.split("_", 1)[0]:
            return n
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise InspectError(f"no kernel {name!r} in {entry}; its kernels are {shown}")


# ======================================================================== documents
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
    """The estimate of ir/cost.py for one value: 2*M*N*K per matmul, the input size per
    reduction, one per output element otherwise; views and leaves cost nothing, and a
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
    if n.op == "matmul":
        a = g.type(n.inputs[0]).shape
        k = a[-2] if n.params.get("transpose_a") else a[-1]
        return 2.0 * n.type.size * k
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


# ======================================================================== text
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


# ======================================================================== DOT
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


# ======================================================================== JSON schema
def _obj(props: dict, required=None, extra=False) -> dict:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required,
            "additionalProperties": extra}


_INT = {"type": "integer", "minimum": 0}
_SHAPE = {"type": "array", "items": _INT}
_DTYPE = {"enum": ["float32", "int32"]}
_KIND = {"type": "string", "minLength": 1}      # documented values; new kinds may appear

JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kcompile.dev/schemas/inspect-v1.json",
    "title": "kcompile inspect document, version 1",
    "$defs": {
        "value": _obj({
            "id": _INT, "name": {"type": "string"}, "op": {"type": "string"},
            "shape": _SHAPE, "dtype": _DTYPE, "inputs": {"type": "array", "items": _INT},
            "attrs": {"type": "object", "additionalProperties": {
                "anyOf": [{"$ref": "#/$defs/body"}, {"not": {"type": "object"}}]}},
            "scope": {"type": "string"},
            "role": {"enum": [None, "param", "input", "target", "state", "constant"]},
            "binding": {"type": ["string", "null"]}, "value": {}, "inline": {"type": "boolean"}}),
        "body": _obj({
            "graph": {"$ref": "#/$defs/graph"}, "n_consts": _INT, "n_carry": _INT,
            "n_xs": _INT, "n_ys": _INT, "key": {"type": "string"}},
            required=["graph"]),
        "graph": _obj({
            "values": {"type": "array", "items": {"$ref": "#/$defs/value"}},
            "outputs": {"type": "object", "additionalProperties": _INT},
            "updates": {"type": "array", "items": _obj({"leaf": _INT, "value": _INT})},
            "gradients": {"type": "object", "additionalProperties": _INT}}),
        "kernel": _obj({
            "name": {"type": "string"}, "index": _INT,
            "kind": _KIND, "shape": _SHAPE,
            "scope": {"type": "string"}, "members": {"type": "array", "items": _INT},
            "inputs": {"type": "array", "items": _INT}, "outputs": {"type": "array", "items": _INT},
            "flops": {"type": "number", "minimum": 0}, "bytes": _INT}),
        "buffer": _obj({
            "id": _INT, "name": {"type": "string"}, "shape": _SHAPE, "dtype": _DTYPE,
            "region": _KIND, "offset": _INT, "bytes": _INT,
            "start": {"type": ["integer", "null"], "minimum": -1},
            "end": {"type": ["integer", "null"], "minimum": -1},
            "what": {"type": "string"}, "scope": {"type": "string"},
            "kernel": {"type": ["string", "null"]},
            "readers": {"type": "array", "items": {"type": "string"}},
            "alias_of": {"type": ["integer", "null"]},
            "in_place": {"type": "boolean"}}),
        "memory": _obj({
            "arena_bytes": _INT, "peak_bytes": _INT, "peak_at": {"type": "integer", "minimum": -1},
            "state_bytes": _INT, "constants": _INT,
            "kernels": {"type": "array", "items": {"type": "string"}},
            "buffers": {"type": "array", "items": {"$ref": "#/$defs/buffer"}},
            "scratch": {"type": "array", "items": _obj({"kernel": {"type": "string"},
                                                        "offset": _INT, "bytes": _INT})},
            "copies": {"type": "array", "items": _obj({"from": _INT, "to": _INT, "bytes": _INT,
                                                       "leaf": {"type": "string"}})}}),
        "function": _obj({
            "kernel": {"type": ["string", "null"]}, "symbol": {"type": "string"},
            "kind": _KIND, "shape": _SHAPE,
            "scope": {"type": "string"}, "text": {"type": "string"}}),
        "target": _obj({"triple": {"type": "string"}, "cpu": {"type": "string"},
                        "features": {"type": "array", "items": {"type": "string"}}}),
        "stats": _obj({
            "values": _INT, "ops": _INT, "flops": {"type": "number", "minimum": 0},
            "kernels": _INT, "views": _INT, "max_ops_per_kernel": _INT, "arena_bytes": _INT},
            required=["values", "ops", "flops"]),
    },
    "type": "object",
    "properties": {
        "format": {"const": FORMAT}, "version": {"const": VERSION},
        "model": {"type": "string"}, "entry": {"enum": list(ENTRIES)},
        "stage": {"enum": list(STAGES)}, "batch_size": {"type": "integer", "minimum": 1},
        "nthreads": {"type": ["integer", "null"], "minimum": 1},
        "kernel": {"type": ["string", "null"]}, "optimized": {"type": "boolean"},
        "stats": {"$ref": "#/$defs/stats"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "graph": {"$ref": "#/$defs/graph"},
        "kernels": {"type": "array", "items": {"$ref": "#/$defs/kernel"}},
        "memory": {"$ref": "#/$defs/memory"},
        "functions": {"type": "array", "items": {"$ref": "#/$defs/function"}},
        "target": {"$ref": "#/$defs/target"},
    },
    "required": ["format", "version", "model", "entry", "stage", "batch_size", "nthreads",
                 "kernel", "optimized", "stats", "notes"],
    "additionalProperties": False,
    "allOf": [
        {"if": {"properties": {"stage": {"enum": list(GRAPH_STAGES)}}},
         "then": {"required": ["graph"]}},
        {"if": {"properties": {"stage": {"const": "fused"}}},
         "then": {"required": ["graph", "kernels"]}},
        {"if": {"properties": {"stage": {"const": "memory"}}},
         "then": {"required": ["memory"]}},
        {"if": {"properties": {"stage": {"enum": ["llvm", "asm"]}}},
         "then": {"required": ["functions", "target"]}},
    ],
}


# ======================================================================== profiling
_PROBE = None
_KEEP = []          # JIT-loaded probe code stays alive for the process


def _cache_levels() -> list[tuple[str, int]]:
    """(name, bytes) of this CPU's data caches, smallest first (Linux sysfs; else typical)."""
    import glob
    levels = {}
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            kind = open(f"{d}/type").read().strip()
            if kind not in ("Data", "Unified"):
                continue
            level = int(open(f"{d}/level").read().strip())
            size = open(f"{d}/size").read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
            levels[level] = int(size.rstrip("KMG")) * mult
        except (OSError, ValueError):
            continue
    if not levels:
        levels = {1: 32 << 10, 2: 1 << 20}
    return [(f"L{n}", levels[n]) for n in sorted(levels)]


def _probe_module(width: int):
    """Two probes, built with llvmlite: `kc_peak(out, n)`, 12 independent chains of
    vector FMAs; `kc_read(buf, nvec, reps, out)`, a read stream over nvec vectors."""
    from llvmlite import ir as llir
    from kcompile.codegen.irutil import F32, I64, PTR, i64, loop
    module = llir.Module(name="kc_probe")
    vt = llir.VectorType(F32, width)
    void = llir.VoidType()

    fn = llir.Function(module, llir.FunctionType(void, [PTR, I64]), name="kc_peak")
    out, n = fn.args
    b = llir.IRBuilder(fn.append_basic_block("entry"))
    m, c = llir.Constant(vt, [0.75] * width), llir.Constant(vt, [0.25] * width)
    init = [llir.Constant(vt, [1.0 + j / 16] * width) for j in range(12)]
    fma = llir.Function(module, llir.FunctionType(vt, [vt, vt, vt]), name=f"llvm.fma.v{width}f32")
    accs = loop(b, n, lambda b, i, accs: [b.call(fma, [a, m, c]) for a in accs], init=init)
    total = accs[0]
    for a in accs[1:]:
        total = b.fadd(total, a)
    b.store(total, out, align=4)
    b.ret_void()

    fn = llir.Function(module, llir.FunctionType(void, [PTR, I64, I64, PTR]), name="kc_read")
    buf, nvec, reps, out = fn.args
    b = llir.IRBuilder(fn.append_basic_block("entry"))
    zero = [llir.Constant(vt, [0.0] * width)] * 8

    def inner(b, i, accs):
        base = b.mul(i, i64(8))
        return [b.fadd(a, b.load(b.gep(buf, [b.add(base, i64(j))], source_etype=vt), typ=vt,
                                 align=64)) for j, a in enumerate(accs)]
    accs = loop(b, reps, lambda b, r, accs: loop(b, b.udiv(nvec, i64(8)), inner, init=accs,
                                                 name="v"), init=zero, name="r")
    total = accs[0]
    for a in accs[1:]:
        total = b.fadd(total, a)
    b.store(total, out, align=4)
    b.ret_void()
    return str(module)


def machine_peak() -> dict:
    """This core's peak: single-precision FMA throughput (12 independent chains of
    full-width vector FMAs) and the read bandwidth of each cache level and of memory,
    measured once per process. Falls back to stated assumptions (100 GFLOP/s per core,
    10 GB/s) if a probe fails."""
    global _PROBE
    if _PROBE is not None:
        return json.loads(json.dumps(_PROBE))
    import ctypes
    import time
    from kcompile.codegen import jit
    from kcompile.codegen.target import host
    from kcompile.runtime.arena import aligned_bytes
    _, cpu, features = host()
    feats = {f[1:] for f in features.split(",") if f.startswith("+")}
    width = 16 if "avx512f" in feats else 8 if "avx" in feats else 4
    peak = {"cpu": cpu, "vector_width": width, "levels": []}

    def best_of(call, n=5):
        t_best = math.inf
        for _ in range(n):
            t = time.perf_counter()
            call()
            t_best = min(t_best, time.perf_counter() - t)
        return t_best
    try:
        code = jit.build_object(_probe_module(width))
        loaded = jit.load_object(code.obj, ["kc_peak", "kc_read"], name="kc_probe")
        _KEEP.append(loaded)
        fma = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(loaded.addresses["kc_peak"])
        read = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                ctypes.c_void_p)(loaded.addresses["kc_read"])
        out = aligned_bytes(4 * width)
        iters = 200_000
        fma(out.ctypes.data, 1000)
        t = best_of(lambda: fma(out.ctypes.data, iters))
        peak["gflops"] = 2.0 * width * 12 * iters / t / 1e9
        peak["gflops_source"] = f"measured: 12 chains of {width}-wide FMAs"
        levels = _cache_levels()
        sizes = [(name, size // 2) for name, size in levels] + \
            [("DRAM", max(64 << 20, 4 * levels[-1][1]))]
        vec = 4 * width
        for name, size in sizes:
            nvec = max(8, size // vec // 8 * 8)
            buf = aligned_bytes(nvec * vec)
            buf.view(np.float32)[:] = 1.0
            reps = max(1, (32 << 20) // (nvec * vec))
            read(buf.ctypes.data, nvec, 1, out.ctypes.data)
            t = best_of(lambda: read(buf.ctypes.data, nvec, reps, out.ctypes.data), 3)
            peak["levels"].append({"name": name, "bytes": int(size * 2) if name != "DRAM"
                                   else None, "gbps": nvec * vec * reps / t / 1e9})
        peak["gbps_source"] = "measured: vector read streams per cache level"
    except Exception as e:      # pragma: no cover - a probe failure is reported, not fatal
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        peak.setdefault("gflops", 100.0)
        peak.setdefault("gflops_source", f"assumed (probe failed: {first})")
        if not peak["levels"]:
            peak["levels"] = [{"name": "DRAM", "bytes": None, "gbps": 10.0}]
        peak["gbps_source"] = f"assumed (probe failed: {first})"
    _PROBE = peak
    return json.loads(json.dumps(peak))


def _level_for(peak, nbytes):
    for lv in peak["levels"]:
        if lv["bytes"] is None or nbytes <= lv["bytes"]:
            return lv
    return peak["levels"][-1]


def _feed_value(g, v, rng):
    """A plausible batch for a profile run: ids within their table's bounds, one-hot
    targets, ones for the mask and sample weights, normal noise otherwise."""
    n = g.nodes[v]
    t = n.type
    bound = getattr(g, "input_bounds", {}).get(n.name)
    if bound is not None:       # ids indexing a table (Embedding): must be in [0, bound)
        return rng.integers(0, max(int(bound), 1), t.shape).astype(
            np.int32 if t.dtype == "int32" else np.float32)
    if n.name in ("mask", "sample_weight"):
        return np.ones(t.shape, np.float32)
    if t.dtype == "int32":
        return np.zeros(t.shape, np.int32)
    if n.role == "target" and t.rank >= 1 and t.shape[-1] > 1:
        idx = rng.integers(0, t.shape[-1], t.shape[:-1])
        return np.eye(t.shape[-1], dtype=np.float32)[idx]
    if n.role == "target":
        return rng.integers(0, 2, t.shape).astype(np.float32)
    return rng.standard_normal(t.shape).astype(np.float32)


def profile(model, entry=None, batch_size=32, steps=100, trials=5) -> "ProfileReport":
    """Time each kernel of an entry on one thread, with the arena prepared by one real step.

    Each kernel is compiled a second time as an entry of its own (the codegen's own
    `build_module`, so arguments and addresses are exactly the step's), and called
    from a native loop of at least `steps` repetitions; the best of `trials` such
    runs is its time. Data are warm in cache. The model's own state is not touched
    (the step runs on a copy)."""
    import ctypes
    import dataclasses
    import time
    from llvmlite import ir as llir
    from kcompile.codegen import jit
    from kcompile.codegen.irutil import I64, PTR, i64, loop
    from kcompile.codegen.module import Entry, build_module
    from kcompile.ir.passes.fuse import FusedGraph
    from kcompile.runtime.arena import aligned_bytes, view

    session = Session(model, batch_size, nthreads=1)
    entry = entry or ("train_step" if session.compiled else "predict")
    check_request(entry, "fused")
    session._require(entry)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InspectError(f"steps must be a positive integer, got {steps!r}")
    fg, plan = session.fused(entry), session.plan(entry, 1)
    g = fg.graph
    alone = dataclasses.replace(plan, copies=[])      # a kernel alone copies nothing back
    singles = {n: Entry(f"kc_prof_k{n}", FusedGraph(g, [k]), alone)
               for n, k in enumerate(fg.kernels) if k.kind != "view"}
    module = build_module([Entry(entry, fg, plan), *singles.values()], 1)
    void = llir.VoidType()
    loops = {}
    for n, e in [(None, Entry(entry, fg, plan)), *singles.items()]:
        target = module.get_global(e.name)
        w = llir.Function(module, llir.FunctionType(void, [PTR, PTR, PTR, I64]),
                          name=f"kc_prof.loop.{e.name}")
        state, work, sync, reps = w.args
        b = llir.IRBuilder(w.append_basic_block("entry"))
        loop(b, reps, lambda b, i, _, t=target: b.call(t, [state, work, i64(0), sync]) and [])
        b.ret_void()
        loops[n] = w.name
    code = jit.build_object(str(module))
    loaded = jit.load_object(code.obj, list(loops.values()), name=f"kc_profile_{entry}")
    # Buffers: a copy of the model's state, a fresh arena with a random batch in it.
    st = aligned_bytes(session.state.buffer.nbytes)
    st[:] = session.state.buffer
    wk = aligned_bytes(max(plan.work_bytes, 64))
    syncbuf = aligned_bytes(128)
    rng = np.random.default_rng(0)
    for v in g.leaves():
        if g.nodes[v].role in ("input", "target"):
            loc = plan.locations[v]
            np.copyto(view(wk if loc.region == "work" else st, loc.offset, g.type(v)),
                      _feed_value(g, v, rng), casting="unsafe")
    loop_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                              ctypes.c_int64)
    sa, wa, ya = st.ctypes.data, wk.ctypes.data, syncbuf.ctypes.data
    step = loop_t(loaded.addresses[loops[None]])
    step(sa, wa, ya, 1)                         # the arena as one real step leaves it

    min_trial = 2e-4          # seconds: a timed call long enough to hide the ctypes call

    def best(call):
        call(1)
        reps = steps
        while True:
            t = time.perf_counter()
            call(reps)
            t = time.perf_counter() - t
            if t >= min_trial or reps >= 1 << 26:
                break
            reps = max(reps * 2, int(reps * min_trial * 1.2 / max(t, 1e-9)))
        t_best = t
        for _ in range(trials - 1):
            t = time.perf_counter()
            call(reps)
            t_best = min(t_best, time.perf_counter() - t)
        return t_best / reps, reps

    step_time, step_reps = best(lambda r: step(sa, wa, ya, r))
    peak = machine_peak()
    rows = []
    for n, k in enumerate(fg.kernels):
        if n not in singles:
            continue
        fn = loop_t(loaded.addresses[loops[n]])
        t, reps = best(lambda r, fn=fn: fn(sa, wa, ya, r))
        fl, by = kernel_flops(g, k), _kernel_bytes(g, k)
        level = _level_for(peak, by)
        ai = fl / by if by else None
        attainable = min(peak["gflops"], ai * level["gbps"]) if ai is not None else peak["gflops"]
        gflops = fl / t / 1e9 if t > 0 else 0.0
        rows.append({"kernel": k.name, "index": n, "kind": k.kind, "scope": k.scope or "",
                     "ops": len(k.members), "seconds": t, "repetitions": reps,
                     "share": t / step_time if step_time else 0.0,
                     "flops": fl, "bytes": by, "intensity": ai, "level": level["name"],
                     "gflops": gflops, "peak_fraction": gflops / peak["gflops"],
                     "roof_fraction": gflops / attainable if attainable else 0.0,
                     "bound": "compute" if ai is None or ai * level["gbps"] >= peak["gflops"]
                     else "memory"})
    return ProfileReport({"model": str(model.name), "entry": entry, "batch_size": session.batch_size,
                          "nthreads": 1, "steps": steps, "trials": trials,
                          "step_seconds": step_time, "step_repetitions": step_reps, "step_flops": graph_stats(g)["flops"],
                          "machine": peak, "kernels": rows})


class ProfileReport:
    """Per-kernel times of one entry: `str()` is the roofline table, `to_dict()` the data."""

    def __init__(self, data: dict):
        self.data = data

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self.data))

    def to_json(self, indent=1) -> str:
        return json.dumps(self.data, indent=indent, default=str)

    def rows(self, sort="time"):
        rows = list(self.data["kernels"])
        if sort == "time":
            rows.sort(key=lambda r: -r["seconds"])
        return rows

    def render(self, sort="time", top=None) -> str:
        d, m = self.data, self.data["machine"]
        ksum = sum(r["seconds"] for r in d["kernels"])
        st = d["step_seconds"]
        bw = ", ".join(f"{lv['name']} {lv['gbps']:.0f}" for lv in m["levels"])
        lines = [
            f"profile: model {d['model']!r} {d['entry']}, batch {d['batch_size']}, 1 thread; "
            f"each kernel called alone in a native loop of at least {d['steps']} repetitions "
            f"(more for short kernels), best of {d['trials']}; data warm in cache",
            f"machine: {m['cpu']}, peak {m['gflops']:.1f} GFLOP/s per core "
            f"({m['gflops_source']}); read bandwidth GB/s: {bw} ({m['gbps_source']})",
            f"step: {st * 1e6:.2f} us, {_human(d['step_flops'], 'FLOP')}, "
            f"{d['step_flops'] / st / 1e9 if st else 0:.2f} GFLOP/s; kernels alone "
            f"{ksum * 1e6:.2f} us ({100 * ksum / st if st else 0:.0f}% of the step; the rest is "
            f"copies back into the state and call overhead)",
            "FLOP: ir/cost.py's estimate; bytes: each kernel input read once and output written "
            "once; level: the smallest cache holding those bytes; %roof: of min(peak, FLOP/B x "
            "that level's bandwidth)", ""]
        head = ("kernel", "kind", "layer", "ops", "time us", "step %", "FLOP", "bytes", "FLOP/B",
                "level", "GFLOP/s", "%peak", "%roof", "bound")
        table = [head]
        rows = self.rows(sort)
        shown = rows[:top] if top else rows
        for r in shown:
            table.append((r["kernel"], r["kind"], r["scope"] or "-", str(r["ops"]),
                          f"{r['seconds'] * 1e6:.3f}", f"{100 * r['share']:.1f}",
                          _human(r["flops"]), _human(r["bytes"]),
                          "-" if r["intensity"] is None else f"{r['intensity']:.2f}",
                          r["level"], f"{r['gflops']:.2f}", f"{100 * r['peak_fraction']:.1f}",
                          f"{100 * r['roof_fraction']:.1f}", r["bound"]))
        widths = [max(len(t[i]) for t in table) for i in range(len(head))]
        left = {0, 1, 2, 9, 13}
        for t in table:
            lines.append("  " + "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(t, widths))).rstrip())
        if top and len(rows) > top:
            rest = rows[top:]
            lines.append(f"  ... {len(rest)} more kernels, {sum(r['seconds'] for r in rest) * 1e6:.3f}"
                         f" us together")
        return "\n".join(lines)

    def __str__(self):
        return self.render()
