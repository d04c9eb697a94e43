"""Objects to and from Keras configs: layers, models, initializers, losses, optimizers.

The configs are Keras 3's (`{"module", "class_name", "config", "registered_name"}`
entries), so a file kcompile writes loads in Keras and a file Keras 2 or 3 wrote
loads here. Reading is lenient the way Keras' legacy loader is: dtype policies
become dtype names, Keras-only keys kcompile has no use for are dropped, and
Keras 2 spellings (`batch_input_shape`, `inbound_nodes` as lists) are accepted.

Classes are found by name: custom objects first (the `custom_objects=` argument,
`register_keras_serializable`), then kcompile's own modules, so a layer someone
adds to `kcompile.layers` is loadable without touching this file.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import re
import warnings

_custom_scope: contextvars.ContextVar = contextvars.ContextVar("kcompile_custom_objects",
                                                               default={})
_GLOBAL_CUSTOM_OBJECTS: dict = {}

# Keys Keras writes into layer configs that mean nothing to kcompile when they
# hold their default: dropped without a word.
KERAS_ONLY_KEYS = {"quantization_config", "sparse", "ragged", "optional", "lora_rank",
                   "lora_alpha", "autocast", "input_dtype", "synchronized", "seed_generator",
                   "registered_name", "module", "time_major",
                   "renorm_momentum", "renorm_clipping"}

# Per layer class: Keras config keys that kcompile spells differently.
CONFIG_RENAMES = {
    "InputLayer": {"batch_input_shape": "batch_shape", "input_shape": "shape"},
    "LeakyReLU": {"alpha": "negative_slope"},          # Keras 2's name of the slope
}
# Per layer class: keyword arguments a constructor takes through **kwargs.
EXTRA_KWARGS = {"InputLayer": {"batch_shape", "input_shape"},
                # Keras' recurrent layers take these through **kwargs and save them.
                **{n: {"zero_output_for_mask", "implementation"}
                   for n in ("LSTM", "GRU", "SimpleRNN")}}

# Model class names of other Keras versions.
MODEL_ALIASES = {"Functional": "Model", "Model": "Model", "Sequential": "Sequential"}


# -- custom objects ------------------------------------------------------------------------
def register_keras_serializable(package="Custom", name=None):
    """Decorator registering a class or function under `package>name` for loading."""
    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        _GLOBAL_CUSTOM_OBJECTS[key] = obj
        obj._registered_name = key
        return obj
    return decorator


def get_custom_objects() -> dict:
    """The global registry of custom objects (as keras.saving.get_custom_objects)."""
    return _GLOBAL_CUSTOM_OBJECTS


def get_registered_name(obj) -> str:
    return getattr(obj, "_registered_name", None) or getattr(obj, "__name__", type(obj).__name__)


@contextlib.contextmanager
def custom_object_scope(custom_objects):
    token = _custom_scope.set({**_custom_scope.get(), **(custom_objects or {})})
    try:
        yield
    finally:
        _custom_scope.reset(token)


def _lookup_custom(*names):
    scope = {**_GLOBAL_CUSTOM_OBJECTS, **_custom_scope.get()}
    for name in names:
        if not name:
            continue
        if name in scope:
            return scope[name]
        if ">" in name and name.split(">")[-1] in scope:
            return scope[name.split(">")[-1]]
    for key, obj in scope.items():        # registered as package>Name, asked for by Name
        if ">" in key and key.split(">")[-1] in names:
            return obj
    return None


# -- helpers -----------------------------------------------------------------------------------
def keras_snake_case(name: str) -> str:
    """Keras' naming.to_snake_case (the .keras weight paths use it)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def accepted_kwargs(cls) -> set | None:
    """The keyword arguments `cls(...)` accepts, following **kwargs up the MRO;
    None if some constructor takes arbitrary keywords."""
    from ..layers.layer import Layer, _BASE_KWARGS
    names: set = set(EXTRA_KWARGS.get(cls.__name__, ()))
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is Layer:
            return names | set(_BASE_KWARGS) | {"name", "trainable", "dtype"}
        if klass is object:
            return names
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def _is_builtin(cls) -> bool:
    return cls.__module__.startswith("kcompile.")


def _meaningless(value) -> bool:
    return value is None or value is False or value == {} or value == []


def filter_kwargs(cls, config: dict, what: str) -> dict:
    """Drop config keys `cls` does not take: silently when Keras-only or empty,
    with a warning when a real setting is lost."""
    if not _is_builtin(cls):
        return dict(config)
    config = {k: v for k, v in config.items() if k not in KERAS_ONLY_KEYS}
    accepted = accepted_kwargs(cls)
    if accepted is None:
        return config
    out = {}
    for k, v in config.items():
        if k in accepted:
            out[k] = v
        elif not _meaningless(v):
            warnings.warn(f"{what}: kcompile's {cls.__name__} has no argument {k!r}; "
                          f"the saved value {v!r} is ignored", stacklevel=3)
    return out


def dtype_name(dtype):
    """A dtype from a config: a name, or Keras' DTypePolicy / Policy dict."""
    if isinstance(dtype, dict):
        cfg = dtype.get("config", {})
        name = cfg.get("name", "float32") if isinstance(cfg, dict) else "float32"
        return "float32" if name.startswith("mixed_") else name
    return dtype


# -- nested objects: initializers, regularizers, constraints, activations ---------------------------
def _resolve_class(entry, registry, kind):
    class_name = entry.get("class_name")
    cls = _lookup_custom(entry.get("registered_name"), class_name)
    if cls is None:
        cls = registry.get(class_name) or registry.get(keras_snake_case(class_name or ""))
    if cls is None:
        raise ValueError(f"Unknown {kind}: {class_name!r}. Please ensure you are using a "
                         f"kcompile {kind} or pass it in `custom_objects=`.")
    return cls


