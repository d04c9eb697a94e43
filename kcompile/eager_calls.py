"""Eager calls: a model or layer called on arrays computes now and returns arrays.

`model(x)`, `model(x, training=False)`, `layer(x)` on numpy arrays (or lists /
dicts of them) trace the call once per input signature (shapes, dtypes, the
`training` flag), compile it on the model's backend and cache it; a later call
with the same signature is one run of the compiled graph. As in Keras:

* the state updates the call makes happen (a variable's `assign` in `call`,
  BatchNormalization's moving statistics and Dropout's seed with training=True);
  no optimizer step is taken, weights change only through those assigns;
* `layer.losses` holds the `add_loss` values of the last call (then the weight
  regularization penalties);
* a model keeps the input shape it was built for: other feature sizes raise.

Results are EagerTensors (numpy arrays with `.numpy()`, kcompile/eager.py).

A model's calls run over the model's own State (the one fit/predict use); a
bare layer gets a State of its own, and its variables move back to it (with
their current values) whenever a model used them in between.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.interpret import interpret
from kcompile.runtime.pipeline import Pipeline, Traced
from . import batch_calls
from .eager import EagerTensor, eager, eager_structure
from .functional import KerasTensor, rebuild_structure, structure_map
from .tracing import Trace, tracing
from .variables import state_over


# -- what counts as arrays ---------------------------------------------------------------------
def _is_array(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) or (
        hasattr(x, "__array__") and hasattr(x, "shape") and not hasattr(x, "__sym__"))


def is_array_structure(x) -> bool:
    """An array, or a non-empty list / tuple / dict of arrays (a list of numbers is one
    array written as a list)."""
    if _is_array(x):
        return True
    if isinstance(x, dict):
        return bool(x) and all(_is_array(v) for v in x.values())
    if isinstance(x, (list, tuple)) and x:
        if all(_is_array(v) for v in x):
            return True
        try:
            arr = np.asarray(x)
        except ValueError:
            return False
        return arr.dtype.kind in "biuf"
    return False


def _structure(x):
    """(kind, keys, arrays) of an array structure; arrays as float32 or int32."""
    if _is_array(x) or (isinstance(x, (list, tuple)) and not all(_is_array(v) for v in x)):
        return "single", None, [_convert(x)]
    if isinstance(x, dict):
        return "dict", list(x), [_convert(v) for v in x.values()]
    return type(x).__name__, None, [_convert(v) for v in x]


def _convert(a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind in "biu":
        return np.ascontiguousarray(arr, dtype=np.int32)
    if arr.dtype.kind != "f":
        raise TypeError(f"a layer called on arrays needs numbers, received dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def lift_structure(trace, x):
    """Arrays met inside traced layer code: constants of the trace's graph."""
    kind, keys, arrays = _structure(x)
    return rebuild_structure(kind, keys, [F.lift(trace.graph, a, "int32" if a.dtype == np.int32
                                        else "float32") for a in arrays])


# -- calls ------------------------------------------------------------------------------------------
def call(layer, inputs, training=None, mask=None, kwargs=None):
    """`layer(inputs)` on arrays: the outputs as numpy arrays, in the call's structure."""
    from .models import Model
    kwargs = dict(kwargs or {})
    bad = {k: v for k, v in kwargs.items() if not isinstance(v, (bool, int, float, str,
                                                                 type(None)))
           and (isinstance(layer, Model) or _tensor_kwarg(v) is None)}
    if bad:
        raise TypeError(f"Layer {layer.name!r} called on arrays: keyword arguments must be "
                        f"plain values or arrays, received {sorted(bad)}")
    if isinstance(layer, Model):
        if mask is not None or kwargs:
            raise TypeError(f"Model {layer.name!r} called on arrays takes `training=` only; "
                            f"received {sorted(kwargs) + (['mask'] if mask is not None else [])}")
        return eager_structure(_call_model(layer, inputs, bool(training)))
    return eager_structure(_call_layer(layer, inputs, bool(training), mask, kwargs))


class _Cache:
    """A layer's eager executables and State (a plain object: not a tracked attribute)."""

    def __init__(self):
        self.state = None
        self.exes = {}
        self.prepared = {}      # a model's calls on one plain array: kcompile/batch_calls.py
        self.last = None        # (training, PreparedCall, entry) of the last prepared call


def _cache(obj) -> _Cache:
    cache = vars(obj).get("_eager_cache")
    if cache is None:
        cache = obj.__dict__["_eager_cache"] = _Cache()
    return cache


