"""The functional API: symbolic KerasTensors recording which layer made them.

`layers.Input(shape=...)` returns a KerasTensor; calling a layer on KerasTensors
returns new ones whose history points at the layer and its inputs. A
`Model(inputs, outputs)` replays that history on traced values.
"""
from __future__ import annotations

from .tracing import Trace, tracing


class KerasTensor:
    def __init__(self, shape, dtype, layer, inputs, index=0, kwargs=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.layer = layer            # the layer that produced it (an InputLayer for inputs)
        self.inputs = inputs          # the layer call's arguments (KerasTensor, list or dict)
        self.index = index            # which of the layer's outputs
        self.kwargs = kwargs or {}
        self.mask_shape = None        # the shape of its Keras mask, when it carries one

    @property
    def _keras_mask(self):
        """The mask this tensor carries (Keras' attribute), as a KerasTensor, or None."""
        if self.mask_shape is None:
            return None
        return KerasTensor(self.mask_shape, "bool", self.layer, self.inputs, self.index,
                           self.kwargs)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def name(self):
        return self.layer.name

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.layer.name}>"

    # `x + y` between KerasTensors (a residual connection) records a merging layer.
    def __add__(self, other): return _merge("Add", "+", self, other)
    def __radd__(self, other): return _merge("Add", "+", other, self)
    def __sub__(self, other): return _merge("Subtract", "-", self, other)
    def __rsub__(self, other): return _merge("Subtract", "-", other, self)
    def __mul__(self, other): return _merge("Multiply", "*", self, other)
    def __rmul__(self, other): return _merge("Multiply", "*", other, self)


def _merge(cls_name, symbol, a, b):
    from . import layers
    if not (isinstance(a, KerasTensor) and isinstance(b, KerasTensor)):
        raise TypeError(f"unsupported operand for {symbol} with a KerasTensor: "
                        f"{type(a).__name__} and {type(b).__name__} (both operands must be "
                        f"KerasTensors; use a Lambda or Rescaling layer for constants)")
    return getattr(layers, cls_name)()([a, b])


def flatten(x):
    if isinstance(x, KerasTensor):
        return [x]
    if isinstance(x, dict):
        x = list(x.values())
    return [t for item in x for t in flatten(item)]


def rebuild_structure(kind, keys, items):
    """`items` in the structure a call's arguments had: "single", "dict" (with `keys`),
    "tuple" or "list"."""
    if kind == "single":
        return items[0]
    if kind == "dict":
        return dict(zip(keys, items))
    return tuple(items) if kind == "tuple" else list(items)


def structure_map(fn, x):
    if isinstance(x, dict):
        return {k: structure_map(fn, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(structure_map(fn, v) for v in x)
    return fn(x)


# The sizes an axis declared None is traced at: an output axis that differs between
# them is None. Large enough for valid convolutions and poolings to apply, and a
# factor of two apart, so a strided window's output differs too.
VARIABLE_FILLS = (32, 64)


def call_symbolic(layer, inputs, kwargs):
    """Call `layer` on KerasTensors (in `inputs` and in keyword arguments such as an RNN's
    `initial_state`): the layer is built from the declared shapes, then the output shapes
    are found by tracing a batch of 1. Axes declared None are traced at two sizes; an
    output axis that differs between them is None (a time axis stays variable)."""
    tensors = flatten(inputs)
    shape = tensors[0].shape if isinstance(inputs, KerasTensor) else [t.shape for t in tensors]
    layer._maybe_build(shape)
    variable = any(None in t.shape[1:] for t in tensors + tensors_in(kwargs))
    # A batch size the inputs all fix (Input(batch_shape=...)) is kept, as Keras does.
    batches = {t.shape[0] for t in tensors + tensors_in(kwargs)}
    batch = batches.pop() if len(batches) == 1 else None
    traced = []
    for fill in (VARIABLE_FILLS if variable else VARIABLE_FILLS[:1]):
        trace = Trace(shape_only=True)
        with tracing(trace):
            def sym(t):
                if not isinstance(t, KerasTensor):
                    return t
                size = lambda shape: (batch or 1, *(fill if d is None else d for d in shape[1:]))
                x = trace.input(f"x{id(t)}", size(t.shape), t.dtype)
                if t.mask_shape is not None:     # the mask it carries reaches the layer
                    trace.masks[x.id] = trace.input(f"m{id(t)}", size(t.mask_shape))
                return x
            out = layer(structure_map(sym, inputs), **structure_map(sym, kwargs))
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        traced.append([(o.shape[1:], o.dtype, trace.masks.get(o.id)) for o in outs])
        out_batches = [o.shape[0] if batch is not None and o.ndim else None for o in outs]
    shapes = [tuple(d if d == e else None for d, e in zip(a[0], b[0]))
              for a, b in zip(traced[0], traced[-1])]
    result = [KerasTensor((out_batches[i], *s), dt, layer, inputs, i, kwargs)
              for i, (s, (_, dt, _)) in enumerate(zip(shapes, traced[0]))]
    for t, (_, _, m0), (_, _, m1) in zip(result, traced[0], traced[-1]):
        if m0 is not None and m1 is not None:
            t.mask_shape = (None, *(d if d == e else None
                                    for d, e in zip(m0.shape[1:], m1.shape[1:])))
    made = result if isinstance(out, (list, tuple)) else result[0]
    layer._inbound.append((inputs, made))      # Keras' inbound nodes: layer.input / .output
    return made


def tensors_in(kwargs) -> list[KerasTensor]:
    """The KerasTensors among a layer call's keyword arguments (e.g. `initial_state`)."""
    out = []
    structure_map(lambda v: out.append(v) if isinstance(v, KerasTensor) else None,
                  dict(kwargs or {}))
    return out


def topological_tensors(outputs) -> list[KerasTensor]:
    """Every KerasTensor the outputs depend on, producers first."""
    seen, order = set(), []

    def visit(t):
        if id(t) in seen:
            return
        seen.add(id(t))
        for i in flatten(t.inputs) + tensors_in(t.kwargs):
            visit(i)
        order.append(t)
    for o in flatten(outputs):
        visit(o)
    return order


def call_key(t):
    """The layer call that made KerasTensor `t`: one per (layer, inputs, keyword
    arguments), so a layer called twice on one tensor with other arguments (another
    mask, a causal mask) is two calls."""
    return (id(t.layer), id(t.inputs), id(t.kwargs) if t.kwargs else None)


def run_graph(inputs, outputs, input_values, training):
    """Replay the layer calls from `inputs` to `outputs` on traced values."""
    env = {id(t): v for t, v in zip(flatten(inputs), input_values)}
    calls = {}
    for t in topological_tensors(outputs):
        if id(t) in env:
            continue
        if not t.inputs and id(t) not in env:
            raise ValueError(f"Graph disconnected: {t} is needed but is not one of the model's inputs")
        key = call_key(t)
        if key not in calls:
            args = structure_map(lambda i: env[id(i)], t.inputs)
            kwargs = structure_map(lambda i: env[id(i)] if isinstance(i, KerasTensor) else i,
                                   dict(t.kwargs))
            calls[key] = t.layer(args, training=training, **kwargs)
        out = calls[key]
        env[id(t)] = out[t.index] if isinstance(out, (list, tuple)) else out
    return [env[id(o)] for o in flatten(outputs)]
