"""Layer arguments in the forms Keras accepts: an int or a tuple of ints per spatial
axis, a padding name (keras/src/utils/argument_validation.py, same wording)."""
from __future__ import annotations


def standardize_tuple(value, n, name, allow_zero=False) -> tuple:
    """`value` (an int, or an iterable of `n` ints) as a tuple of `n` ints, each > 0
    (>= 0 with allow_zero)."""
    error_msg = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if isinstance(value, bool):
        raise ValueError(error_msg)
    if isinstance(value, int):
        value_tuple = (value,) * n
    else:
        try:
            value_tuple = tuple(value)
        except TypeError:
            raise ValueError(error_msg) from None
        if len(value_tuple) != n:
            raise ValueError(error_msg)
        for single_value in value_tuple:
            if isinstance(single_value, bool) or not _is_integral(single_value):
                raise ValueError(f"{error_msg}including element {single_value} of type "
                                 f"{type(single_value)}")
        value_tuple = tuple(int(v) for v in value_tuple)
    if allow_zero:
        bad, req = {v for v in value_tuple if v < 0}, ">= 0"
    else:
        bad, req = {v for v in value_tuple if v <= 0}, "> 0"
    if bad:
        raise ValueError(f"{error_msg}, including values {bad} that do not satisfy "
                         f"`value {req}`")
    return value_tuple


def _is_integral(v) -> bool:
    try:
        return int(v) == v
    except (TypeError, ValueError):
        return False


def standardize_padding(value, allow_causal=False) -> str:
    """"valid" or "same" (and "causal" where allowed), case-insensitive."""
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        raise ValueError(f"The `padding` argument must be one of "
                         f"{{{', '.join(repr(a) for a in allowed)}}}. Received: {value}")
    return padding


def standardize_data_format(data_format):
    """None -> keras.config.image_data_format(); otherwise one of the two layouts."""
    from ..config import image_data_format
    if data_format is None:
        return image_data_format()
    fmt = str(data_format).lower()
    if fmt not in ("channels_first", "channels_last"):
        raise ValueError(f"The `data_format` argument must be one of {{'channels_first', "
                         f"'channels_last'}}. Received: data_format={data_format}")
    return fmt
