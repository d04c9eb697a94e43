"""`keras.random`: seeded random tensors, and seeding (`set_seed`).

Random numbers come from the counter-based `random_uniform` primitive: a hash of
(element index, key, salt). `seed` may be:

* a `SeedGenerator`: its state (an int32 counter) is the key. In a traced model it is
  a state variable the training step increments, so every step draws new numbers,
  and two calls on one generator in one step differ by their salt. It is state, not a
  weight: it is not listed in a layer's weights. Eagerly, each call advances it.
* an int: a fixed key (the same numbers on every call, as Keras' stateless seeds);
* None: eagerly, the global generator (reseeded by `set_seed`); in a traced model, the
  model's own SeedGenerator (state of the model, advanced by every step, seeded from
  numpy's global generator when the model is made); elsewhere in a trace it raises.

Called with symbolic inputs (or while a model is traced) these functions emit
graph ops; otherwise they return numpy arrays.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from . import tracing
from .ops.dispatch import graph_dtype, is_symbolic, keras_op, standardize_dtype
from .variables import Variable

_SALT_STEP = 0x2545F491          # distinct salts for the draws of one call and of one step


def set_seed(seed):
    """Seed weight initialization, numpy's global generator and the global SeedGenerator."""
    from .utils import set_random_seed
    set_random_seed(seed)


class SeedGenerator:
    """Keras' SeedGenerator: a random state for seeded random ops (`seed=` argument)."""

    def __init__(self, seed=None, name=None, **kwargs):
        from .layers.layer import unique_name
        drawn = seed is None
        if drawn:
            seed = int(np.random.randint(0, 2**30))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"Argument `seed` must be an integer. Received: seed={seed!r}")
        self.seed = int(seed)
        self.name = name or unique_name("seed_generator")
        # A given seed is in the salt (the graph); a drawn one is the state's start, so
        # graphs, and the disk cache's keys, stay the same from run to run.
        self._salt = ((0 if drawn else self.seed) * 0x9E3779B1 + 0x7F4A7C15) & 0x7FFFFFFF
        start = self.seed if drawn else 0
        self.state = Variable(np.asarray(start, np.int32), "seed_generator_state", trainable=False,
                              path=f"{self.name}/seed_generator_state")

    def next(self, ordered=True):
        """The key and salt of the next draw (eagerly: advances the state)."""
        if tracing._active:
            return _traced_key(self)
        key = np.asarray(self.state.value, np.int32).copy()
        self.state.assign(key + 1)
        return key, self._salt

    def get_config(self):
        return {"seed": self.seed, "name": self.name}

    def __repr__(self):
        return f"<SeedGenerator name={self.name} seed={self.seed}>"


_global = None
_draws_in_trace: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _global_generator() -> SeedGenerator:
    global _global
    if _global is None:
        _global = SeedGenerator(name="global_seed_generator")
    return _global


def _traced_key(gen: SeedGenerator):
    trace = tracing.current()
    key = trace.variable(gen.state)
    counts = _draws_in_trace.setdefault(trace, {})
    i = counts.get(id(gen), 0)
    counts[id(gen)] = i + 1
    trace.updates[gen.state] = key + 1          # the next step draws anew
    return key, (gen._salt + i * _SALT_STEP) & 0x7FFFFFFF


def _key_and_salt(seed, symbolic):
    """(key, salt): key a Sym (traced) or an int32 array (eager)."""
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if seed is None:
        trace = tracing.current() if tracing._active else None
        if trace is not None and trace.shape_only:
            # Only the shapes of this trace are read: any fixed key will do.
            return trace.input(f"unseeded_key_{len(trace.graph)}", (), "int32"), 0
        implicit = trace.seed_generator if trace is not None else None
        if implicit is not None:
            # A model's own generator: the step advances it, as Keras' global one is.
            return implicit.next()
        if symbolic:
            raise ValueError("When tracing a model, random ops need a seed that can change from "
                             "step to step: create a `SeedGenerator` instance, attach it to your "
                             "layer or model, and pass it as the `seed` argument. (An unseeded "
                             "random op would become a constant after tracing.)")
        return _global_generator().next()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Argument `seed` must be either an integer or an instance of "
                         f"`SeedGenerator`. Received: seed={seed!r} (of type {type(seed)})")
    return np.asarray(int(seed) & 0x7FFFFFFF, np.int32), (int(seed) * 0x85EBCA77) & 0x7FFFFFFF


def _symbolic(*inputs) -> bool:
    return bool(tracing._active) or any(is_symbolic(x) for x in inputs)


def _shape(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)


def _uniform(key, shape, salt, i=0):
    return F.random_uniform(key, shape, (salt + i * _SALT_STEP) & 0x7FFFFFFF)


def _std_normal(key, shape, salt, i=0):
    """Box-Muller: sqrt(-2 log(1 - u1)) cos(2 pi u2), |z| <= 5.77 (u has 24 bits)."""
    u1 = _uniform(key, shape, salt, 2 * i)
    u2 = _uniform(key, shape, salt, 2 * i + 1)
    return F.sqrt(-2.0 * F.log(1.0 - u1)) * F.cos(u2 * (2.0 * math.pi))


