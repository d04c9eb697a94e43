"""Layer weights in Keras' two HDF5 layouts.

* Legacy (`model.save('m.h5')`, Keras 2 `save_weights('w.h5')`): one group per
  layer name with a `weight_names` attribute listing its datasets, trainable
  weights first (keras/src/legacy/saving/legacy_h5_format.py).
* Keras 3 (`model.weights.h5` in a .keras archive, `save_weights('w.weights.h5')`):
  `layers/<snake_case class name, made unique>/vars/0, 1, ...` in `model.layers`
  order, `optimizer/vars/...` (keras/src/saving/saving_lib.py).

`KERAS_LAYOUTS` says, per layer class name, where a layer's variables sit in a
Keras 3 file and how to convert them when kcompile keeps them differently.
Adding a layer whose variables are stored like Dense's needs no entry.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .model_config import keras_layers
from .serialization import keras_snake_case
from .training import keras_var_order
from ..layers.tracking import attribute_children, seed_state_variables

HDF5_OBJECT_HEADER_LIMIT = 64512


@dataclass(frozen=True)
class KerasLayout:
    subpath: str = ""                        # below the layer's group, e.g. "cell" for RNNs
    to_keras: Callable | None = None         # kcompile arrays -> Keras arrays
    from_keras: Callable | None = None       # Keras arrays -> kcompile arrays
    # Variables Keras does not save with the layer (kcompile keeps them in a
    # `kcompile_state` group of the same file, which Keras ignores).
    kcompile_only: tuple = ("seed_generator_state",)


DEFAULT_LAYOUT = KerasLayout()
KCOMPILE_STATE = "kcompile_state"
# Integer layer attributes saved in the kcompile_state group: Dropout's salt (its seed,
# drawn at random when none is given) decides its masks.
KCOMPILE_LAYER_ATTRS = ("_salt",)
KERAS_LAYOUTS: dict[str, KerasLayout] = {
    "Dense": DEFAULT_LAYOUT,
    "Activation": DEFAULT_LAYOUT,
    "InputLayer": DEFAULT_LAYOUT,
    "Dropout": DEFAULT_LAYOUT,
    "Embedding": DEFAULT_LAYOUT,
    "BatchNormalization": DEFAULT_LAYOUT,
}


def layout(layer) -> KerasLayout:
    return KERAS_LAYOUTS.get(type(layer).__name__, DEFAULT_LAYOUT)


def _is_model(layer):
    from ..models import Model
    return isinstance(layer, Model)


def keras_vars(layer, own=False) -> list:
    """The variables Keras saves for a layer, in its order (trainable first); own=True:
    without its sublayers' (the .keras layout)."""
    skip = layout(layer).kcompile_only
    return [w for w in keras_var_order(layer, own) if w.name not in skip]


def _kcompile_only(layer) -> list:
    """The layer's own variables Keras does not save: random-number state."""
    keep = {id(w) for w in keras_vars(layer, own=True)}
    own = list(layer._weights) + list(layer._state_vars) + seed_state_variables(layer)
    return [w for w in own if id(w) not in keep]


def write_kcompile_state(f, model):
    """Variables and layer attributes (KCOMPILE_LAYER_ATTRS) that Keras' layout has no
    place for, so that training resumes exactly (e.g. Dropout's mask counter and salt).
    Keyed by the layer's structural path (as in a .keras file), not its name, so they
    load into any model of the same architecture."""
    pairs, attrs = [], {}
    for path, layer in v3_layer_paths(model):
        if _is_model(layer):
            continue
        pairs += [(f"{path}/{w.name}", w.numpy()) for w in _kcompile_only(layer)]
        attrs.update({f"{path}:{a}": getattr(layer, a) for a in KCOMPILE_LAYER_ATTRS
                      if isinstance(getattr(layer, a, None), int)})
    if pairs or attrs:
        g = f.create_group(KCOMPILE_STATE)
        write_named_values(g, pairs)
        for k, v in attrs.items():
            g.attrs[k] = v


def load_kcompile_state(f, model):
    """Restore what write_kcompile_state saved; files without it (Keras') leave those
    variables and attributes as they are."""
    if KCOMPILE_STATE not in f:
        return
    group = f[KCOMPILE_STATE]
    for path, layer in v3_layer_paths(model):
        if _is_model(layer):
            continue
        for w in _kcompile_only(layer):
            key = f"{path}/{w.name}"
            if key in group and np.shape(group[key]) == w.shape:
                w.assign(np.asarray(group[key]))
        for a in KCOMPILE_LAYER_ATTRS:
            if f"{path}:{a}" in group.attrs and hasattr(layer, a):
                setattr(layer, a, int(group.attrs[f"{path}:{a}"]))


def layer_values(layer, own=False) -> list:
    """A layer's weights as Keras stores them."""
    values = [w.numpy() for w in keras_vars(layer, own)]
    lay = layout(layer)
    return list(lay.to_keras(values)) if lay.to_keras and values else values


