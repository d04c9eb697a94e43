"""Compile settings and optimizer state in Keras' layouts.

`training_config` (legacy HDF5) and `compile_config` (.keras) record the loss,
metrics, loss weights and optimizer; `optimizer_variables` lists the optimizer's
state (iterations, learning rate, slots) in Keras 3's order, so optimizer
weights written by Keras load here and ours load in Keras.
"""
from __future__ import annotations

import warnings

import numpy as np

from .model_config import keras_layers
from .serialization import (_is_builtin, _lookup_custom, _meaningless, accepted_kwargs,
                            custom_object_scope, get_registered_name)

# Keras 3 creates an optimizer's slots in these groups: all variables for the
# first group (interleaving the group's slots per variable), then the next group.
KERAS_SLOT_GROUPS = {
    "SGD": [("momentum",)],
    "RMSprop": [("velocity",), ("momentum",), ("average_gradient",)],
    "Adam": [("momentum", "velocity"), ("velocity_hat",)],
    "AdamW": [("momentum", "velocity"), ("velocity_hat",)],
    "Adagrad": [("accumulator",)],
    "Adamax": [("m", "u")],
    "Nadam": [("momentum", "velocity")],
    "Adadelta": [("accumulated_grad", "accumulated_delta_var")],
    "Lion": [("momentum",)],
    "Ftrl": [("accumulator", "linear")],
    "Lamb": [("momentum", "velocity")],
    "Adafactor": [("r", "c", "velocity")],
}
# The base class's slots come first, in this order, whatever the optimizer.
KERAS_BASE_SLOT_GROUPS = [("_average",), ("_accumulated_gradient",)]
# kcompile slot name -> Keras' name, where they differ.
KERAS_SLOT_NAMES = {"Adamax": {"m": "momentum", "u": "norm"}}
KERAS_BASE_SLOT_NAMES = {"_average": "average", "_accumulated_gradient": "gradient_accumulator"}
# Keys of Keras optimizer configs that kcompile has no use for.
OPTIMIZER_NOISE = {"is_legacy_optimizer", "jit_compile"}


# -- losses and metrics ----------------------------------------------------------------------
def _ser_object(obj):
    cls = type(obj)
    builtin = _is_builtin(cls)
    module = "keras.metrics" if cls.__module__.startswith("kcompile.metrics") else {
        "kcompile.losses": "keras.losses"}.get(cls.__module__, cls.__module__)
    return {"module": module, "class_name": cls.__name__, "config": obj.get_config(),
            "registered_name": None if builtin else get_registered_name(cls)}


