"""`keras.config`: the library-wide settings Keras programs read and set.

kcompile computes in float32 and lays images out channels-last, so those settings
accept only what the compiler implements and say so otherwise; `epsilon` is the fuzz
factor the losses use when a model is traced (set it before compiling).
"""
from __future__ import annotations

_settings = {"floatx": "float32", "epsilon": 1e-7, "image_data_format": "channels_last",
             "unsafe_deserialization": False, "interactive_logging": True,
             "traceback_filtering": True, "dtype_policy": "float32"}


def backend() -> str:
    """The name of the backend: kcompile's own compiler."""
    return "kcompile"


def floatx() -> str:
    return _settings["floatx"]


def set_floatx(value):
    if value not in ("float16", "bfloat16", "float32", "float64"):
        raise ValueError(f"Unknown `floatx` value: {value}. Expected one of "
                         f"{{'float16', 'bfloat16', 'float32', 'float64'}}")
    if value != "float32":
        raise ValueError(f"kcompile computes in float32 only; set_floatx({value!r}) is not "
                         f"supported")


def epsilon() -> float:
    return _settings["epsilon"]


def set_epsilon(value):
    value = float(value)
    if not value > 0:
        raise ValueError(f"`epsilon` must be a positive number, received {value!r}")
    _settings["epsilon"] = value


def image_data_format() -> str:
    return _settings["image_data_format"]


def set_image_data_format(data_format):
    fmt = str(data_format).lower()
    if fmt not in ("channels_first", "channels_last"):
        raise ValueError(f"The `data_format` argument must be one of {{'channels_first', "
                         f"'channels_last'}}. Received: data_format={data_format}")
    _settings["image_data_format"] = fmt


def dtype_policy():
    return _settings["dtype_policy"]


def set_dtype_policy(policy):
    name = getattr(policy, "name", policy)
    if name != "float32":
        raise ValueError(f"kcompile computes in float32 only; the dtype policy {name!r} "
                         f"is not supported")
    _settings["dtype_policy"] = name


def enable_unsafe_deserialization():
    """Allow `Lambda` layers' Python code to be loaded from saved models."""
    _settings["unsafe_deserialization"] = True


def unsafe_deserialization_enabled() -> bool:
    return _settings["unsafe_deserialization"]


def enable_interactive_logging():
    _settings["interactive_logging"] = True


def disable_interactive_logging():
    _settings["interactive_logging"] = False


def is_interactive_logging_enabled() -> bool:
    return _settings["interactive_logging"]


def enable_traceback_filtering():
    _settings["traceback_filtering"] = True


def disable_traceback_filtering():
    _settings["traceback_filtering"] = False


def is_traceback_filtering_enabled() -> bool:
    return _settings["traceback_filtering"]