def deserialize_nested(value, kind: str):
    """An initializer / regularizer / constraint from its config (or name)."""
    from .. import constraints, initializers, regularizers
    module = {"initializer": initializers, "regularizer": regularizers,
              "constraint": constraints}[kind]
    if value is None:
        return None
    if isinstance(value, str):
        custom = _lookup_custom(value)
        if custom is not None:
            return custom() if isinstance(custom, type) else custom
        return module.get(value)
    if isinstance(value, dict) and "class_name" in value:
        cls = _resolve_class(value, module._REGISTRY, kind)
        cfg = value.get("config") or {}
        if hasattr(cls, "from_config") and not _is_builtin(cls):
            return cls.from_config(cfg)
        return cls(**filter_kwargs(cls, cfg, f"{kind} {value['class_name']}"))
    return value


def deserialize_activation(value):
    from .. import activations
    if isinstance(value, dict):          # Keras 3: {"class_name": "function", "config": "name"}
        name = value.get("config") if isinstance(value.get("config"), str) else None
        name = name or value.get("registered_name") or value.get("class_name")
        value = name
    if isinstance(value, str):
        custom = _lookup_custom(value)
        if custom is not None:
            return custom
        if value not in activations._REGISTRY:
            raise ValueError(f"Unknown activation function: {value!r}. Please ensure you are "
                             f"using a kcompile activation or pass it in `custom_objects=`.")
    return value


def layer_kwargs(cls, config: dict) -> dict:
    """Constructor arguments of layer class `cls` from a (kcompile or Keras) config."""
    config = dict(config)
    what = f"layer {config.get('name', cls.__name__)!r}"
    for old, new in CONFIG_RENAMES.get(cls.__name__, {}).items():
        if old in config and new not in config:
            config[new] = config.pop(old)
        config.pop(old, None)
    if "dtype" in config:
        config["dtype"] = dtype_name(config["dtype"])
    if isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
        config["axis"] = int(config["axis"][0])        # Keras 2 wrote axis=[3]
    for key, value in list(config.items()):
        if key.endswith("_initializer"):
            config[key] = deserialize_nested(value, "initializer")
        elif key.endswith("_regularizer"):
            config[key] = deserialize_nested(value, "regularizer")
        elif key.endswith("_constraint"):
            config[key] = deserialize_nested(value, "constraint")
        elif key == "activation" or key.endswith("_activation"):
            config[key] = deserialize_activation(value)
    return filter_kwargs(cls, config, what)


# -- layers --------------------------------------------------------------------------------------
def layer_classes() -> dict:
    """kcompile's layer and model classes by class name (read from the packages, so new
    layers are found without a table entry)."""
    from .. import layers, models
    from ..layers.layer import Layer
    out = {name: obj for name, obj in vars(layers).items()
           if isinstance(obj, type) and issubclass(obj, Layer)}
    for alias, name in MODEL_ALIASES.items():
        out[alias] = getattr(models, name)
    return out


def serialize_layer(layer, for_model=True) -> dict:
    """Keras 3's entry for a layer: module, class_name, config, registered_name, build_config."""
    cls = type(layer)
    from ..models import Model
    if isinstance(layer, Model) and _is_builtin(cls):      # a nested model
        from .model_config import model_to_config
        entry = model_to_config(layer)
        if getattr(layer, "_input_shape", None) is not None:
            entry["build_config"] = {"input_shape": [None, *layer._input_shape]}
        return entry
    from .objects import serialize_keras_object
    # Objects in a custom layer's config (a regularizer, a nested layer) become their
    # own {"class_name", "config"} entries, as Keras serializes them.
    config = serialize_keras_object(layer.get_config())
    if for_model:
        # The model's InputLayer carries the input shape; Keras 3 layers reject this key.
        config = {k: v for k, v in config.items() if k != "batch_input_shape"}
    builtin = _is_builtin(cls)
    entry = {"module": "keras.layers" if builtin else cls.__module__,
             # a class Keras exports under another name (GroupQueryAttention) says so
             "class_name": vars(cls).get("keras_class_name", cls.__name__),
             "config": config,
             "registered_name": None if builtin else get_registered_name(cls)}
    if getattr(layer, "built", False) and getattr(layer, "input_shape", None) is not None \
            and not isinstance(layer.input_shape, list):
        entry["build_config"] = {"input_shape": list(layer.input_shape)}
    shapes = getattr(layer, "build_shapes", None)     # a layer built from several shapes
    if shapes:
        entry["build_config"] = {"shapes_dict": {k: list(v) for k, v in shapes.items()}}
    return entry


def deserialize_layer(entry, custom_objects=None):
    """A layer (or model) from its config entry, Keras 2 or 3 style."""
    with custom_object_scope(custom_objects):
        if isinstance(entry, str):
            entry = {"class_name": entry, "config": {}}
        if not isinstance(entry, dict) or "class_name" not in entry:
            raise ValueError(f"Not a layer config: {entry!r}")
        class_name = entry["class_name"]
        cls = _lookup_custom(entry.get("registered_name"), class_name)
        if cls is None:
            cls = layer_classes().get(class_name)
        if cls is None:
            known = sorted(k for k in layer_classes() if k not in ("Layer", "Functional"))
            raise ValueError(f"Unknown layer: {class_name!r}. kcompile cannot load this layer: "
                             f"it supports {known}; a custom layer class must be passed "
                             f"in `custom_objects=`.")
        config = entry.get("config", {})
        from ..models import Model
        if isinstance(cls, type) and issubclass(cls, Model):
            return cls.from_config(config, custom_objects=custom_objects)
        return cls.from_config(config)
