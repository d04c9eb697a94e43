"""Lambda: a Python function of `ops` calls as a layer.

Its function is traced like any `call()`, so it must be written with kcompile's
`ops` (or the operators of the symbolic tensors). A Python lambda is saved as
Keras 3 saves it: its marshalled bytecode, base64-encoded, with its defaults and
closure values. Turning those bytes back into code runs whatever they hold, so
loading refuses it unless safe mode is off (`safe_mode=False` given to the loader,
or `config.enable_unsafe_deserialization()`); see kcompile/saving/safe_mode.py.
A named function is saved by name and loads only if it is registered
(`register_keras_serializable`) or passed in `custom_objects=`.
"""
from __future__ import annotations

import binascii
import builtins
import codecs
import inspect
import marshal
import types

from .layer import Layer


def _lambda_refused(layer_name, what):
    return ValueError(
        f"Requested the deserialization of a `Lambda` layer ({layer_name!r}) whose "
        f"`{what}` is a Python lambda. This carries a potential risk of arbitrary code "
        f"execution and thus it is disallowed by default. If you trust the source of the "
        f"artifact, you can override this error by passing `safe_mode=False` to the "
        f"loading function, or calling `kcompile.config.enable_unsafe_deserialization()`.")


def _is_python_lambda(fn):
    return isinstance(fn, types.LambdaType) and fn.__name__ == "<lambda>"


def function_to_config(fn):
    """Keras 3's entry for a Lambda's function: `__lambda__` bytecode or a named function."""
    if _is_python_lambda(fn):
        code = codecs.encode(marshal.dumps(fn.__code__), "base64").decode("ascii")
        closure = tuple(c.cell_contents for c in fn.__closure__) if fn.__closure__ else None
        return {"class_name": "__lambda__",
                "config": {"code": code, "defaults": fn.__defaults__, "closure": closure}}
    if callable(fn):
        from ..saving.objects import serialize_keras_object
        return serialize_keras_object(fn)
    raise ValueError(f"Invalid input type for serialization. Received: {fn} of type "
                     f"{type(fn)}.")


def _code_globals():
    """The names a loaded lambda sees: the ones Keras programs write (`ops.x`,
    `keras.ops.x`), nothing of the loader's own module."""
    import kcompile
    from kcompile import ops
    return {"__builtins__": builtins, "ops": ops, "keras": kcompile, "kcompile": kcompile}


def _load_lambda(entry, layer_name, what):
    inner = entry.get("config") or {}
    try:
        raw = codecs.decode(str(inner["code"]).encode("ascii"), "base64")
        code = marshal.loads(raw)
    except (KeyError, UnicodeEncodeError, binascii.Error, ValueError, EOFError, TypeError) as e:
        raise ValueError(f"Lambda layer {layer_name!r}: its saved `{what}` cannot be read "
                         f"(written by another Python version, or corrupt): {e}") from e
    if not isinstance(code, types.CodeType):
        raise ValueError(f"Lambda layer {layer_name!r}: its saved `{what}` is not code")
    defaults = inner.get("defaults")
    closure = inner.get("closure")
    closure = tuple(types.CellType(v) for v in closure) if closure is not None else None
    return types.FunctionType(code, _code_globals(), name=code.co_name,
                              argdefs=tuple(defaults) if defaults is not None else None,
                              closure=closure)


def function_from_config(entry, layer_name, what, safe_mode=None):
    """The callable a saved Lambda entry names. Bytecode only outside safe mode, and the
    check comes before anything in the entry is decoded."""
    from ..saving.safe_mode import in_safe_mode
    if isinstance(entry, dict) and entry.get("class_name") == "__lambda__":
        if in_safe_mode(safe_mode):
            raise _lambda_refused(layer_name, what)
        return _load_lambda(entry, layer_name, what)
    if isinstance(entry, dict) and entry.get("class_name") == "function":
        from ..saving.objects import deserialize_keras_object
        return deserialize_keras_object(entry)
    if isinstance(entry, str):
        from ..saving.objects import deserialize_keras_object
        return deserialize_keras_object({"class_name": "function", "config": entry})
    raise ValueError(f"Lambda layer {layer_name!r}: `{what}` must be a saved function "
                     f"(a `__lambda__` or `function` entry). Received: {entry!r}")


class Lambda(Layer):
    """`Lambda(function, output_shape=None, mask=None, arguments=None)`: the layer
    whose call is `function(inputs, **arguments)` (with `mask=` / `training=` when the
    function takes them)."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        if not callable(function):
            raise ValueError(f"The `function` of a Lambda layer must be callable. "
                             f"Received: function={function!r}")
        super().__init__(**kwargs)
        self.arguments = dict(arguments or {})
        self.function = function
        self.supports_masking = mask is not None
        self.mask = mask
        self._output_shape = output_shape
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):
            params = {}
        self._fn_expects_training_arg = "training" in params
        self._fn_expects_mask_arg = "mask" in params

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if self._fn_expects_mask_arg:
            kwargs["mask"] = mask
        if self._fn_expects_training_arg:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_mask(self, inputs, mask=None):
        if callable(self.mask):
            return self.mask(inputs, mask)
        return self.mask

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:
            return super().compute_output_shape(input_shape)
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        first = input_shape[0] if isinstance(input_shape, list) else input_shape
        batch = first[0] if first else None
        shape = self._output_shape
        if isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple)):
            return [(batch, *s) for s in shape]
        return (batch, *shape)

    def get_config(self):
        from ..saving.objects import serialize_keras_object
        config = {"function": function_to_config(self.function)}
        if self._output_shape is not None:
            config["output_shape"] = (function_to_config(self._output_shape)
                                      if callable(self._output_shape) else self._output_shape)
        if self.mask is not None:
            config["mask"] = (function_to_config(self.mask) if callable(self.mask)
                              else serialize_keras_object(self.mask))
        config["arguments"] = serialize_keras_object(self.arguments)
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config, custom_objects=None, safe_mode=None):
        from ..saving.objects import deserialize_keras_object
        from ..saving.serialization import custom_object_scope, dtype_name
        config = dict(config)
        name = config.get("name", "lambda")
        with custom_object_scope(custom_objects):
            # Every entry is checked before any is decoded: a refused file runs nothing.
            for key in ("function", "output_shape", "mask"):
                if isinstance(config.get(key), dict) \
                        and config[key].get("class_name") == "__lambda__":
                    from ..saving.safe_mode import in_safe_mode
                    if in_safe_mode(safe_mode):
                        raise _lambda_refused(name, key)
            if "function" not in config:
                raise ValueError(f"Lambda layer {name!r}: its config has no `function`")
            config["function"] = function_from_config(config["function"], name, "function",
                                                      safe_mode)
            shape = config.get("output_shape")
            if isinstance(shape, dict):
                config["output_shape"] = function_from_config(shape, name, "output_shape",
                                                              safe_mode)
            elif isinstance(shape, list) and all(isinstance(d, (int, type(None))) for d in shape):
                config["output_shape"] = tuple(shape)
            mask = config.get("mask")
            if isinstance(mask, dict) and mask.get("class_name") in ("__lambda__", "function"):
                config["mask"] = function_from_config(mask, name, "mask", safe_mode)
            elif mask is not None:
                config["mask"] = deserialize_keras_object(mask)
            if "arguments" in config:
                config["arguments"] = deserialize_keras_object(config["arguments"])
        if "dtype" in config:
            config["dtype"] = dtype_name(config["dtype"])
        for key in ("module", "registered_name"):
            config.pop(key, None)
        return cls(**config)
