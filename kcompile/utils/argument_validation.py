"""Layer argument checks with Keras' wording: tuples of ints, padding modes and
`data_format`, shared by the convolution, pooling and reshaping layers."""
from __future__ import annotations


def standardize_tuple(value, n, name, allow_zero=False):
    """`value` (an int or n ints) as a tuple of n ints, all > 0 (>= 0 with allow_zero)."""
    error_msg = (f"The `{name}` argument must be a tuple of {n} integers. "
                 f"Received {name}={value}")
    if isinstance(value, int) and not isinstance(value, bool):
        value_tuple = (value,) * n
    else:
        try:
            value_tuple = tuple(value)
        except TypeError:
            raise ValueError(error_msg) from None
        if len(value_tuple) != n:
            raise ValueError(error_msg)
        for single_value in value_tuple:
            try:
                int(single_value)
            except (ValueError, TypeError):
                raise ValueError(error_msg + f"including element {single_value} of type "
                                             f"{type(single_value)}") from None
        value_tuple = tuple(int(v) for v in value_tuple)
    if allow_zero:
        bad, req = {v for v in value_tuple if v < 0}, ">= 0"
    else:
        bad, req = {v for v in value_tuple if v <= 0}, "> 0"
    if bad:
        raise ValueError(error_msg + f", including values {bad} that do not satisfy "
                                     f"`value {req}`")
    return value_tuple


def standardize_padding(value, allow_causal=False):
    """"valid" / "same" (and "causal" where allowed), case-insensitive."""
    allowed = {"valid", "same", "causal"} if allow_causal else {"valid", "same"}
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        raise ValueError(f"The `padding` argument must be a list/tuple or one of {allowed}. "
                         f"Received: {value}")
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
