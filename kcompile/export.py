"""`model.export(dirpath, format="native")` and `kcompile export`: the model's predict as
a standalone C library (libmodel.so, libmodel.a, model.h, README.md), written by
kcompile.runtime.export.

Batch: fixed at `batch_size`, or any batch up to `max_batch_size` (predicts compiled
for 1, 2, 4, ... and the maximum; a batch in between runs padded to the next size
with zero samples, which changes nothing as long as predict treats samples
independently, as every built-in layer does; a user layer mixing samples, e.g. a mean
over the batch axis, needs a fixed batch_size).
Refused, naming the layer: layers that update state or draw random numbers when
predicting (stateful RNNs, noise layers active at inference), and inputs of unknown
shape (an exported library has fixed shapes).
"""
from __future__ import annotations

import numpy as np

FORMATS = ("native",)
KERAS_FORMATS = ("tf_saved_model", "onnx", "openvino", "litert", "torch")


def export_model(model, filepath, format="native", verbose=None, input_signature=None,
                 **kwargs):
    """What `Model.export` does (Keras' signature; kcompile writes format='native')."""
    if format in KERAS_FORMATS:
        raise ValueError(f"format={format!r} is not available in kcompile, which exports "
                         f"format='native' (a C library with a header)")
    if format not in FORMATS:
        raise ValueError(f"Unrecognized format={format}. Supported formats are: "
                         f"{list(FORMATS)}.")
    if input_signature is not None:
        raise ValueError("input_signature is not supported by format='native': the library "
                         "takes the model's own input shapes")
    allowed = {"batch_size", "max_batch_size", "threads", "cpu", "weights_file"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"export() got unexpected keyword argument(s) {unknown}; "
                        f"format='native' accepts {sorted(allowed)}")
    path = export_native(model, filepath, **kwargs)
    if verbose is None or verbose:
        size = (path / "libmodel.so").stat().st_size
        weights = ", model.weights" if kwargs.get("weights_file") else ""
        print(f"Exported {model.name!r} to {path}: libmodel.so ({size / 1024:.0f} KiB), "
              f"libmodel.a, model.h, README.md{weights}")
    return path


def batch_sizes(batch_size=None, max_batch_size=None) -> list[int]:
    for name, v in (("batch_size", batch_size), ("max_batch_size", max_batch_size)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                              or v < 1):
            raise ValueError(f"{name} must be a positive integer, received {name}={v!r}")
    if batch_size is not None and max_batch_size is not None:
        raise ValueError("pass batch_size (a fixed batch) or max_batch_size (any batch up to "
                         "it), not both")
    if max_batch_size is None:
        return [int(batch_size or 1)]
    sizes, b = [], 1
    while b < max_batch_size:
        sizes.append(b)
        b *= 2
    return sizes + [int(max_batch_size)]


def export_native(model, filepath, batch_size=None, max_batch_size=None, threads=1,
                  cpu="host", weights_file=False):
    from kcompile.codegen.aot import aot_target
    from kcompile.runtime.export import ExportPlan, IOSpec, write_export

    batches = batch_sizes(batch_size, max_batch_size)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, received threads={threads!r}")
    target = aot_target(cpu)
    model.build_for_data()
    specs = model.input_specs
    names = _input_names(model, len(specs))
    for i, (shape, _) in enumerate(specs):
        if None in shape:
            raise ValueError(f"input {i} ({names[i]!r}) has unknown axes {(None, *shape)}: an "
                             f"exported library has fixed shapes; build the model on an "
                             f"Input with every axis but the batch given")
    state = model._ensure_state()
    graphs = {b: model._trace_predict(b) for b in batches}
    g = graphs[batches[0]]
    _refuse_unexportable(g)
    inputs = [IOSpec(names[i], tuple(shape), dtype, g.input_bounds.get(f"x{i}"))
              for i, (shape, dtype) in enumerate(specs)]
    out_names = list(model.output_names)
    outputs = [IOSpec(out_names[i] if i < len(out_names) else f"output_{i}",
                      g.type(g.outputs[f"y{i}"]).shape[1:], g.type(g.outputs[f"y{i}"]).dtype)
               for i in range(len(g.outputs))]
    plan = ExportPlan(model.name, inputs, outputs, batches, int(threads), target,
                      embedded=not weights_file)
    values = {name: state[name] for name in state.types}
    return write_export(plan, graphs, values, filepath)


def _input_names(model, n) -> list[str]:
    try:
        names = [getattr(t, "name", None) for t in model.inputs]
    except Exception:       # a subclassed model has no symbolic inputs
        names = []
    return [names[i] if i < len(names) and names[i] else f"input_{i}" for i in range(n)]


def _refuse_unexportable(g) -> None:
    """A clear error naming the layer for what a library cannot do."""
    for leaf, value in g.updates.items():
        layer = g.nodes[value].scope or g.nodes[leaf].scope or "?"
        raise ValueError(f"layer {layer!r} updates the variable {g.nodes[leaf].name!r} when "
                         f"predicting (a stateful layer): it cannot be exported, as each "
                         f"call of the library must be independent of the previous ones")
    for v in g.order():
        n = g.nodes[v]
        if n.op.startswith("random"):
            raise ValueError(f"layer {n.scope or '?'!r} draws random numbers when predicting: "
                             f"it cannot be exported")
