"""`keras.backend`: the settings of `keras.config` under their backend names, and
`clear_session()`."""
from __future__ import annotations

from .config import (backend, epsilon, floatx, image_data_format, set_epsilon, set_floatx,
                     set_image_data_format)


def clear_session(free_memory=True):
    """Reset the layer-name counters (the next Dense is `dense` again), as Keras does."""
    from .layers.layer import _name_counts
    _name_counts.clear()


def is_keras_tensor(x) -> bool:
    from .functional import KerasTensor
    return isinstance(x, KerasTensor)


__all__ = ["backend", "clear_session", "epsilon", "floatx", "image_data_format",
           "is_keras_tensor", "set_epsilon", "set_floatx", "set_image_data_format"]
