"""The training step split at the gradient, for data parallelism.

One process compiles `train_step`: forward, backward and the optimizer's update in
one native call. Across ranks the gradients must be averaged between the backward
pass and the update, so the step becomes two entries of the same program:

    grad_step      forward + backward; writes count * gradient of every weight, and
                   the batch's sample count, into gradient slots of the model's State
    apply_update   the optimizer's update from slots / total count

The slots are State variables laid out back to back (after a slot for the step's
logs), so between the two calls one allreduce over one contiguous range of the
State buffer sums every rank's gradients, counts and logs in place. Weighting each
rank's mean gradient by its sample count makes the result the gradient of the mean
loss over all ranks' samples, whatever a rank's last batch holds: 2 ranks of 32
samples train as 1 process of 64.
"""
from __future__ import annotations

import weakref

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import TensorType
from kcompile.ir.passes import GRAD_PREFIX, autodiff, simplify
from kcompile.runtime.pipeline import Traced
from ..tracing import tracing
from ..variables import Variable

#: floats of log values and metric-accumulator changes the fused allreduce carries; a
#: step with more sends the rest in a second allreduce
LOG_CAPACITY = 256
_PREFIX = "data_parallel"


class GradientSlots:
    """The State variables one model's split step communicates through, in State order:
    logs (Python writes them), count and one slot per trainable weight (the compiled
    grad_step writes them)."""

    def __init__(self, model):
        self.logs = Variable(np.zeros(LOG_CAPACITY, np.float32), "logs", trainable=False,
                             path=f"{_PREFIX}/logs")
        self.count = Variable(np.zeros((), np.float32), "count", trainable=False,
                              path=f"{_PREFIX}/count")
        self.grads = {w.path: Variable(np.zeros(w.shape, np.float32), f"grad/{w.path}",
                                       trainable=False, path=f"{_PREFIX}/grad/{w.path}")
                      for w in model.trainable_weights}

    @property
    def variables(self) -> list[Variable]:
        return [self.logs, self.count, *self.grads.values()]

    def fused_buffer(self, state) -> np.ndarray:
        """The float32 view of the State from the logs slot to the end of the last
        gradient slot: what one allreduce sums (the 64-byte padding between slots is
        zeros and stays zeros)."""
        names = [v.path for v in self.variables]
        start = state.offsets[names[0]]
        end = max(state.offsets[n] + state.types[n].nbytes for n in names)
        if any(not start <= state.offsets[n] < end for n in names) or \
                list(state.types).index(names[0]) + len(names) > len(state.types):
            raise RuntimeError("the data-parallel slots are not contiguous in the State")
        return state.buffer[start:end].view(np.float32)


_slots: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def slots_for(model) -> GradientSlots:
    """The model's slots, made once (and again if its trainable weights changed)."""
    slots = _slots.get(model)
    if slots is None or list(slots.grads) != [w.path for w in model.trainable_weights]:
        slots = _slots[model] = GradientSlots(model)
    return slots


def split_entries(model, traced: dict) -> dict:
    """The program's entries with `train_step` replaced by grad_step and apply_update."""
    if "train_step" not in traced:
        return traced
    slots = slots_for(model)
    out = {k: v for k, v in traced.items() if k != "train_step"}
    grad_graph, paths = _grad_step(traced["train_step"], slots)
    out["grad_step"] = Traced(grad_graph)
    out["apply_update"] = Traced(_apply_update(model, slots, paths))
    return out


def _grad_step(train: Traced, slots: GradientSlots):
    """The differentiated loss with its gradients written to the slots (times the
    batch's sample count) instead of returned; the paths of the weights it reaches."""
    g = autodiff(simplify(train.graph))
    count = Sym(g, g.outputs["count"])
    paths = []
    for name in [k for k in g.outputs if k.startswith(GRAD_PREFIX)]:
        path = name[len(GRAD_PREFIX):]
        grad = Sym(g, g.outputs.pop(name))
        slot = g.leaf("state", TensorType(grad.shape, "float32"), slots.grads[path].path)
        g.updates[slot] = (grad * count).id
        paths.append(path)
    g.updates[g.leaf("state", TensorType((), "float32"), slots.count.path)] = count.id
    if train.after_update is not None:       # a variable length: the sums skip padding
        g = train.after_update(g)
    return g, paths


def _apply_update(model, slots: GradientSlots, paths):
    """The optimizer's update of the weights in `paths` from the summed slots."""
    by_path = {w.path: w for w in model.trainable_weights}
    trace = model._new_trace()
    with tracing(trace):
        total = trace.variable(slots.count)
        scale = 1.0 / F.maximum(total, 1.0)
        triples = [(by_path[p], trace.variable(by_path[p]),
                    trace.variable(slots.grads[p]) * scale) for p in paths]
        g = trace.graph
        for leaf, new in model._optimizer_updates(trace, triples).items():
            g.updates[leaf] = new.id
        # An entry returns something: the samples this update averaged over.
        g.outputs["count"] = total.id
    return g