# ------------------------------------------------------------- one definition each
@keras_op("key")
def _normal_op(key, shape, mean, stddev, salt):
    return _std_normal(key, shape, salt) * stddev + mean


@keras_op("key")
def _uniform_op(key, shape, minval, maxval, salt):
    return _uniform(key, shape, salt) * (maxval - minval) + minval


@keras_op("key")
def _truncated_normal_op(key, shape, mean, stddev, salt):
    # Keras redraws values beyond two standard deviations: the first of 6 draws
    # within [-2, 2] (all 6 outside has probability 9e-9; then it is clipped)
    z = F.clip(_std_normal(key, shape, salt, 5), -2.0, 2.0)
    for i in range(4, -1, -1):
        cand = _std_normal(key, shape, salt, i)
        z = F.select(F.less_equal(F.abs(cand), 2.0), cand, z)
    return z * stddev + mean


@keras_op("key")
def _randint_op(key, shape, minval, maxval, salt):
    u = _uniform(key, shape, salt)
    return F.cast(F.floor(u * float(maxval - minval)) + float(minval), "int32")


@keras_op("inputs", "key")
def _dropout_op(inputs, key, rate, noise_shape, salt):
    keep = F.greater_equal(_uniform(key, noise_shape, salt), rate)
    x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
    return x * keep * (1.0 / (1.0 - rate))


@keras_op("x", "key")
def _shuffle_op(x, key, axis, salt):
    from .ops.numpy import _argsorted_last
    n = x.shape[axis]
    order = _argsorted_last(_uniform(key, (n,), salt))
    return F.take(x, order, axis)


# ------------------------------------------------------------------ public API
def _cast(x, dtype):
    d = graph_dtype(dtype) if dtype is not None else "float32"
    if isinstance(x, Sym):
        return F.cast(x, d)
    return x.astype(np.int32 if d == "int32" else np.float32)


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    key, salt = _key_and_salt(seed, _symbolic())
    return _cast(_normal_op(key, _shape(shape), float(mean), float(stddev), salt), dtype)


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    if dtype is not None and standardize_dtype(dtype) == "int32":
        raise ValueError("`keras.random.uniform` requires a floating point `dtype`; use "
                         f"`keras.random.randint` for integers. Received: dtype={dtype}")
    key, salt = _key_and_salt(seed, _symbolic())
    return _cast(_uniform_op(key, _shape(shape), float(minval), float(maxval), salt), dtype)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    key, salt = _key_and_salt(seed, _symbolic())
    return _cast(_truncated_normal_op(key, _shape(shape), float(mean), float(stddev), salt), dtype)


def randint(shape, minval, maxval, dtype="int32", seed=None):
    if int(maxval) <= int(minval):
        raise ValueError(f"randint: maxval ({maxval}) must be greater than minval ({minval})")
    key, salt = _key_and_salt(seed, _symbolic())
    return _cast(_randint_op(key, _shape(shape), int(minval), int(maxval), salt), dtype)


def dropout(inputs, rate, noise_shape=None, seed=None):
    if not 0 <= rate < 1:
        raise ValueError(f"Invalid value received for argument `rate`. Expected a float value "
                         f"between 0 and 1. Received: rate={rate}")
    shape = tuple(np.shape(inputs)) if not hasattr(inputs, "shape") else tuple(inputs.shape)
    if noise_shape is None:
        noise_shape = shape
    noise_shape = tuple(d if n is None else int(n)
                        for d, n in zip(shape, tuple(noise_shape)))
    key, salt = _key_and_salt(seed, _symbolic(inputs))
    return _dropout_op(inputs, key, float(rate), noise_shape, salt)


def shuffle(x, axis=0, seed=None):
    """A random permutation along `axis` (the sort of random keys: meant for small axes)."""
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    axis = axis % len(shape)
    key, salt = _key_and_salt(seed, _symbolic(x))
    return _shuffle_op(x, key, axis, salt)


def seed_states(model) -> list:
    """The state variables of the SeedGenerators a model's layers hold (found as Keras
    tracks them: attributes of the model and of its layers, and lists of them)."""
    found, seen, stack = [], set(), [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, SeedGenerator):
            found.append(obj.state)
            continue
        if isinstance(obj, (list, tuple)):
            stack.extend(reversed(obj))
            continue
        attrs = getattr(obj, "__dict__", None)
        if attrs is None or not hasattr(obj, "weights"):
            continue
        for v in attrs.values():
            if isinstance(v, SeedGenerator) or hasattr(v, "weights") or (
                    isinstance(v, (list, tuple)) and v and hasattr(v[0], "weights")):
                stack.append(v)
    return found


__all__ = ["SeedGenerator", "set_seed", "normal", "uniform", "truncated_normal", "randint",
           "dropout", "shuffle"]
