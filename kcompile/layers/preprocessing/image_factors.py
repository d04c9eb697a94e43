"""How Keras' image layers read their `factor` arguments."""
from __future__ import annotations


def image_factor(factor, bounds=(-1, 1)):
    """Keras' reading of a `factor` argument: x -> (max(-|x|, low bound), |x|),
    (a, b) -> sorted (both checked against `bounds`)."""
    msg = (f"The `factor` argument should be a number (or a list of two numbers) in the "
           f"range [{bounds[0]}, {bounds[1]}]. Received: factor={factor}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ValueError(msg)
        return tuple(sorted(factor))
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        if not bounds[0] <= factor <= bounds[1]:
            raise ValueError(msg)
        return (max(-abs(factor), bounds[0]), abs(factor))
    raise ValueError(msg)


def factor_range(factor, name, error, low_open=False):
    """Keras' reading of a translation / zoom factor: x -> (-|x|, |x|), (a, b) -> sorted,
    each within [-1, 1] ((-1, 1] with low_open)."""
    def check(v):
        if v > 1.0 or v < -1.0 or (low_open and v == -1.0):
            raise ValueError(f"{error}Received: input_number={v}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"{error}Received: {name}={factor}")
        check(factor[0])
        check(factor[1])
        return tuple(sorted(factor))
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        check(factor)
        return (-abs(factor), abs(factor))
    raise ValueError(f"{error}Received: {name}={factor}")