def serialize_loss(spec):
    from .. import losses
    if spec is None or isinstance(spec, (str, bool, int, float)):
        return spec
    if isinstance(spec, dict):
        return {k: serialize_loss(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [serialize_loss(v) for v in spec]
    if isinstance(spec, losses._FunctionLoss):
        return get_registered_name(spec._fn)
    if isinstance(spec, losses.Loss):
        return _ser_object(spec)
    if callable(spec):
        return get_registered_name(spec)
    raise TypeError(f"Cannot serialize loss {spec!r}")


def _function_name(entry):
    """Keras 3 writes a function as {"class_name": "function", "config": name}."""
    if isinstance(entry, dict) and isinstance(entry.get("config"), str):
        return entry["config"]
    return None


def _deserialize(spec, again, known, kind, from_class):
    """The walk shared by losses and metrics: None, a name, {"class_name": ...}, or a
    dict / list of those. known(name): a builtin name; from_class(spec): the object."""
    if spec is None:
        return None
    if isinstance(spec, str):
        custom = _lookup_custom(spec)
        if custom is not None:
            return custom
        if known(spec):
            return spec
        raise ValueError(f"Unknown {kind} function: {spec!r}. Please ensure you are using a "
                         f"kcompile {kind} or pass it in `custom_objects=`.")
    if isinstance(spec, dict) and "class_name" in spec:
        name = _function_name(spec)
        return again(name) if name is not None else from_class(spec)
    if isinstance(spec, dict):
        return {k: again(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [again(v) for v in spec]
    return spec


def _class_of(spec, classes, kind):
    cls = _lookup_custom(spec.get("registered_name"), spec["class_name"]) \
        or classes.get(spec["class_name"])
    if cls is None:
        raise ValueError(f"Unknown {kind}: {spec['class_name']!r}. Please ensure you are "
                         f"using a kcompile {kind} or pass it in `custom_objects=`.")
    return cls


def deserialize_loss(spec):
    from .. import losses

    def from_class(spec):
        cls = _class_of(spec, losses._CLASSES, "loss")
        config = dict(spec.get("config") or {})
        if _is_builtin(cls):
            allowed = set(cls().kwargs) | {"reduction", "name"}
            config = {k: v for k, v in config.items() if k in allowed}
            if config.get("reduction") in ("auto", None):
                config.pop("reduction", None)
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    return _deserialize(spec, deserialize_loss,
                        lambda n: n in losses._FUNCTIONS or n in losses._CLASSES, "loss",
                        from_class)


def serialize_metrics(spec):
    from .. import metrics
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return {k: serialize_metrics(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [serialize_metrics(v) for v in spec]
    if isinstance(spec, metrics.Metric):
        if type(spec) is metrics.MeanMetricWrapper:
            return get_registered_name(spec.fn)
        return _ser_object(spec)
    if callable(spec):
        return get_registered_name(spec)
    raise TypeError(f"Cannot serialize metric {spec!r}")


def deserialize_metrics(spec):
    from .. import metrics

    def from_class(spec):
        config = dict(spec.get("config") or {})
        if spec["class_name"] == "MeanMetricWrapper" and isinstance(config.get("fn"), str):
            return deserialize_metrics(config["fn"])
        cls = _class_of(spec, metrics._CLASSES, "metric")
        if _is_builtin(cls):
            config.pop("dtype", None)
        return cls.from_config(config)
    return _deserialize(spec, deserialize_metrics,
                        lambda n: n in ("accuracy", "acc") or n in metrics._FUNCTIONS
                        or n in metrics._CLASSES, "metric", from_class)


# -- optimizers -----------------------------------------------------------------------------------
def optimizer_config(opt) -> dict:
    config = dict(opt.get_config())
    if getattr(opt, "decay", 0.0):
        config["decay"] = opt.decay
    return config


def serialize_optimizer(opt) -> dict:
    builtin = _is_builtin(type(opt))
    return {"module": "keras.optimizers" if builtin else type(opt).__module__,
            "class_name": type(opt).__name__, "config": optimizer_config(opt),
            "registered_name": None if builtin else get_registered_name(type(opt))}


def deserialize_optimizer(spec):
    from .. import optimizers
    if spec is None:
        return "rmsprop"
    if isinstance(spec, str):
        custom = _lookup_custom(spec)
        return custom() if isinstance(custom, type) else (custom or optimizers.get(spec))
    class_name = str(spec.get("class_name", ""))
    short = class_name.split(">")[-1]
    cls = _lookup_custom(spec.get("registered_name"), class_name, short) \
        or optimizers._REGISTRY.get(short.lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer: {class_name!r}. kcompile has "
                         f"{sorted(optimizers._REGISTRY)}; pass others in `custom_objects=`.")
    config = dict(spec.get("config") or {})
    if isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = optimizers.schedules.deserialize(config["learning_rate"])
    if _is_builtin(cls):
        accepted = (accepted_kwargs(cls) or set()) | {"lr", "decay"}
        for k in list(config):
            if k not in accepted:
                v = config.pop(k)
                if not _meaningless(v) and k not in OPTIMIZER_NOISE:
                    warnings.warn(f"optimizer {class_name}: kcompile has no argument {k!r}; "
                                  f"the saved value {v!r} is ignored", stacklevel=3)
        if config.get("decay") in (None, 0, 0.0):
            config.pop("decay", None)
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)


def _keras_slot_groups(opt):
    for klass in type(opt).__mro__:
        if klass.__name__ in KERAS_SLOT_GROUPS and _is_builtin(klass):
            return klass.__name__, KERAS_SLOT_GROUPS[klass.__name__]
    return type(opt).__name__, None


def keras_var_order(layer, own=False):
    """A layer's variables as Keras saves them: its trainable weights, then the others
    (sublayers' included, as the legacy .h5 layout has them); with own=True only the
    layer's own variables (the .keras layout gives each sublayer its own group)."""
    if own:
        ws = list(layer._weights)
        return [w for w in ws if w.trainable] + [w for w in ws if not w.trainable]
    return layer.trainable_weights + layer.non_trainable_weights


def optimizer_variables(model) -> list:
    """(Variable, Keras-style name) of the model's optimizer state, in Keras 3's order.
    Builds the optimizer's slots for the model's trainable weights first."""
    opt = model.optimizer
    opt.build(model.trainable_weights)
    trainable = {id(w) for w in model.trainable_weights}
    order = [w for layer in keras_layers(model) for w in keras_var_order(layer)
             if id(w) in trainable and w.path in opt._slots]
    seen = {id(w) for w in order}
    order += [w for w in model.trainable_weights if id(w) not in seen and w.path in opt._slots]
    cls_name, groups = _keras_slot_groups(opt)
    rename = {**KERAS_BASE_SLOT_NAMES, **KERAS_SLOT_NAMES.get(cls_name, {})}

    def name(var, slot):
        return f"{opt.name}/{var.path.replace('/', '_')}_{rename.get(slot, slot)}"

    out = [(opt.iterations, f"{opt.name}/iteration")]
    if opt._schedule is None:       # a schedule has no variable, in Keras as here
        out.append((opt._learning_rate, f"{opt.name}/learning_rate"))
    done = set()
    for group in KERAS_BASE_SLOT_GROUPS + (groups or []):
        for var in order:
            for slot in group:
                if slot in opt._slots[var.path]:
                    out.append((opt._slots[var.path][slot], name(var, slot)))
                    done.add((var.path, slot))
    for var in order:           # slots the table does not cover, per variable
        for slot, v in opt._slots[var.path].items():
            if (var.path, slot) not in done:
                out.append((v, name(var, slot)))
    # Optimizer-wide variables (Nadam's u_product) come last; Keras leaves them unnamed.
    out += [(v, "variable") for v in opt._globals.values()]
    return out


def set_optimizer_state(model, values, where: str) -> bool:
    """Assign saved optimizer variables (in Keras 3's order); warn and keep a fresh
    optimizer when they do not fit, as Keras does."""
    pairs = optimizer_variables(model)
    opt = model.optimizer
    if len(values) != len(pairs):
        warnings.warn(f"Skipping variable loading for optimizer {opt.name!r} from {where}, "
                      f"because it has {len(pairs)} variables whereas the saved optimizer has "
                      f"{len(values)} variables. The optimizer starts afresh.", stacklevel=3)
        return False
    for (var, name), value in zip(pairs, values):
        if np.shape(value) != var.shape:
            warnings.warn(f"Skipping variable loading for optimizer {opt.name!r} from {where}: "
                          f"{name} has shape {var.shape}, the saved value {np.shape(value)}. "
                          f"The optimizer starts afresh.", stacklevel=3)
            return False
    for (var, _), value in zip(pairs, values):
        var.assign(np.asarray(value))
    return True


def optimizer_values(model):
    """[(Keras-style name, value)] of the optimizer state to save (iterations as int)."""
    out = []
    for var, name in optimizer_variables(model):
        value = var.numpy()
        if var is model.optimizer.iterations:
            value = np.asarray(value, np.int64)
        out.append((name, value))
    return out


# -- compile settings ------------------------------------------------------------------------------
def _compile_common(model) -> dict:
    return {"loss": serialize_loss(model._loss_spec),
            "loss_weights": model._loss_weights,
            "metrics": serialize_metrics(model._metric_spec),
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": True}


def training_config(model) -> dict:
    """The `training_config` attribute of a legacy HDF5 file."""
    opt = model.optimizer
    return {**_compile_common(model),
            "optimizer_config": {"class_name": type(opt).__name__,
                                 "config": optimizer_config(opt)},
            "kcompile": {"backend": getattr(model, "_backend", "native")}}


def compile_config(model) -> dict:
    """The `compile_config` of a .keras archive's config.json."""
    return {"optimizer": serialize_optimizer(model.optimizer), **_compile_common(model)}


def compile_from_config(model, config, custom_objects=None, backend=None):
    """compile() the model with the settings of a training_config / compile_config."""
    with custom_object_scope(custom_objects):
        opt_spec = config.get("optimizer_config", config.get("optimizer"))
        optimizer = deserialize_optimizer(opt_spec)
        loss = deserialize_loss(config.get("loss"))
        metrics = deserialize_metrics(config.get("metrics"))
        weighted = deserialize_metrics(config.get("weighted_metrics"))
    kc = config.get("kcompile") or {}
    backend = backend or kc.get("backend") or "native"
    model.compile(optimizer=optimizer, loss=loss, loss_weights=config.get("loss_weights"),
                  metrics=metrics, weighted_metrics=weighted, backend=backend)
