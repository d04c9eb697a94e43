"""Entry inputs read, and outputs written, where the caller keeps them.

An entry's inputs and outputs have their places in the work arena (the memory
plan), where a step's caller copies its arrays in and its results out. A copy of
a large batch costs as much as a small model's step (W2 at batch 1024: 3.2 MB in,
40 KB out), so each input and each output that can be bound also has a pointer
slot, 8 bytes past the arena's planned buffers:

  slot zero (as the arena starts, and after each call)  the entry uses the
      arena's place: callers that copy need not know about the slots;
  slot set to an address                                the entry's kernels read
      the input from there, or write the output there.

An input can be bound unless it is returned as an output (the caller reads the
outputs from the arena). An output can be bound when a kernel computes it into
the arena: not a weight, an input or a constant returned as they are, not the
buffer of another output, not a value copied back into the state. Views
(reshapes) of a bound value share its pointer, as they share its buffer in the
plan. Barriers between kernels are still decided from the arena plan
(codegen/module.py): with its slot at zero a value is where the plan put it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..ir.passes.plan_memory import Location

SLOT_BYTES = 8


@dataclass(frozen=True)
class Slots:
    """Where each entry's pointer slots are: offsets into the work arena."""
    inputs: dict            # entry name -> {input leaf id: offset}
    outputs: dict           # entry name -> {output name: offset}
    work_bytes: int         # the arena with the slots


def _aliases(fg) -> dict[int, int]:
    """value -> the value whose buffer it shares (views), as plan_memory places them."""
    alias: dict[int, int] = {}
    for k in fg.kernels:
        if k.kind == "view":
            (src,) = fg.graph.nodes[k.members[0]].inputs
            alias[k.members[0]] = alias.get(src, src)
    return alias


def bindable(e) -> tuple[dict[int, int], dict[str, int]]:
    """({input leaf id: root value}, {output name: root value}) of an Entry: the
    values that take a pointer slot (a root is the value owning the buffer)."""
    g, plan = e.fused.graph, e.plan
    alias = _aliases(e.fused)
    root = lambda v: alias.get(v, v)        # noqa: E731
    roots = [root(v) for v in g.outputs.values()]
    # (an input returned as an output, or a view of it, stays where the caller reads
    # the outputs: in the arena)
    inputs = {v: v for v in g.leaves()
              if g.nodes[v].role in ("input", "target") and plan.locations.get(v) is not None
              and plan.locations[v].region == "work" and v not in roots}
    copied = {root(src) for src, _ in plan.copies}
    outputs = {}
    for name, v in g.outputs.items():
        r = root(v)
        loc = plan.locations.get(r)
        if (loc is None or loc.region != "work" or g.nodes[r].is_leaf or r in copied
                or roots.count(r) > 1 or r in inputs):
            continue
        outputs[name] = r
    return inputs, outputs


def slots(entries) -> Slots:
    """The pointer slots of every entry, after the largest of their arenas."""
    base = max([e.plan.work_bytes for e in entries] + [64])
    base = (base + 63) // 64 * 64
    off = base
    ins, outs = {}, {}
    for e in entries:
        bound_in, bound_out = bindable(e)
        ins[e.name] = {}
        for v in bound_in:
            ins[e.name][v] = off
            off += SLOT_BYTES
        outs[e.name] = {}
        for name in bound_out:
            outs[e.name][name] = off
            off += SLOT_BYTES
    return Slots(ins, outs, off if off > base else base)


def bound_plan(e):
    """(the Entry with its bindable values placed 'input' (bound by the entry), and
    {root value: (arena offset of its slot's fallback buffer)} for those values)."""
    plan = e.plan
    bound_in, bound_out = bindable(e)
    roots = set(bound_in) | set(bound_out.values())
    if not roots:
        return e, {}
    alias = _aliases(e.fused)
    locations = dict(plan.locations)
    fallback = {r: plan.locations[r].offset for r in roots}
    for v in list(locations):
        r = alias.get(v, v)
        if r in roots:
            locations[v] = Location("input", r)
    return replace(e, plan=replace(plan, locations=locations)), fallback


def output_names(e) -> dict[int, str]:
    """root value -> output name, for the bound outputs of an Entry."""
    return {r: name for name, r in bindable(e)[1].items()}
