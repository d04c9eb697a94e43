"""The einsum equations of MultiHeadAttention's projections and attention products
(as Keras builds them, so that its kernels have Keras' shapes)."""
from __future__ import annotations

import string


def _letter(i):
    return string.ascii_lowercase[i]


def projection_equation(free_dims, bound_dims, output_dims):
    """(equation, bias axes, output rank) of a projection: `free_dims` axes kept,
    `bound_dims` contracted with the kernel, `output_dims` made by it."""
    free = "".join(_letter(i) for i in range(free_dims))
    bound = "".join(_letter(free_dims + i) for i in range(bound_dims))
    made = "".join(_letter(free_dims + bound_dims + i) for i in range(output_dims))
    return f"{free}{bound},{bound}{made}->{free}{made}", made, len(free + made)


def attention_equations(rank, attn_axes):
    """(scores equation, combine equation, scores rank) for projected tensors of
    `rank` axes (batch, ..., heads, channels) attending over `attn_axes`."""
    target = "".join(_letter(i) for i in range(rank))
    batch_dims = [i for i in range(rank) if i not in attn_axes and i != rank - 1]
    source, offset = "", rank
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += _letter(offset)
            offset += 1
    product = "".join([target[i] for i in batch_dims] + [target[i] for i in attn_axes]
                      + [source[i] for i in attn_axes])
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


def partial_shape(rank, known_last_dims):
    return [None] * (rank - len(known_last_dims)) + list(known_last_dims)
