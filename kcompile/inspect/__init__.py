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

Every stage is read from the compile pipeline the model keeps for the batch size
(runtime/pipeline.py), the objects its executable is built from: what is shown is
what runs, and nothing is computed twice. Every view is a JSON-able document; the
text and DOT forms are rendered from it, so `CompiledView.from_json(v.to_json())`
prints the same text.

  stages.py     entries, stages, the format's name and version, InspectError
  session.py    Session: the documents of one model at one batch size
  documents.py  the documents (graphs, kernels, memory, code, statistics)
  text.py       the text form;  dot.py  the DOT form;  view.py  CompiledView
  schema.py     JSON_SCHEMA
  profiling.py  `kcompile profile`: per-kernel times, the machine's peak
"""
from __future__ import annotations

from .documents import graph_stats, kernel_stats
from .profiling import ProfileReport, machine_peak, profile
from .schema import JSON_SCHEMA
from .session import Session
from .stages import (ENTRIES, FORMAT, GRAPH_STAGES, KERNEL_STAGES, STAGES, TRAIN_ONLY_STAGES,
                     VERSION, InspectError, check_request)
from .view import CompiledView

__all__ = ["ENTRIES", "FORMAT", "GRAPH_STAGES", "JSON_SCHEMA", "KERNEL_STAGES", "STAGES",
           "TRAIN_ONLY_STAGES", "VERSION", "CompiledView", "InspectError", "ProfileReport",
           "Session", "check_request", "compiled_graph", "graph_stats", "kernel_stats",
           "machine_peak", "profile"]


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
