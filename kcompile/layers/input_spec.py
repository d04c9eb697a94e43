"""Keras' InputSpec checks that layers with a fixed input rank make on each call."""
from __future__ import annotations


def check_ndim(layer, inputs, ndim: int) -> None:
    """A ValueError in Keras' wording when `inputs` does not have rank `ndim`."""
    if inputs.ndim != ndim:
        raise ValueError(f"Input 0 of layer {layer.name!r} is incompatible with the layer: "
                         f"expected ndim={ndim}, found ndim={inputs.ndim}. Full shape "
                         f"received: {(None, *inputs.shape[1:])}")
