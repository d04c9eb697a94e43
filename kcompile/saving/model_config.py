"""Model configs in Keras 3's layout: Sequential and functional (the graph of layer
calls as `inbound_nodes`), read back from Keras 2 and 3 files too.

`functional_graph` orders a functional model's layers as Keras' `model.layers` does
(by depth from the outputs, ties in traversal order), which is also the order of
the weights in a .keras file.
"""
from __future__ import annotations

from .serialization import (deserialize_layer, dtype_name, get_registered_name,
                            serialize_layer)


def input_layer_entry(name, shape, dtype):
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None, *shape], "dtype": dtype, "sparse": False,
                       "ragged": False, "name": name},
            "registered_name": None}


def sequential_config(model) -> dict:
    entries = []
    shape = model._input_shape
    if shape is not None:
        taken = {l.name for l in model.layers}
        name = "input_layer"
        i = 0
        while name in taken:
            i += 1
            name = f"input_layer_{i}"
        entries.append(input_layer_entry(name, list(shape), model._input_dtype))
    entries += [serialize_layer(l) for l in model.layers]
    config = {"name": model.name, "trainable": model.trainable, "dtype": model.dtype,
              "layers": entries}
    if shape is not None:
        config["build_input_shape"] = [None, *shape]
    return config


def sequential_from_config(cls, config, custom_objects=None):
    from ..layers.core import InputLayer
    if isinstance(config, list):        # Keras 1/2.0: the config is the list of layers
        config = {"layers": config}
    model = cls(name=config.get("name"))
    for entry in config.get("layers", []):
        layer = deserialize_layer(entry, custom_objects)
        if isinstance(layer, InputLayer):
            model._input_dtype = layer.dtype
        model.add(layer)
    build_shape = config.get("build_input_shape")
    if model._input_shape is None and build_shape:
        model.build(tuple(build_shape))
    if config.get("trainable") is False:
        model.trainable = False
    return model


def _node_key(t):
    from ..functional import call_key
    return call_key(t)


def _is_input_tensor(t):
    from ..layers.core import InputLayer
    return isinstance(t.layer, InputLayer) and not t.inputs


def functional_graph(model):
    """The layer calls of a functional model as Keras orders them.

    Returns (layers, nodes): `layers` in Keras' `model.layers` order (by depth from
    the outputs, ties in DFS order: keras/src/ops/function.py map_graph), and
    `nodes` mapping a node key to (layer, node index in that layer, any tensor of it).
    """
    from ..functional import flatten, tensors_in
    inputs = model._inputs
    finished, in_progress, order, op_index = set(), set(), [], {}
    info, layer_of = {}, {}

    def visit(t):
        k = _node_key(t)
        if k in finished:
            return
        if not _is_input_tensor(t) and any(t is i for i in inputs):
            finished.add(k)
            return
        if k in in_progress:
            raise ValueError(f"Tensor {t} is part of a cycle")
        op_index.setdefault(id(t.layer), len(op_index))
        layer_of[id(t.layer)] = t.layer
        in_progress.add(k)
        parents = [] if _is_input_tensor(t) else flatten(t.inputs) + tensors_in(t.kwargs)
        info[k] = (t, [_node_key(p) for p in parents])
        for p in parents:
            visit(p)
        finished.add(k)
        in_progress.discard(k)
        order.append(k)

    for o in model._outputs:
        visit(o)
    node_depth, op_depth, in_graph = {}, {}, set(order)
    for k in reversed(order):
        t, parents = info[k]
        depth = max(node_depth.setdefault(k, 0), op_depth.get(id(t.layer), 0))
        op_depth[id(t.layer)] = depth
        node_depth[k] = depth
        for p in parents:
            if p in in_graph:
                node_depth[p] = max(depth + 1, node_depth.get(p, 0))
    for t in inputs:
        if id(t.layer) not in op_depth and _is_input_tensor(t):
            op_depth[id(t.layer)] = 0
            op_index[id(t.layer)] = -1
            layer_of[id(t.layer)] = t.layer
            info[_node_key(t)] = (t, [])
            order.insert(0, _node_key(t))
    layers = sorted((layer_of[i] for i in op_depth), key=lambda l: (-op_depth[id(l)],
                                                                   op_index[id(l)]))
    counts, nodes = {}, {}
    for k in order:
        t = info[k][0]
        n = counts.get(id(t.layer), 0)
        counts[id(t.layer)] = n + 1
        nodes[k] = (t.layer, n, t)
    names = [l.name for l in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"Model {model.name!r} has several layers named {dup}: a saved "
                         f"functional model refers to its layers by name")
    return layers, nodes


def keras_layers(model):
    """The model's layers in Keras' `model.layers` order: for a model loaded from a
    config, the config's order (which is the order of the file's weights)."""
    from ..models import Sequential
    if isinstance(model, Sequential) or getattr(model, "_outputs", None) is None:
        return list(model.layers)
    layers = functional_graph(model)[0]
    saved = getattr(model, "_saved_layer_order", None)
    if saved and sorted(saved) == sorted(l.name for l in layers):
        by_name = {l.name: l for l in layers}
        return [by_name[n] for n in saved]
    return layers


