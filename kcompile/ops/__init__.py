"""`keras.ops`: the array and neural-network operations custom layers are written with.

    from kcompile import ops
    y = ops.matmul(x, w) + b          # in a layer's call: traced into the model's graph
    ops.softmax(np.ones((2, 3)))      # on arrays: computed now, a numpy array

Laid out as Keras' keras/src/ops: numpy.py (numpy-like ops), nn.py (activations,
softmax, cross-entropies, also as `ops.nn`), math.py, core.py.
"""
from . import core, math, nn, numpy
from .core import cast, convert_to_numpy, convert_to_tensor, dtype, is_tensor, shape, slice, \
    slice_update, stop_gradient  # noqa: F401
from .math import erf, in_top_k, logsumexp, rsqrt, top_k  # noqa: F401
from .nn import *  # noqa: F401,F403
from .numpy import *  # noqa: F401,F403

__all__ = sorted(set(numpy.__all__) | set(nn.__all__) | {
    "cast", "convert_to_numpy", "convert_to_tensor", "dtype", "is_tensor", "shape", "slice",
    "slice_update", "stop_gradient", "erf", "in_top_k", "logsumexp", "rsqrt", "top_k"})
