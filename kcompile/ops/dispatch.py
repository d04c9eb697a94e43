"""One definition per op, two uses.

Every `kcompile.ops` function is written once, against the graph builder
(`kcompile.ir.builder`), and decorated with `keras_op(...)`, which names the
parameters that take tensors:

* if any of them is symbolic (a `Sym` of the graph being traced, or a model
  `Variable` while a model is traced), the function runs as written and emits
  primitives into that graph: it compiles and differentiates like any layer code;
* otherwise (numpy arrays, Python numbers, variables outside a trace) it traces a
  tiny graph whose inputs stand for the array arguments, caches it by the call's
  signature (shapes, dtypes and the other arguments) and runs it on the reference
  interpreter: the call returns numpy arrays now.

The IR has two dtypes: float32 (every float dtype) and int32 (every integer dtype).
Booleans are float32 0/1 masks inside graphs; ops that Keras defines as boolean
return `bool` arrays when called eagerly. Eager results are `EagerTensor`s (numpy
arrays that also answer `.numpy()`).
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.eager import eager
from kcompile.ir.interpret import interpret

_FLOATS = {"float16", "float32", "float64", "bfloat16", "half", "float", "double"}
_INTS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "int"}


def standardize_dtype(dtype) -> str:
    """'float32', 'int32' or 'bool' for any dtype spelling Keras accepts."""
    if dtype is None:
        return "float32"
    if dtype in (float,):
        return "float32"
    if dtype in (int,):
        return "int32"
    if dtype in (bool,):
        return "bool"
    name = getattr(dtype, "name", None) or str(dtype)
    if name in _FLOATS:
        return "float32"
    if name in _INTS:
        return "int32"
    if name == "bool":
        return "bool"
    try:
        return standardize_dtype(np.dtype(dtype).name)
    except TypeError:
        pass
    raise ValueError(f"Invalid dtype: {dtype!r}. kcompile computes in float32 and int32 "
                     f"(every float dtype maps to float32, every integer dtype to int32)")


def graph_dtype(dtype) -> str:
    """The IR dtype holding `dtype` (booleans are float32 masks)."""
    d = standardize_dtype(dtype)
    return "float32" if d == "bool" else d


def tracing_active() -> bool:
    from kcompile import tracing
    return bool(tracing._active)


def is_symbolic(x) -> bool:
    return isinstance(x, Sym) or (hasattr(x, "__sym__") and tracing_active())


def _is_python_scalar(x) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def as_array(x) -> np.ndarray:
    """x as a numpy array of an IR dtype (float32, int32; booleans as float32 0/1)."""
    arr = np.asarray(x)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int32)
    if arr.dtype.kind in "fb":
        return arr.astype(np.float32)
    raise TypeError(f"Cannot convert {x!r} (dtype {arr.dtype}) to a tensor")


def _graph_of(values) -> Graph:
    for v in values:
        if isinstance(v, Sym):
            return v.g
    for v in values:
        if hasattr(v, "__sym__"):
            return v.__sym__(None).g
    raise AssertionError("no symbolic operand")


def _flat_tensors(bound, params):
    out = []
    for p in params:
        v = bound[p.lstrip("*")]
        if p.startswith("*"):
            out.extend(v if isinstance(v, (list, tuple)) else [v])
        else:
            out.append(v)
    return out


def keras_op(*params, bool_result=False):
    """Make `fn` serve symbolic and eager calls; `params` name its tensor parameters
    ('*name' for a sequence of tensors). bool_result: True, or a function of the bound
    arguments, when the eager result is boolean (comparisons, logical ops)."""
    def deco(fn):
        sig = inspect.signature(fn)
        names = [p.lstrip("*") for p in params]
        unknown = set(names) - set(sig.parameters)
        assert not unknown, (fn.__name__, unknown)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{fn.__name__}(): {e}") from None
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            tensors = _flat_tensors(arguments, params)
            if any(is_symbolic(t) for t in tensors):
                g = _graph_of([t for t in tensors if is_symbolic(t)])
                _convert(arguments, params, lambda t: _to_sym(g, t, tensors))
                return _call(fn, sig, arguments)
            return _eager(fn, sig, arguments, params, bool_result)
        wrapper.tensor_params = tuple(params)
        return wrapper
    return deco


def _call(fn, sig, arguments):
    bound = sig.bind_partial()
    bound.arguments.update(arguments)
    return fn(*bound.args, **bound.kwargs)


def _convert(arguments, params, conv):
    for p in params:
        name = p.lstrip("*")
        v = arguments[name]
        if p.startswith("*") and isinstance(v, (list, tuple)):
            arguments[name] = type(v)(conv(t) for t in v)
        else:
            arguments[name] = conv(v)


def _to_sym(g, t, all_tensors):
    if isinstance(t, Sym):
        return t
    if hasattr(t, "__sym__"):
        return t.__sym__(g)
    if t is None:
        return None
    if _is_python_scalar(t):
        return t                          # weakly typed: takes the other operand's dtype
    return F.lift(g, as_array(t), graph_dtype(as_array(t).dtype))


# ------------------------------------------------------------------ eager calls
_CACHE: dict = {}
_CACHE_SIZE = 1024


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return (type(v).__name__,) + tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, np.ndarray):
        return ("array", v.shape, v.dtype.str, v.tobytes())
    hash(v)
    return (type(v).__name__, v)


def _eager(fn, sig, arguments, params, bool_result):
    leaves = []                          # (placeholder, array)
    only_scalars = all(_is_python_scalar(t) or t is None
                       for t in _flat_tensors(arguments, params))

    def to_leaf(t):
        if t is None or (_is_python_scalar(t) and not only_scalars):
            return t
        arr = as_array(t)
        leaves.append(arr)
        return _Placeholder(len(leaves) - 1, arr)
    _convert(arguments, params, to_leaf)
    try:
        key = (fn, _freeze(arguments))
    except TypeError:
        key = None
    entry = _CACHE.get(key) if key is not None else None
    if entry is None:
        entry = _trace(fn, sig, arguments)
        if key is not None:
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))      # oldest first
            _CACHE[key] = entry
    graph, template = entry
    if graph is None:
        return template
    outs, _ = interpret(graph, {f"a{i}": a for i, a in enumerate(leaves)})
    as_bool = bool_result(arguments) if callable(bool_result) else bool_result

    def fill(t):
        if isinstance(t, _Out):
            a = outs[t.name]
            return eager(a.astype(bool) if as_bool else a)
        if isinstance(t, (list, tuple)):
            return type(t)(fill(x) for x in t)
        return t
    return fill(template)


class _Placeholder:
    """An array argument of an eager call, keyed by shape and dtype only."""
    __slots__ = ("index", "shape", "dtype")

    def __init__(self, index, arr):
        self.index, self.shape, self.dtype = index, arr.shape, str(arr.dtype)

    def __eq__(self, other):
        return isinstance(other, _Placeholder) and (self.index, self.shape, self.dtype) == \
            (other.index, other.shape, other.dtype)

    def __hash__(self):
        return hash((self.index, self.shape, self.dtype))


class _Out:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


def _trace(fn, sig, arguments):
    g = Graph()

    def to_sym(t):
        if isinstance(t, _Placeholder):
            return Sym(g, g.leaf("input", TensorType(t.shape, t.dtype), f"a{t.index}"))
        if isinstance(t, (list, tuple)):
            return type(t)(to_sym(x) for x in t)
        return t
    args = {k: to_sym(v) for k, v in arguments.items()}
    result = _call(fn, sig, args)
    count = 0

    def template(r):
        nonlocal count
        if isinstance(r, Sym):
            name = f"r{count}"
            count += 1
            g.outputs[name] = r.id
            return _Out(name)
        if isinstance(r, (list, tuple)):
            return type(r)(template(x) for x in r)
        return r
    tmpl = template(result)
    return (g if count else None), tmpl