def functional_config(model) -> dict:
    from ..functional import KerasTensor, structure_map
    layers, nodes = functional_graph(model)

    def history(t):
        return [t.layer.name, nodes[_node_key(t)][1], t.index]

    def ser(x):
        if isinstance(x, KerasTensor):
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(x.shape), "dtype": x.dtype,
                               "keras_history": history(x)}}
        if isinstance(x, dict):
            return {k: ser(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [ser(v) for v in x]
        return x

    per_layer = {id(l): [] for l in layers}
    for layer, index, t in nodes.values():
        per_layer[id(layer)].append((index, t))
    entries = []
    for layer in layers:
        if _is_input_tensor(per_layer[id(layer)][0][1]):
            t = per_layer[id(layer)][0][1]
            entry = input_layer_entry(layer.name, list(t.shape[1:]), t.dtype)
            inbound = []
        else:
            entry = serialize_layer(layer)
            inbound = [{"args": [ser(t.inputs)], "kwargs": ser(dict(t.kwargs))}
                       for _, t in sorted(per_layer[id(layer)], key=lambda p: p[0])]
        entry["name"] = layer.name
        entry["inbound_nodes"] = inbound
        entries.append(entry)
    return {"name": model.name, "trainable": model.trainable, "layers": entries,
            "input_layers": structure_map(history, model._input_struct),
            "output_layers": structure_map(history, model._output_struct)}


def _is_tensor_ref(x):
    return isinstance(x, (list, tuple)) and len(x) in (3, 4) and isinstance(x[0], str) \
        and isinstance(x[1], int) and isinstance(x[2], int)


def functional_from_config(cls, config, custom_objects=None):
    from ..layers.core import Input
    entries = {}
    for entry in config["layers"]:
        name = entry.get("name") or entry.get("config", {}).get("name")
        entries[name] = entry
    created, outputs = {}, {}
    for name, entry in entries.items():
        if entry["class_name"] == "InputLayer":
            cfg = dict(entry.get("config", {}))
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            shape = shape[1:] if shape is not None else cfg.get("shape") or cfg.get("input_shape")
            t = Input(shape=tuple(shape), dtype=dtype_name(cfg.get("dtype")) or "float32",
                      name=name)
            created[name] = t.layer
            outputs[(name, 0)] = t
        else:
            created[name] = deserialize_layer(entry, custom_objects)
            if created[name].name != name:
                created[name].name = name

    def tensor(name, node_index, tensor_index):
        if name not in entries:
            raise ValueError(f"The model config refers to an unknown layer {name!r}")
        out = node_output(name, node_index)
        return out[tensor_index] if isinstance(out, (list, tuple)) else out

    def resolve(x):
        if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
            return tensor(*x["config"]["keras_history"])
        if isinstance(x, dict):
            return {k: resolve(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [resolve(v) for v in x]
        return x

    def node_output(name, node_index):
        key = (name, node_index)
        if key in outputs:
            return outputs[key]
        nodes = entries[name].get("inbound_nodes", [])
        if node_index >= len(nodes):
            raise ValueError(f"Layer {name!r} has no node {node_index} in the model config")
        node = nodes[node_index]
        if isinstance(node, dict):                                  # Keras 3
            args = [resolve(a) for a in node.get("args", [])]
            kwargs = {k: resolve(v) for k, v in (node.get("kwargs") or {}).items()}
        else:                                                       # Keras 2: [[name, node, t, kw]]
            refs = [r for r in node if _is_tensor_ref(r)]
            tensors = [tensor(r[0], r[1], r[2]) for r in refs]
            args = [tensors[0] if len(tensors) == 1 else tensors]
            kwargs = dict(refs[0][3]) if refs and len(refs[0]) == 4 and refs[0][3] else {}
        if not args:
            raise ValueError(f"Layer {name!r} is called without positional arguments in the "
                             f"model config")
        kwargs.pop("mask", None)
        # Keras writes a call's default `training=False` into the node; as Keras
        # replays it, the model's own call decides training.
        kwargs.pop("training", None)
        # Arguments after the inputs (MultiHeadAttention's value) go on by position.
        outputs[key] = created[name](args[0], *args[1:], **kwargs)
        return outputs[key]

    def structure(spec):
        if _is_tensor_ref(spec):
            return tensor(spec[0], spec[1], spec[2])
        if isinstance(spec, dict):
            return {k: structure(v) for k, v in spec.items()}
        return [structure(s) for s in spec]

    inputs = structure(config["input_layers"])
    outs = structure(config["output_layers"])
    model = cls(inputs=inputs, outputs=outs, name=config.get("name"))
    model._saved_layer_order = list(entries)
    if config.get("trainable") is False:
        model.trainable = False
    return model


def model_to_config(model) -> dict:
    """{"class_name", "config"} of a model, as the `model_config` of a file."""
    from ..models import Sequential
    if isinstance(model, Sequential):
        return {"module": "keras", "class_name": "Sequential", "config": sequential_config(model),
                "registered_name": None}
    if type(model).__module__.startswith("kcompile."):
        return {"module": "keras.src.models.functional", "class_name": "Functional",
                "config": functional_config(model), "registered_name": None}
    return {"module": type(model).__module__, "class_name": type(model).__name__,
            "config": model.get_config(), "registered_name": get_registered_name(type(model))}


def model_from_config(config, custom_objects=None):
    """A model (or layer) from `{"class_name", "config"}`."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"Not a model config (expected a dict with 'class_name' and "
                         f"'config'): {str(config)[:200]}")
    return deserialize_layer(config, custom_objects)
