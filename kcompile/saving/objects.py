"""`keras.saving.serialize_keras_object` / `deserialize_keras_object`: any kcompile or
registered object as Keras 3's `{"module", "class_name", "config", "registered_name"}`
dict and back (layers, regularizers, initializers, constraints, optimizers, losses,
metrics, activation functions, numpy arrays, and lists / dicts of them)."""
from __future__ import annotations

import numpy as np

from .serialization import (_is_builtin, _lookup_custom, custom_object_scope,
                            get_registered_name, serialize_layer)

# The kcompile modules whose classes and functions a config may name, and the Keras
# module each is saved under.
_MODULES = ("layers", "regularizers", "initializers", "constraints", "optimizers.schedules",
            "optimizers", "losses", "metrics", "activations")


def _module_of(obj) -> str | None:
    """The kcompile module (of _MODULES) defining `obj`, or None for a user's object."""
    name = getattr(obj, "__module__", "") or ""
    for mod in _MODULES:
        if name == f"kcompile.{mod}" or name.startswith(f"kcompile.{mod}."):
            return mod
    return None


def serialize_keras_object(obj):
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        return {"class_name": "__numpy__", "config": {"value": np.asarray(obj).tolist(),
                                                     "dtype": str(np.asarray(obj).dtype)}}
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(v) for v in obj]
    if isinstance(obj, dict):
        return {k: serialize_keras_object(v) for k, v in obj.items()}
    from ..layers.layer import Layer
    if isinstance(obj, Layer):
        return serialize_layer(obj, for_model=False)
    if isinstance(obj, type):
        raise TypeError(f"Cannot serialize the class {obj.__name__}: serialize an instance")
    if callable(obj) and not hasattr(obj, "get_config"):       # a function
        mod = _module_of(obj)
        return {"module": f"keras.{mod}" if mod else obj.__module__, "class_name": "function",
                "config": obj.__name__, "registered_name": get_registered_name(obj)}
    if not hasattr(obj, "get_config"):
        raise TypeError(f"Cannot serialize {obj!r} of type {type(obj).__name__}: it has no "
                        f"`get_config()`")
    cls = type(obj)
    mod = _module_of(cls)
    builtin = mod is not None and _is_builtin(cls)
    return {"module": f"keras.{mod}" if builtin else cls.__module__,
            "class_name": cls.__name__,
            "config": serialize_keras_object(obj.get_config()),
            "registered_name": None if builtin else get_registered_name(cls)}


def _kcompile_own(obj, want_class) -> bool:
    """A public class (want_class) or function defined in kcompile: never a module, a
    builtin, or a name some kcompile module imported from elsewhere (os, numpy, ...)."""
    if want_class != isinstance(obj, type) or not callable(obj):
        return False
    module = getattr(obj, "__module__", "") or ""
    return (module == "kcompile" or module.startswith("kcompile.")) \
        and not getattr(obj, "__name__", "_").startswith("_")


def _find(name, want_class):
    """kcompile's own class or function called `name` in the modules a config may name."""
    import functools
    import kcompile
    if not isinstance(name, str) or not name or name.startswith("_"):
        return None
    for mod in _MODULES:
        module = functools.reduce(getattr, mod.split("."), kcompile)
        found = getattr(module, name, None)
        if found is None or not _kcompile_own(found, want_class):
            found = None
            for table in ("_REGISTRY", "_CLASSES", "_FUNCTIONS"):
                found = getattr(module, table, {}).get(name)
                if found is not None and _kcompile_own(found, want_class):
                    break
                found = None
        if found is not None:
            return found
    return None


def deserialize_keras_object(config, custom_objects=None, safe_mode=True, **kwargs):
    """The object a `serialize_keras_object` dict describes. Only registered objects,
    `custom_objects` and kcompile's own classes and functions are found; nothing is
    imported from a config's `module`, and a Lambda's Python code needs safe_mode=False."""
    from .safe_mode import default_scope
    with custom_object_scope(custom_objects), default_scope(safe_mode):
        return _deserialize(config)


def _deserialize(config):
    if isinstance(config, list):
        return [_deserialize(v) for v in config]
    if not isinstance(config, dict):
        return config
    if "class_name" not in config:
        return {k: _deserialize(v) for k, v in config.items()}
    class_name, inner = config["class_name"], config.get("config")
    if class_name == "__numpy__":
        return np.asarray(inner["value"], dtype=inner["dtype"])
    if class_name == "function":
        fn = _lookup_custom(config.get("registered_name"), inner) or _find(inner, False)
        if fn is None:
            raise ValueError(f"Unknown function {inner!r}: pass it in `custom_objects=` or "
                             f"register it with `register_keras_serializable`")
        return fn
    cls = _lookup_custom(config.get("registered_name"), class_name) or _find(class_name, True)
    if cls is None:
        raise ValueError(f"Unknown object {class_name!r} (module {config.get('module')!r}): "
                         f"pass it in `custom_objects=` or register it with "
                         f"`register_keras_serializable`")
    from ..layers.layer import Layer
    if isinstance(cls, type) and issubclass(cls, Layer):
        from .serialization import deserialize_layer
        return deserialize_layer(config)
    inner = _deserialize(inner or {})
    if hasattr(cls, "from_config"):
        return cls.from_config(inner)
    return cls(**inner)