def assign_layer(layer, values, where, skip_mismatch=False, own=False) -> None:
    """Set a layer's weights from Keras-ordered saved values, checking count and shapes."""
    targets = keras_vars(layer, own)
    lay = layout(layer)
    values = [np.asarray(v) for v in values]
    if lay.from_keras and values:
        values = list(lay.from_keras(values))
    if len(values) != len(targets):
        if not layer.built and values:
            msg = (f"Layer {layer.name!r} is not built yet, but {where} holds {len(values)} "
                   f"weights for it: give the model an input shape before loading weights")
        else:
            msg = (f"Layer {layer.name!r} ({type(layer).__name__}) expects {len(targets)} "
                   f"weight(s), but {where} holds {len(values)} saved weight(s) for it")
        if skip_mismatch:
            warnings.warn(msg + "; skipped", stacklevel=3)
            return
        raise ValueError(msg)
    for var, value in zip(targets, values):
        if value.shape != var.shape:
            msg = (f"Shape mismatch in layer {layer.name!r} for weight {var.path!r}: the "
                   f"weight has shape {var.shape}, the value saved in {where} has shape "
                   f"{value.shape}")
            if skip_mismatch:
                warnings.warn(msg + "; skipped", stacklevel=3)
                return
            raise ValueError(msg)
    for var, value in zip(targets, values):
        var._assign_array(value)


# -- legacy layout ---------------------------------------------------------------------------
def write_attr_list(group, name, data):
    """Keras' save_attributes_to_hdf5_group: a list of byte strings, chunked if large."""
    data = [d.encode("utf8") if isinstance(d, str) else d for d in data]
    arr = np.asarray(data)
    chunks = 1
    parts = np.array_split(arr, chunks)
    while any(p.nbytes > HDF5_OBJECT_HEADER_LIMIT for p in parts):
        chunks += 1
        parts = np.array_split(arr, chunks)
    if chunks > 1:
        for i, part in enumerate(parts):
            group.attrs[f"{name}{i}"] = part
    else:
        group.attrs[name] = arr


def read_attr_list(group, name) -> list[str]:
    def decode(values):
        return [v.decode("utf8") if hasattr(v, "decode") else str(v) for v in values]
    if name in group.attrs:
        return decode(group.attrs[name])
    out, i = [], 0
    while f"{name}{i}" in group.attrs:
        out += decode(group.attrs[f"{name}{i}"])
        i += 1
    return out


def write_named_values(group, pairs):
    """Datasets named by (possibly '/'-separated) names, and their `weight_names`."""
    write_attr_list(group, "weight_names", [n for n, _ in pairs])
    for name, value in pairs:
        group.create_dataset(name, data=np.asarray(value))


def read_named_values(group) -> list[np.ndarray]:
    return [np.asarray(group[name]) for name in read_attr_list(group, "weight_names")]


def write_legacy_weights(group, model, keras_version, backend):
    """save_weights_to_hdf5_group: layer_names, then a group per layer."""
    layers = keras_layers(model)
    write_attr_list(group, "layer_names", [l.name for l in layers])
    group.attrs["backend"] = backend
    group.attrs["keras_version"] = keras_version
    for layer in sorted(layers, key=lambda l: l.name):
        g = group.create_group(layer.name)
        values = layer_values(layer)
        names = [_legacy_weight_name(layer, w) for w in keras_vars(layer)]
        write_named_values(g, list(zip(names, values)))
    write_named_values(group.create_group("top_level_model_weights"), [])


def _legacy_weight_name(layer, var):
    return var.path if var.path.startswith(layer.name + "/") else f"{layer.name}/{var.path}"


def load_legacy_weights(group, model, where, by_name=False, skip_mismatch=False):
    """Set the model's weights from a legacy weights group: by layer order as Keras does
    (layers without weights skipped), or by layer name (by_name=True skips layers the
    file lacks, by_name="strict" requires them all)."""
    saved_names = read_attr_list(group, "layer_names")
    if not saved_names and "layer_names" not in group.attrs:
        raise ValueError(f"{where} holds no layer weights (no 'layer_names' attribute)")
    saved = {}
    for name in saved_names:
        if name not in group:
            raise ValueError(f"{where} lists layer {name!r} but has no group for it")
        values = read_named_values(group[name])
        if values:
            saved[name] = values
    layers = [l for l in keras_layers(model) if keras_vars(l)]
    if by_name:
        by = {l.name: l for l in keras_layers(model)}
        for name, values in saved.items():
            if name in by:
                assign_layer(by[name], values, f"{where} (layer {name!r})", skip_mismatch)
        missing = [l.name for l in layers if l.name not in saved]
        if by_name == "strict" and missing:
            raise ValueError(f"{where} has no weights for layer(s) {missing} of the model")
        return
    if len(saved) != len(layers):
        raise ValueError(f"Layer count mismatch when loading weights from {where}: the model "
                         f"has {len(layers)} layers with weights "
                         f"({[l.name for l in layers]}), the file {len(saved)} "
                         f"({list(saved)})")
    for layer, (name, values) in zip(layers, saved.items()):
        assign_layer(layer, values, f"{where} (layer {name!r})", skip_mismatch)


