"""`keras.optimizers`: Keras 3's optimizers (names, defaults, update formulas), emitted
as graph ops into the compiled training step, and `optimizers.schedules`.

One file per optimizer as in Keras; base.py has the shared step (learning rate or
schedule, weight decay, clipping, gradient accumulation, moving averages).
"""
from __future__ import annotations

from . import schedules
from .adadelta import Adadelta
from .adafactor import Adafactor
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .base import Optimizer
from .ftrl import Ftrl
from .lamb import Lamb
from .lion import Lion
from .nadam import Nadam
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Adamax", "Nadam",
           "Adadelta", "Lion", "Ftrl", "Lamb", "Adafactor", "schedules", "get", "serialize",
           "deserialize"]

_REGISTRY = {cls.__name__.lower(): cls for cls in
             (SGD, RMSprop, Adam, AdamW, Adagrad, Adamax, Nadam, Adadelta, Lion, Ftrl, Lamb,
              Adafactor)}


def get(identifier) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    if isinstance(identifier, dict) and str(identifier.get("class_name", "")).lower() in _REGISTRY:
        return deserialize(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}. "
                     f"Valid names: {sorted(_REGISTRY)}")


def serialize(opt):
    return {"class_name": type(opt).__name__, "config": opt.get_config()}


def deserialize(config, custom_objects=None):
    """An optimizer from {"class_name": ..., "config": ...} (its learning-rate schedule too)."""
    from ..saving.serialization import custom_object_scope
    cls = (custom_objects or {}).get(config["class_name"]) or \
        _REGISTRY.get(str(config["class_name"]).lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer: {config['class_name']!r}. Valid names: "
                         f"{sorted(_REGISTRY)}")
    with custom_object_scope(custom_objects):      # a user schedule inside is found too
        return cls.from_config(dict(config.get("config") or {}))
