"""What an exported library is made of: the predict graphs (one per batch size) over
a State holding only the weights they read, compiled for the export's CPU, and the
place of every input and output in the arena (the C entry layer's tables)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ...ir.fingerprint import graph_fingerprint
from ...ir.graph import Graph
from ...codegen import sync
from ...codegen.aot import AotTarget, compile_object
from ...codegen.target import compiling_for
from ..pipeline import Pipeline
from ..state import State


@dataclass(frozen=True)
class IOSpec:
    name: str
    shape: tuple[int, ...]      # per sample, without the batch axis
    dtype: str
    bound: int | None = None    # integer ids must lie in [0, bound)


@dataclass(frozen=True)
class EntryPlan:
    batch: int
    symbol: str                         # the compiled predict's name in the object
    input_offsets: tuple[int, ...]      # in the arena; -1 for an input the graph ignores
    output_places: tuple[tuple[int, bool], ...]     # (offset, in the weights region)


@dataclass
class ExportPlan:
    model_name: str
    inputs: list[IOSpec]
    outputs: list[IOSpec]
    batches: list[int]
    threads: int
    target: AotTarget
    embedded: bool
    model_id: int = 0
    work_bytes: int = 0
    state_bytes: int = 0
    entries: list[EntryPlan] = field(default_factory=list)
    symbols: dict[str, str] = field(default_factory=dict)


def weights_state(graphs: list[Graph], values: dict[str, np.ndarray]) -> State:
    """A State of the param and state leaves the graphs read, filled from `values`."""
    layout = {}
    for g in graphs:
        for v in g.leaves():
            n = g.nodes[v]
            if n.role in ("param", "state"):
                layout.setdefault(n.name, n.type)
    state = State(sorted(layout.items()))
    for name in layout:
        state.assign(name, values[name])
    return state


def model_id(plan: ExportPlan, graphs: dict[int, Graph], state: State) -> int:
    """An id of the code and weight layout, not of the weight values: a weights file
    from another export of the same model (retrained) loads; one of another model not."""
    h = hashlib.sha256()
    h.update(repr((plan.target, plan.threads, sorted(graphs))).encode())
    h.update(repr(sorted((n, state.offsets[n], t.shape, t.dtype)
                         for n, t in state.types.items())).encode())
    for batch in sorted(graphs):
        h.update(graph_fingerprint(graphs[batch]).encode())
    return int.from_bytes(h.digest()[:8], "little")


def compile_plan(plan: ExportPlan, graphs: dict[int, Graph], state: State) -> tuple[bytes, list]:
    """Fill in the plan's layout and symbols; (the model's object code, the external
    functions it calls)."""
    plan.model_id = model_id(plan, graphs, state)
    prefix = f"kc_{plan.model_id:016x}_"
    entries = {f"predict_b{b}": graphs[b] for b in plan.batches}
    pipeline = Pipeline(entries, state, plan.threads, "native", use_cache=False)
    with compiling_for(plan.target.cpu, plan.target.features):
        llvm_ir = pipeline.llvm_ir()
        layout = pipeline.layout()
    exported = {name: prefix + name for name in [*entries, *sync.SYMBOLS]}
    plan.symbols = {s: prefix + s for s in sync.SYMBOLS}
    plan.symbols["weights"] = prefix + "weights"
    plan.work_bytes = layout["work_bytes"]
    plan.state_bytes = int(state.buffer.nbytes)
    for b in plan.batches:
        desc = layout["entries"][f"predict_b{b}"]
        ins = []
        for i in range(len(plan.inputs)):
            d = desc["inputs"].get(f"x{i}")
            ins.append(-1 if d is None else _offset(d, f"input {plan.inputs[i].name!r}"))
        outs = []
        for i, io in enumerate(plan.outputs):
            d = desc["outputs"][f"y{i}"]
            if d[0] == "const":
                raise ValueError(f"output {io.name!r} is a constant of the model, not computed "
                                 f"from its inputs: such a model cannot be exported")
            outs.append((d[1], d[0] == "state"))
        plan.entries.append(EntryPlan(b, prefix + f"predict_b{b}", tuple(ins), tuple(outs)))
    obj, external = compile_object(llvm_ir, plan.target, exported)
    return obj, external


def _offset(desc, what) -> int:
    region, offset = desc[0], desc[1]
    if region != "work":
        raise ValueError(f"{what} is placed in the {region} region; inputs live in the arena")
    return int(offset)
