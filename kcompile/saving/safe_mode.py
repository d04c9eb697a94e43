"""Safe mode: whether a loader may turn saved Python bytecode (a `Lambda` layer's
function) back into code.

As Keras 3: `load_model(..., safe_mode=True)` is the default and refuses it, as do
`model_from_json` and `layers.deserialize`; `safe_mode=False` or
`config.enable_unsafe_deserialization()` allows it. Outside any loader (a direct
`Lambda.from_config(config)`) the answer is "refuse": the check fails closed.
"""
from __future__ import annotations

import contextlib
import contextvars

_scope: contextvars.ContextVar = contextvars.ContextVar("kcompile_safe_mode", default=None)


@contextlib.contextmanager
def safe_mode_scope(safe_mode=True):
    """Loading inside this block follows `safe_mode` (None keeps the enclosing setting)."""
    if safe_mode is None:
        yield
        return
    token = _scope.set(bool(safe_mode))
    try:
        yield
    finally:
        _scope.reset(token)


def default_scope(safe_mode=True):
    """The scope of a nested loader (`deserialize_keras_object`, `layers.deserialize`):
    an enclosing loader's setting wins over this one's default, as in Keras."""
    return safe_mode_scope(safe_mode if _scope.get() is None else None)


def in_safe_mode(safe_mode=None) -> bool:
    """True unless Python code may be loaded: `safe_mode=False` given here or by the
    enclosing loader, or unsafe deserialization enabled globally."""
    from ..config import unsafe_deserialization_enabled
    if unsafe_deserialization_enabled():
        return False
    if safe_mode is None:
        safe_mode = _scope.get()
    return safe_mode is not False
