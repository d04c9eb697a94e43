"""UpSampling1D: each step repeated `size` times, (batch, steps, features) ->
(batch, steps * size, features)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..input_spec import check_ndim
from ..layer import Layer


def repeat_axes(x, factors: dict):
    """Each element repeated factors[axis] times along each axis (np.repeat on several
    axes at once): a broadcast into a new axis after each repeated one, then a reshape."""
    grown, wide = [], []
    for i, d in enumerate(x.shape):
        if factors.get(i, 1) != 1:
            grown += [d, 1]
            wide += [d, factors[i]]
        else:
            grown.append(d)
            wide.append(d)
    out = F.broadcast_to(F.reshape(x, grown), wide)
    return F.reshape(out, [d * factors.get(i, 1) for i, d in enumerate(x.shape)])


class UpSampling1D(Layer):
    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"Expected an integer value for `size`, got {type(size)}.")
        if size <= 0:
            raise ValueError(f"Argument `size` should be a positive integer. Received: "
                             f"size={size}")
        self.size = size

    def call(self, inputs):
        check_ndim(self, inputs, 3)
        return repeat_axes(inputs, {1: self.size})

    def compute_output_shape(self, input_shape):
        steps = input_shape[1] * self.size if input_shape[1] is not None else None
        return (input_shape[0], steps, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "size": self.size}
