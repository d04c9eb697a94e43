"""What the 3-D reshaping layers share: their spatial axes and Keras' reading of a
per-axis (before, after) argument."""
from __future__ import annotations

from ...utils.argument_validation import standardize_tuple


def spatial_axes_3d(data_format):
    return (1, 2, 3) if data_format == "channels_last" else (2, 3, 4)


def pairs_3d(value, name, verb):
    """An int, 3 ints (symmetric) or 3 pairs -> three (before, after) pairs, as Keras'
    ZeroPadding3D and Cropping3D read their argument."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"`{name}` cannot be negative. Received: {name}={value}.")
        return ((value, value),) * 3
    if hasattr(value, "__len__") and len(value) == 3:
        return tuple(standardize_tuple(v, 2, f"entry {i + 1} of {name}", allow_zero=True)
                     for i, v in enumerate(value))
    raise ValueError(f"`{name}` should be either an int, a tuple of 3 ints "
                     f"(symmetric_dim1_{verb}, symmetric_dim2_{verb}, symmetric_dim3_{verb}), "
                     f"or a tuple of 3 tuples of 2 ints ((left_dim1_{verb}, right_dim1_{verb}),"
                     f" (left_dim2_{verb}, right_dim2_{verb}), (left_dim3_{verb}, "
                     f"right_dim3_{verb})). Received: {name}={value}.")