def _call_model(model, inputs, training):
    from .data import adapt_inputs
    cache = _cache(model)
    signature = batch_calls.signature((inputs,))
    if signature is not None:
        # A signature seen before, over the same State and variables: one native call.
        prepared = cache.prepared.get((training, signature))
        if prepared is not None and cache.state is model._state and prepared[0].current(model):
            call, entry = prepared
            cache.last = (training, call, entry)
            return _model_outputs(model, _results(entry, model, call.run((inputs,))))
    xs = adapt_inputs(inputs, model, f"calling model {model.name!r}")
    state = model._ensure_state()
    _bind_all(model.variables, state)
    if cache.state is not state:            # the model made a new State: recompile
        cache.state, cache.exes, cache.prepared = state, {}, {}
    key = (training, model._backend, tuple((a.shape, a.dtype.str) for a in xs))
    entry = cache.exes.get(key)
    if entry is None:
        trace = model._new_trace()
        with tracing(trace):
            syms = [trace.input(f"x{i}", a.shape, "int32" if a.dtype == np.int32 else "float32")
                    for i, a in enumerate(xs)]
            outs = model.forward(syms, training=training)
        entry = cache.exes[key] = _compile(trace, outs, state, model._backend,
                                           getattr(model, "_nthreads", None))
    outs = _run(entry, model, {f"x{i}": a for i, a in enumerate(xs)})
    if signature is not None and len(xs) == 1:
        call = batch_calls.PreparedCall.make(model, entry["exe"], "call", (inputs,), ("x0",))
        if call is not None:
            cache.prepared[(training, signature)] = (call, entry)
            # one array out, no mask, no added loss: the output itself is the result
            marker = np.empty(0)
            entry["one_output"] = set(entry["exe"].graphs["call"].outputs) == {"y0"} and \
                _model_outputs(model, [marker]) is marker
    return _model_outputs(model, outs)


def prepared_model_call(model, inputs, training):
    """`model(inputs)` on one plain array of the signature of the model's last prepared
    call (the same `training`, the same State, variables where they were): its outputs
    through that native call, as `call` returns them; None when it must take `call`."""
    cache = model.__dict__.get("_eager_cache")
    last = cache.last if cache is not None else None
    if last is None or last[0] is not bool(training) or cache.state is not model._state:
        return None
    _, call, entry = last
    if not call.accepts((inputs,)) or not call.current(model):
        return None
    res = call.run((inputs,))
    if entry["one_output"]:
        _record_losses(entry, model, res)
        return res["y0"].view(EagerTensor)
    return eager_structure(_model_outputs(model, _results(entry, model, res)))


def _model_outputs(model, outs):
    struct = getattr(model, "_output_struct", None)
    if struct is not None and model._outputs is not None:
        it = iter(outs)
        return structure_map(lambda t: next(it), struct) if not isinstance(struct, KerasTensor) \
            else outs[0]
    spec = getattr(model, "_subclass_spec", None)
    if spec is not None:
        return rebuild_structure(spec.output_kind, spec.output_keys, outs)
    return outs[0] if len(outs) == 1 else outs


def _carried_mask(inputs):
    """The Keras mask an eager result carries (`_keras_mask`), for the next layer."""
    return getattr(inputs, "_keras_mask", None) if _is_array(inputs) else None


def _tensor_kwarg(v):
    """A keyword argument holding arrays (an RNN's `initial_state`: arrays or a layer's
    state variables) as a list of float32 arrays and whether it was one array; else None."""
    def one(a):
        if hasattr(a, "__sym__") and hasattr(a, "numpy"):     # a Variable: its value now
            return np.asarray(a.numpy(), np.float32)
        return _convert(a) if _is_array(a) else None
    if isinstance(v, (list, tuple)) and v:
        arrays = [one(a) for a in v]
        return None if any(a is None for a in arrays) else (arrays, False)
    a = one(v)
    return None if a is None else ([a], True)


def _call_layer(layer, inputs, training, mask, kwargs):
    if mask is None:
        mask = _carried_mask(inputs)
    kind, keys, arrays = _structure(inputs)
    cache = _cache(layer)
    # Array-valued keyword arguments (MultiHeadAttention's value and attention_mask, an
    # RNN's initial_state) are inputs of the compiled call, like `inputs`.
    tensor_kw = {k: _tensor_kwarg(v) for k, v in kwargs.items()
                 if not isinstance(v, (bool, int, float, str, type(None)))}
    kwargs = {k: v for k, v in kwargs.items() if k not in tensor_kw}
    key = (training, kind, tuple(keys or ()), tuple((a.shape, a.dtype.str) for a in arrays),
           None if mask is None else np.shape(mask), tuple(sorted(kwargs.items())),
           tuple((k, single, tuple((a.shape, a.dtype.str) for a in vals))
                 for k, (vals, single) in sorted(tensor_kw.items())))
    entry = cache.exes.get(key)
    if entry is None:
        trace = Trace()
        with tracing(trace):
            syms = [trace.input(f"x{i}", a.shape, "int32" if a.dtype == np.int32 else "float32")
                    for i, a in enumerate(arrays)]
            m = None if mask is None else trace.input("mask_in", np.shape(mask))
            call_kw = dict(kwargs)
            for k, (vals, single) in tensor_kw.items():
                ins = [trace.input(f"kw_{k}_{j}", a.shape,
                                   "int32" if a.dtype == np.int32 else "float32")
                       for j, a in enumerate(vals)]
                call_kw[k] = ins[0] if single else ins
            out = layer._call_traced(rebuild_structure(kind, keys, syms), (), training, m, call_kw)
            flat, out_kind, out_keys = _flatten_outputs(trace, out)
            masks = [trace.masks.get(o.id) for o in flat]
        state = _layer_state(layer, trace, cache)
        entry = _compile(trace, flat, state, "native", None, masks)
        entry["structure"] = (out_kind, out_keys)
        cache.exes[key] = entry
    _bind_all(entry["variables"], cache.state)
    feeds = {f"x{i}": a for i, a in enumerate(arrays)}
    if mask is not None:
        feeds["mask_in"] = np.asarray(mask, np.float32)
    for k, (vals, _) in tensor_kw.items():
        feeds.update({f"kw_{k}_{j}": a for j, a in enumerate(vals)})
    outs = _run(entry, layer, feeds)
    return rebuild_structure(*entry["structure"], outs)


