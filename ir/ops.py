"""The primitive registry: one declaration per primitive.

Each primitive states, side by side, its shape/dtype rule, its numpy
reference, its VJP and its fusion kind. Lowerings live in codegen and are
registered there by primitive name, so this module knows nothing of LLVM.

VJP rules receive the builder module `F`, the operands and output as `Sym`s,
the output cotangent `g` and the attributes, and return one cotangent per
operand (None where the operand gets no gradient). A returned cotangent may
still have the broadcast (output) shape: autodiff sums it back down.

Integer values (labels, argmax results) are exact in float32 lanes below 2**24;
comparisons return float32 0/1 so that masks multiply directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
import math

import numpy as np

from .graph import TensorType

KINDS = ("elementwise", "reduction", "matmul", "conv", "layout", "gather", "scatter", "scan",
         "opaque")


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    shape_rule: Callable            # (in_types, attrs) -> TensorType
    reference: Callable             # (arrays, attrs) -> ndarray
    vjp: Callable | None            # (F, xs, out, g, attrs) -> list; None: not differentiable
    arity: int
    normalize: Callable = lambda in_types, attrs: attrs


REGISTRY: dict[str, OpDef] = {}


def primitive(name, kind, arity, shape_rule, reference, vjp, normalize=None):
    assert kind in KINDS and name not in REGISTRY
    REGISTRY[name] = OpDef(name, kind, shape_rule, reference, vjp, arity,
                           normalize or (lambda in_types, attrs: attrs))


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}") from None


# ---------------------------------------------------------------- shape rules
def broadcast_shapes(*shapes) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def _same_dtype(name, types):
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        raise TypeError(f"{name}: operand dtypes differ: {[t.dtype for t in types]}")
    return dtypes.pop()


def _float_only(name, t):
    if t.dtype != "float32":
        raise TypeError(f"{name} needs float32 operands, got {t.dtype}")


def _unary_rule(name):
    def rule(ts, attrs):
        _float_only(name, ts[0])
        return ts[0]
    return rule


def _binary_rule(name, out_dtype=None):
    def rule(ts, attrs):
        dtype = _same_dtype(name, ts)
        return TensorType(broadcast_shapes(*(t.shape for t in ts)), out_dtype or dtype)
    return rule


# ------------------------------------------------------------ elementwise ops
def _unary(name, ref, vjp, ints=False):
    rule = (lambda ts, attrs: ts[0]) if ints else _unary_rule(name)
    primitive(name, "elementwise", 1, rule, lambda xs, a: ref(xs[0]), vjp)


def _erf(x):
    # numpy has no erf: math.erf elementwise, in the operand's precision
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def _sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


_unary("neg", np.negative, lambda F, xs, out, g, a: [-g], ints=True)
_unary("exp", np.exp, lambda F, xs, out, g, a: [g * out])
_unary("log", np.log, lambda F, xs, out, g, a: [g / xs[0]])
_unary("sqrt", np.sqrt, lambda F, xs, out, g, a: [g / (out * 2.0)])
_unary("abs", np.abs, lambda F, xs, out, g, a: [g * F.sign(xs[0])], ints=True)
_unary("sign", np.sign, lambda F, xs, out, g, a: [None])
_unary("sigmoid", _sigmoid, lambda F, xs, out, g, a: [g * out * (1.0 - out)])
_unary("tanh", np.tanh, lambda F, xs, out, g, a: [g * (1.0 - out * out)])
_unary("sin", np.sin, lambda F, xs, out, g, a: [g * F.cos(xs[0])])
_unary("cos", np.cos, lambda F, xs, out, g, a: [-g * F.sin(xs[0])])
_unary("erf", lambda x: _erf(x), lambda F, xs, out, g, a: [
    g * (2.0 / np.sqrt(np.pi)) * F.exp(-(xs[0] * xs[0]))])
# Piecewise constant: the derivative is zero wherever it exists.
_unary("floor", np.floor, lambda F, xs, out, g, a: [None])
_unary("round", np.round, lambda F, xs, out, g, a: [None])     # halves to even, as numpy
# The identity whose gradient is zero: a softmax's max shift (its true gradient
# cancels exactly, so autodiff need not build the terms that cancel).
primitive("stop_gradient", "elementwise", 1, lambda ts, a: ts[0], lambda xs, a: xs[0],
          lambda F, xs, out, g, a: [None])


def _binary(name, ref, vjp, out_dtype=None, float_only=False):
    rule = _binary_rule(name, out_dtype)
    if float_only:
        def rule(ts, attrs, _rule=rule):
            for t in ts:
                _float_only(name, t)
            return _rule(ts, attrs)
    primitive(name, "elementwise", 2, rule, lambda xs, a: ref(xs[0], xs[1]), vjp)


_binary("add", np.add, lambda F, xs, out, g, a: [g, g])
_binary("sub", np.subtract, lambda F, xs, out, g, a: [g, -g])
_binary("mul", np.multiply, lambda F, xs, out, g, a: [g * xs[1], g * xs[0]])
_binary("div", np.divide, lambda F, xs, out, g, a: [g / xs[1], -g * out / xs[1]], float_only=True)
_binary("pow", np.power, lambda F, xs, out, g, a: [
    g * xs[1] * F.pow(xs[0], xs[1] - 1.0), g * out * F.log(xs[0])], float_only=True)
# Ties send the gradient to the second operand, so relu = maximum(x, 0) has
# zero gradient at x == 0 as Keras' relu does.
# The masks are written with the output (out > y iff x > y), so the backward pass of
# relu(z) = maximum(z, 0) reads the activation it keeps anyway, not z: z then
# fuses into the forward kernel instead of being stored.
_binary("maximum", np.maximum, lambda F, xs, out, g, a: [
    F.select(F.greater(out, xs[1]), g, 0.0), F.select(F.greater(out, xs[1]), 0.0, g)])
_binary("minimum", np.minimum, lambda F, xs, out, g, a: [
    F.select(F.less(out, xs[1]), g, 0.0), F.select(F.less(out, xs[1]), 0.0, g)])

_no_grad = lambda F, xs, out, g, a: [None] * len(xs)  # noqa: E731
for _name, _ref in [("greater", np.greater), ("greater_equal", np.greater_equal),
                    ("less", np.less), ("less_equal", np.less_equal),
                    ("equal", np.equal), ("not_equal", np.not_equal)]:
    _binary(_name, _ref, _no_grad, out_dtype="float32")


def _select_rule(ts, attrs):
    dtype = _same_dtype("select", ts[1:])
    return TensorType(broadcast_shapes(*(t.shape for t in ts)), dtype)


primitive("select", "elementwise", 3, _select_rule,
          lambda xs, a: np.where(xs[0] != 0, xs[1], xs[2]),
          lambda F, xs, out, g, a: [None, F.select(xs[0], g, 0.0), F.select(xs[0], 0.0, g)])


def _cast_rule(ts, attrs):
    return TensorType(ts[0].shape, attrs["dtype"])


def _cast_ref(xs, a):
    x = xs[0]
    if a["dtype"] == "int32" and x.dtype.kind == "f":
        x = np.trunc(x)
    return x


primitive("cast", "elementwise", 1, _cast_rule, _cast_ref,
          lambda F, xs, out, g, a: [F.cast(g, xs[0].dtype) if xs[0].dtype == "float32" else None])


# ------------------------------------------------------------------ reductions
def _reduce_rule(name, float_only=True):
    def rule(ts, attrs):
        if float_only:
            _float_only(name, ts[0])
        shape = ts[0].shape
        for ax in attrs["axes"]:
            if not 0 <= ax < len(shape):
                raise ValueError(f"{name}: axis {ax} out of range for shape {shape}")
        if attrs["keepdims"]:
            out = tuple(1 if i in attrs["axes"] else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in attrs["axes"])
        return TensorType(out, ts[0].dtype)
    return rule


def _check_axis(a, rank, name):
    a = int(a)
    if not -rank <= a < rank:
        raise ValueError(f"{name}: axis {a} is out of range for an operand of rank {rank}")
    return a % rank


def _normalize_axes(in_types, attrs):
    rank = in_types[0].rank
    attrs["axes"] = tuple(sorted({_check_axis(a, rank, "reduction") for a in attrs["axes"]}))
    attrs["keepdims"] = bool(attrs.get("keepdims", False))
    return attrs


def _keepdims_shape(x, a):
    return tuple(1 if i in a["axes"] else d for i, d in enumerate(x.shape))


def _sum_vjp(F, xs, out, g, a):
    return [F.broadcast_to(F.reshape(g, _keepdims_shape(xs[0], a)), xs[0].shape)]


def _mean_vjp(F, xs, out, g, a):
    n = int(np.prod([xs[0].shape[i] for i in a["axes"]]))
    return [F.broadcast_to(F.reshape(g, _keepdims_shape(xs[0], a)), xs[0].shape) * (1.0 / n)]


def _max_vjp(F, xs, out, g, a):
    # Ties share the gradient equally, as JAX and TensorFlow do.
    ks = _keepdims_shape(xs[0], a)
    mask = F.equal(xs[0], F.reshape(out, ks))
    count = F.sum(mask, axis=a["axes"], keepdims=True)
    return [mask * F.reshape(g, ks) / count]


for _name, _ref, _vjp in [("reduce_sum", np.sum, _sum_vjp), ("reduce_max", np.max, _max_vjp),
                          ("reduce_mean", np.mean, _mean_vjp)]:
    primitive(_name, "reduction", 1, _reduce_rule(_name),
              (lambda r: lambda xs, a: r(xs[0], axis=a["axes"], keepdims=a["keepdims"]))(_ref),
              _vjp, _normalize_axes)


def _argmax_rule(ts, attrs):
    if attrs["axis"] != ts[0].rank - 1:
        raise ValueError("argmax is supported over the last axis only")
    return TensorType(ts[0].shape[:-1], "int32")


primitive("argmax", "reduction", 1, _argmax_rule,
          lambda xs, a: np.argmax(xs[0], axis=a["axis"]).astype(np.int32), _no_grad,
          lambda ts, attrs: {**attrs, "axis": _check_axis(attrs["axis"], ts[0].rank, "argmax")})


# ---------------------------------------------------------------------- matmul
def _matmul_rule(ts, a):
    x, y = ts
    _float_only("matmul", x)
    _float_only("matmul", y)
    if x.rank != 2 or y.rank != 2:
        raise ValueError(f"matmul needs rank-2 operands, got {x.shape} and {y.shape}")
    m, k = x.shape[::-1] if a["transpose_a"] else x.shape
    k2, n = y.shape[::-1] if a["transpose_b"] else y.shape
    if k != k2:
        raise ValueError(f"matmul: inner dimensions differ: {x.shape} and {y.shape} "
                         f"(transpose_a={a['transpose_a']}, transpose_b={a['transpose_b']})")
    return TensorType((m, n), "float32")


def _matmul_ref(xs, a):
    x, y = xs
    return (x.T if a["transpose_a"] else x) @ (y.T if a["transpose_b"] else y)


def _matmul_vjp(F, xs, out, g, a):
    x, y = xs
    ta, tb = a["transpose_a"], a["transpose_b"]
    # C = op(A) op(B); dop(A) = g op(B)^T, dop(B) = op(A)^T g, then undo op().
    dx = F.matmul(y, g, transpose_a=tb, transpose_b=True) if ta else F.matmul(g, y, transpose_b=not tb)
    dy = F.matmul(g, x, transpose_a=True, transpose_b=ta) if tb else F.matmul(x, g, transpose_a=not ta)
    return [dx, dy]


primitive("matmul", "matmul", 2, _matmul_rule, _matmul_ref, _matmul_vjp,
          lambda ts, a: {"transpose_a": bool(a.get("transpose_a", False)),
                         "transpose_b": bool(a.get("transpose_b", False))})


# ---------------------------------------------------------------------- layout
def _reshape_rule(ts, a):
    if int(np.prod(a["shape"])) != ts[0].size:
        raise ValueError(f"cannot reshape {ts[0].shape} to {a['shape']}")
    return TensorType(a["shape"], ts[0].dtype)


primitive("reshape", "layout", 1, _reshape_rule,
          lambda xs, a: np.reshape(xs[0], a["shape"]),
          lambda F, xs, out, g, a: [F.reshape(g, xs[0].shape)],
          lambda ts, a: {"shape": tuple(int(d) for d in a["shape"])})


def _transpose_rule(ts, a):
    if sorted(a["perm"]) != list(range(ts[0].rank)):
        raise ValueError(f"transpose: {a['perm']} is not a permutation of {ts[0].rank} axes")
    return TensorType(tuple(ts[0].shape[p] for p in a["perm"]), ts[0].dtype)


primitive("transpose", "layout", 1, _transpose_rule,
          lambda xs, a: np.transpose(xs[0], a["perm"]),
          lambda F, xs, out, g, a: [F.transpose(g, tuple(np.argsort(a["perm"])))],
          lambda ts, a: {"perm": tuple(int(p) for p in a["perm"])})


def _broadcast_rule(ts, a):
    if broadcast_shapes(ts[0].shape, a["shape"]) != a["shape"]:
        raise ValueError(f"cannot broadcast {ts[0].shape} to {a['shape']}")
    return TensorType(a["shape"], ts[0].dtype)


primitive("broadcast_to", "layout", 1, _broadcast_rule,
          lambda xs, a: np.broadcast_to(xs[0], a["shape"]),
          lambda F, xs, out, g, a: [g],   # autodiff sums the broadcast cotangent down
          lambda ts, a: {"shape": tuple(int(d) for d in a["shape"])})


# ----------------------------------------------------------- slicing and padding
def _slice_rule(ts, a):
    shape = ts[0].shape
    if len(a["start"]) != len(shape) or len(a["size"]) != len(shape):
        raise ValueError(f"slice: start {a['start']} / size {a['size']} do not match rank {len(shape)}")
    for s, n, d in zip(a["start"], a["size"], shape):
        if s < 0 or n < 0 or s + n > d:
            raise ValueError(f"slice: start {a['start']} size {a['size']} out of bounds for {shape}")
    return TensorType(tuple(a["size"]), ts[0].dtype)


def _slice_ref(xs, a):
    return xs[0][tuple(slice(s, s + n) for s, n in zip(a["start"], a["size"]))]


def _slice_vjp(F, xs, out, g, a):
    lo = a["start"]
    hi = tuple(d - s - n for d, s, n in zip(xs[0].shape, a["start"], a["size"]))
    return [F.pad(g, lo, hi)]


primitive("slice", "layout", 1, _slice_rule, _slice_ref, _slice_vjp,
          lambda ts, a: {"start": tuple(int(s) for s in a["start"]),
                         "size": tuple(int(s) for s in a["size"])})


def _pad_rule(ts, a):
    shape = ts[0].shape
    if len(a["lo"]) != len(shape) or len(a["hi"]) != len(shape) or min(a["lo"] + a["hi"], default=0) < 0:
        raise ValueError(f"pad: lo {a['lo']} / hi {a['hi']} invalid for shape {shape}")
    return TensorType(tuple(d + l + h for d, l, h in zip(shape, a["lo"], a["hi"])), ts[0].dtype)


primitive("pad", "layout", 1, _pad_rule,
          lambda xs, a: np.pad(xs[0], list(zip(a["lo"], a["hi"]))),
          lambda F, xs, out, g, a: [F.slice(g, a["lo"], xs[0].shape)],
          lambda ts, a: {"lo": tuple(int(s) for s in a["lo"]), "hi": tuple(int(s) for s in a["hi"])})


# ------------------------------------------------------------ gather and scatter
def _gather_rule(ts, a):
    table, idx = ts
    if idx.dtype != "int32":
        raise TypeError(f"gather: indices must be int32, got {idx.dtype}")
    if table.rank < 1:
        raise ValueError("gather: the table needs at least one axis")
    return TensorType(idx.shape + table.shape[1:], table.dtype)


def _gather_ref(xs, a):
    table, idx = xs
    return table[np.clip(idx, 0, table.shape[0] - 1)]


primitive("gather", "gather", 2, _gather_rule, _gather_ref,
          lambda F, xs, out, g, a: [F.scatter_add(xs[1], g, xs[0].shape[0]), None])


def _scatter_rule(ts, a):
    idx, upd = ts
    if idx.dtype != "int32":
        raise TypeError(f"scatter_add: indices must be int32, got {idx.dtype}")
    if upd.shape[:idx.rank] != idx.shape:
        raise ValueError(f"scatter_add: updates {upd.shape} do not start with indices {idx.shape}")
    return TensorType((a["num"],) + upd.shape[idx.rank:], upd.dtype)


def _scatter_ref(xs, a):
    idx, upd = xs
    out = np.zeros((a["num"],) + upd.shape[idx.ndim:], dtype=upd.dtype)
    np.add.at(out, np.clip(idx, 0, a["num"] - 1), upd)
    return out


primitive("scatter_add", "scatter", 2, _scatter_rule, _scatter_ref,
          lambda F, xs, out, g, a: [None, F.gather(g, xs[0])],
          lambda ts, a: {"num": int(a["num"])})


# ------------------------------------------------------------------- random bits
def hash_uniform(index: np.ndarray, key, salt: int) -> np.ndarray:
    """Counter-based uniform [0, 1) floats: a murmur3 finalizer of (index, key, salt).

    The compiled lowering computes the same 32-bit arithmetic, bit for bit.
    """
    m = np.uint64(0xFFFFFFFF)
    h = (index.astype(np.uint64) * np.uint64(0x9E3779B1)
         + np.uint64(int(key) & 0xFFFFFFFF) * np.uint64(0x85EBCA77)
         + np.uint64(salt & 0xFFFFFFFF) * np.uint64(0xC2B2AE3D)) & m
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & m
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & m
    h ^= h >> np.uint64(16)
    return ((h >> np.uint64(8)).astype(np.float64) * 2.0 ** -24).astype(np.float32)


def _random_rule(ts, a):
    if ts[0].shape != ():
        raise ValueError(f"random_uniform: the key must be a scalar, got {ts[0].shape}")
    return TensorType(tuple(a["shape"]), "float32")


primitive("random_uniform", "elementwise", 1, _random_rule,
          lambda xs, a: hash_uniform(np.arange(int(np.prod(a["shape"]))), xs[0], a["salt"]
                                     ).reshape(a["shape"]),
          lambda F, xs, out, g, a: [None],
          lambda ts, a: {"shape": tuple(int(d) for d in a["shape"]), "salt": int(a["salt"])})


# ------------------------------------------------------------------------- scan
class Body:
    """The graph of one step of a scan, compared and hashed by content.

    Leaves: 'state' leaves c0, c1, ... are the carries (the graph's updates give
    their next values); 'input' leaves k0, ... are loop-invariant operands and
    x0, ... the current slices of the scanned sequences. Outputs y0, ... are the
    per-step results, stacked along a new leading axis by the scan.
    """

    def __init__(self, graph, n_consts: int, n_carry: int, n_xs: int, n_ys: int):
        from .fingerprint import graph_fingerprint
        self.graph = graph
        self.n_consts, self.n_carry, self.n_xs, self.n_ys = n_consts, n_carry, n_xs, n_ys
        self.key = graph_fingerprint(graph)

    def leaf(self, name):
        return self.graph.leaf_by_name(name)

    def type_of(self, name):
        return self.graph.type(self.leaf(name))

    def __eq__(self, other):
        return isinstance(other, Body) and other.key == self.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return f"Body#{self.key[:10]}"


def scan_result_types(body: Body, length: int):
    """Types of a scan's results, by index: final carries, stacked ys, stacked carries
    as they were at the start of each step (kept for the backward pass)."""
    carries = [body.type_of(f"c{i}") for i in range(body.n_carry)]
    ys = [body.graph.type(body.graph.outputs[f"y{j}"]) for j in range(body.n_ys)]
    return (carries + [TensorType((length, *t.shape), t.dtype) for t in ys]
            + [TensorType((length, *t.shape), t.dtype) for t in carries])


def _scan_rule(ts, a):
    body = a["body"]
    n = body.n_consts + body.n_carry + body.n_xs
    if len(ts) != n + a["dynamic"]:
        raise ValueError(f"scan: expected {n + a['dynamic']} operands, got {len(ts)}")
    if a["dynamic"] and (ts[n].shape != () or ts[n].dtype != "int32"):
        raise ValueError(f"scan: the run-time step count must be an int32 scalar, got {ts[n]}")
    ts = ts[:n]
    consts, carries, xs = ts[:body.n_consts], ts[body.n_consts:n - body.n_xs], ts[n - body.n_xs:]
    for i, t in enumerate(consts):
        if t != body.type_of(f"k{i}"):
            raise ValueError(f"scan: constant {i} is {t}, the body expects {body.type_of(f'k{i}')}")
    for i, t in enumerate(carries):
        if t != body.type_of(f"c{i}"):
            raise ValueError(f"scan: carry {i} is {t}, the body expects {body.type_of(f'c{i}')}")
    for j, t in enumerate(xs):
        want = body.type_of(f"x{j}")
        if t.shape != (a["length"], *want.shape) or t.dtype != want.dtype:
            raise ValueError(f"scan: sequence {j} is {t}, expected {a['length']} steps of {want}")
    return TensorType((0,), "float32")      # a scan's value is its results, see scan_result


def _scan_ref(xs, a):
    from .interpret import interpret
    body, T = a["body"], a["length"]
    nk, nc = body.n_consts, body.n_carry
    if a["dynamic"]:        # the first `steps` of `length` slots; the rest of ys are zeros
        steps = int(np.clip(np.asarray(xs[-1]), 0, T))
        xs = xs[:-1]
    else:
        steps = T
    consts, carry, seqs = xs[:nk], list(xs[nk:nk + nc]), xs[nk + nc:]
    float64 = any(np.asarray(x).dtype == np.float64 for x in xs)
    ys = [[] for _ in range(body.n_ys)]
    saved = [[] for _ in range(nc)]
    for step in range(steps):
        t = steps - 1 - step if a["reverse"] else step
        vals = {f"k{i}": k for i, k in enumerate(consts)}
        vals.update({f"c{i}": c for i, c in enumerate(carry)})
        vals.update({f"x{j}": s[t] for j, s in enumerate(seqs)})
        for i, c in enumerate(carry):
            saved[i].append((t, c))
        outs, new = interpret(body.graph, vals, float64=float64)
        carry = [new.get(f"c{i}", carry[i]) for i in range(nc)]
        for j in range(body.n_ys):
            ys[j].append((t, outs[f"y{j}"]))

    def stack(items, t):
        arr = np.zeros(t.shape, dtype=np.float64 if float64 else t.dtype)
        for step, v in items:
            arr[step] = v
        return arr
    types = scan_result_types(body, T)
    return tuple(carry) + tuple(stack(ys[j], types[nc + j]) for j in range(body.n_ys)) + \
        tuple(stack(saved[i], types[nc + body.n_ys + i]) for i in range(nc))


# `dynamic`: a last operand, an int32 scalar read at run time, is the number of
# steps taken (at most `length`, the capacity of the stacked results); a reverse scan
# starts at steps - 1. Stacked slots past it hold zeros.
primitive("scan", "scan", -1, _scan_rule, _scan_ref, None,
          lambda ts, a: {"body": a["body"], "length": int(a["length"]),
                         "reverse": bool(a.get("reverse", False)),
                         "dynamic": bool(a.get("dynamic", False))})


def _scan_result_rule(ts, a):
    return TensorType(tuple(a["shape"]), a["dtype"])


primitive("scan_result", "scan", 1, _scan_result_rule, lambda xs, a: xs[0][a["index"]], None,
          lambda ts, a: {"index": int(a["index"]), "shape": tuple(a["shape"]), "dtype": a["dtype"]})


# ----------------------------------------------------------------- convolution
from . import conv as _conv  # noqa: E402,F401  (declares conv, conv_weight_grad)