# -- Keras 3 layout ----------------------------------------------------------------------------
def v3_layer_paths(model, prefix=""):
    """(group path, layer) for every layer below `model`, as Keras 3 names them: a
    Sequential or functional model's layers under `layers/<snake_case class name>`, the
    layers a custom layer or subclassed model holds under their attribute names (a list's
    items under `<attribute>/<snake_case class name>`), each layer once."""
    out, seen = [], {id(model)}
    _children_paths(model, prefix, out, seen)
    return out


def _join(a, b):
    return f"{a}/{b}" if a else b


def _unique_name(base, used):
    if base in used:
        used[base] += 1
        return f"{base}_{used[base]}"
    used[base] = 0
    return base


def _class_base(layer):
    name = type(layer).__name__
    if _is_model(layer) and name == "Model":
        name = "Functional"
    return keras_snake_case(name)


def _add(layer, path, out, seen):
    if id(layer) in seen:
        return
    seen.add(id(layer))
    out.append((path, layer))
    _children_paths(layer, path, out, seen)


def _children_paths(obj, path, out, seen):
    from ..layers.layer import Layer
    if _is_graph_model(obj):
        used: dict[str, int] = {}
        for layer in keras_layers(obj):
            _add(layer, _join(path, f"layers/{_unique_name(_class_base(layer), used)}"), out,
                 seen)
        return
    if type(obj).__module__.startswith("kcompile.") and \
            not getattr(obj, "keras_saves_sublayers", False):
        # kcompile's own layers keep their variables themselves, or say which sublayers
        # Keras saves in groups of their own (an RNN's cell, a wrapper's layers).
        children = getattr(obj, "_keras_saved_children", None)
        for sub, child in (children() if children is not None else []):
            _add(child, _join(path, sub), out, seen)
        return
    for attr, value in attribute_children(obj):
        if isinstance(value, Layer):
            _add(value, _join(path, attr), out, seen)
            continue
        used = {}
        items = list(value.values()) if isinstance(value, dict) else list(value)
        for item in items:
            if isinstance(item, Layer):
                _add(item, _join(path, f"{attr}/{_unique_name(_class_base(item), used)}"), out,
                     seen)


def _is_graph_model(obj):
    """A Sequential or functional model: its layers are `model.layers`, not attributes."""
    from ..models import Sequential
    return isinstance(obj, Sequential) or (_is_model(obj) and obj._outputs is not None)


def _own_weights(layer) -> bool:
    return bool(keras_vars(layer, own=True))


def _vars_group(f, path, create=False, name=None):
    if create:
        g = f.require_group(path) if path else f
        v = g.create_group("vars")
        if name is not None:
            v.attrs["name"] = name
        return v
    if path in f and "vars" in f[path]:
        return f[path]["vars"]
    alt = path.replace("layers", "_layer_checkpoint_dependencies", 1)   # Keras 2.13-2.15
    if alt in f and "vars" in f[alt]:
        return f[alt]["vars"]
    return None


def _read_vars(group):
    if group is None:
        return []
    n = len([k for k in group.keys() if k.isdigit()])
    return [np.asarray(group[str(i)]) for i in range(n)]


def write_v3_weights(f, model, optimizer_pairs=None):
    root = _vars_group(f, "", create=True, name=model.name)
    for i, value in enumerate(layer_values(model, own=True)):   # a subclassed model's own
        root.create_dataset(str(i), data=value)
    for path, layer in v3_layer_paths(model):
        lay = layout(layer)
        values = layer_values(layer, own=True)
        if lay.subpath:
            _vars_group(f, path, create=True, name=layer.name)
            g = _vars_group(f, f"{path}/{lay.subpath}", create=True)
        else:
            g = _vars_group(f, path, create=True, name=layer.name)
        for i, value in enumerate(values):
            g.create_dataset(str(i), data=value)
    if optimizer_pairs is not None:
        g = _vars_group(f, "optimizer", create=True, name=optimizer_pairs[0][0].split("/")[0]
                        if optimizer_pairs else "optimizer")
        for i, (_, value) in enumerate(optimizer_pairs):
            g.create_dataset(str(i), data=value)


def load_v3_weights(f, model, where, skip_mismatch=False):
    """Set layer weights from a Keras 3 weights file; return the saved optimizer
    variables (a list, empty when none were saved)."""
    if _own_weights(model):
        assign_layer(model, _read_vars(_vars_group(f, "")), f"{where} (vars)", skip_mismatch,
                     own=True)
    for path, layer in v3_layer_paths(model):
        lay = layout(layer)
        full = f"{path}/{lay.subpath}" if lay.subpath else path
        values = _read_vars(_vars_group(f, full))
        if values or _own_weights(layer):
            assign_layer(layer, values, f"{where} ({full})", skip_mismatch, own=True)
    return _read_vars(_vars_group(f, "optimizer"))