def _flatten_outputs(trace, out):
    def sym(v):
        if hasattr(v, "__sym__"):
            return v.__sym__(trace.graph)
        if isinstance(v, F.Sym):
            return v
        return F.lift(trace.graph, np.asarray(v, np.float32))
    if isinstance(out, dict):
        return [sym(v) for v in out.values()], "dict", list(out)
    if isinstance(out, (list, tuple)):
        return [sym(v) for v in out], type(out).__name__, None
    return [sym(out)], "single", None


def _layer_state(layer, trace, cache):
    """A State over the layer's variables (and any other the call read); reused while
    the set of variables stays the same."""
    variables = list(layer.variables)
    seen = {id(v) for v in variables}
    variables += [v for v in trace.variables if id(v) not in seen]
    names = [v.path for v in variables]
    if cache.state is not None and set(names) <= set(cache.state.types):
        return cache.state
    state = state_over(variables, f"Layer {layer.name!r}")
    cache.state, cache.exes = state, {}
    return state


def _bind_all(variables, state):
    """Variables a model moved into its own State come back here with their values."""
    for v in variables:
        if v.path in state and v.value is not state[v.path]:
            v.bind(state[v.path])


def _compile(trace, outs, state, backend, nthreads, masks=()):
    g = trace.graph
    for i, o in enumerate(outs):
        g.outputs[f"y{i}"] = o.id
    for i, m in enumerate(masks):
        if m is not None:                    # the output's Keras mask, returned beside it
            g.outputs[f"mask{i}"] = m.id
    owners = []
    for i, (owner, value) in enumerate(trace.loss_owners):
        g.outputs[f"added_loss{i}"] = value.id
        owners.append(owner)
    for var, value in trace.updates.items():
        g.updates[trace.variable(var).id] = value.id
    exe = Pipeline({"call": Traced(g)}, state, nthreads, backend).executable()
    return {"exe": exe, "n_out": len(outs), "loss_owners": owners,
            "variables": list(trace.variables)}


def _run(entry, layer, feeds):
    return _results(entry, layer, entry["exe"].run("call", feeds))


def _record_losses(entry, layer, res):
    """The call's added losses recorded on their layers (as Keras: a layer's losses are
    those of its last call)."""
    if "layers" not in entry:               # walked once per compiled signature, not per call
        entry["layers"] = [layer, *layer._sublayers(recursive=True)]
    for l in entry["layers"]:
        l._last_losses = []
    for i, owner in enumerate(entry["loss_owners"]):
        owner._last_losses.append(np.float32(res[f"added_loss{i}"]))


def _results(entry, layer, res):
    """The call's outputs as eager arrays; its added losses recorded on their layers."""
    _record_losses(entry, layer, res)
    outs = [eager(np.asarray(res[f"y{i}"])) for i in range(entry["n_out"])]
    for i, out in enumerate(outs):
        if f"mask{i}" in res:               # as Keras: the mask rides on the result
            out._keras_mask = eager(np.asarray(res[f"mask{i}"]) != 0)
    return outs


# -- weight regularization, now ------------------------------------------------------------------
def regularization_losses(weights) -> list:
    """The penalty of each regularized weight at its current value (numpy scalars)."""
    out = []
    for w in weights:
        if getattr(w, "regularizer", None) is None:
            continue
        trace = Trace()
        with tracing(trace):
            value = w.regularizer(w)
        if not isinstance(value, F.Sym):
            out.append(np.float32(value))
            continue
        trace.graph.outputs["r"] = value.id
        res, _ = interpret(trace.graph, {v.path: v.value for v in trace.variables})
        out.append(np.float32(res["r"]))
    return out
