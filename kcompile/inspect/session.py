"""Session: one model at one batch size, its documents read from the model's compile pipeline."""
from __future__ import annotations

import re

import numpy as np

from .documents import (fused_doc, graph_doc, graph_stats, kernel_stats, memory_doc,
                        split_assembly, split_llvm, target_doc)
from .stages import ENTRIES, FORMAT, GRAPH_STAGES, VERSION, InspectError, check_request


def _is_model(obj) -> bool:
    from ..trainer import Trainer
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
        model._ensure_state()

    @property
    def state(self):
        # Read each time: tracing a step can remake the model's State (a metric's
        # variables appear when its update_state is first traced), and the memory plan
        # of a compiled step addresses the State it was traced with.
        return self.model._ensure_state()

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
                # the model's State now: tracing may have remade it (a compiled metric's variables)
                doc["memory"] = memory_doc(fg, self.plan(entry), self.state, kidx,
                                           self.nthreads)
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
        if stage == "llvm":
            texts = split_llvm(p.optimized_llvm_ir() if optimized else p.llvm_ir())
        else:
            texts = split_assembly(p.assembly())
        # the program's module holds every entry: a kernel whose body another kernel
        # already has (the forward pass of train_step and predict) calls that function
        called = p.llvm().kernel_symbols
        out = []
        for n, k in kernels:
            sym = called.get(f"{entry}.{k.name}")
            sym = sym if sym in texts else _kernel_symbol(texts, entry, k.name)
            text = _with_callees(texts, texts.get(sym, "")) if sym else ""
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


def _with_callees(texts, text):
    """A kernel's code followed by the functions of `texts` it refers to (a group
    kernel's stages, codegen/lower/group.py: called in IR, by address in JIT assembly)."""
    at = {}
    for name in texts:
        m = re.search(r'(?<![\w.])"?' + re.escape(name) + r'"?(?![\w.$])', text)
        if m and not texts[name].startswith(text[:200]):
            at[name] = m.start()
    return "\n\n".join([text, *(texts[n] for n in sorted(at, key=at.get))])


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
        from ..data import _wants_int_labels
        from ..losses import get
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
