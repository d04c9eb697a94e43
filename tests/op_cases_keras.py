"""Test cases for every public function of `kcompile.ops`.

`KERAS_CASES[name]` lists `KCase`s: the array arguments, how to call the op on them
(static arguments inside the lambda), and the expected result written with numpy in
float64 (Keras' documented formula, independent of the code under test). Domains keep
differentiable cases away from kinks and ties; `diff=False` marks cases whose
gradient is not checked (integer or boolean results, piecewise constant ops).
`symbolic=False` marks ops without tensor arguments (creation and shape queries),
which only have an eager use.

Plain Python (no pytest), like tests/op_cases.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import zlib

import numpy as np

from kcompile import ops

_erf = np.vectorize(math.erf, otypes=[np.float64])


@dataclass(eq=False)
class KCase:
    call: object                 # (*arrays) -> result, calling kcompile.ops
    arrays: list                 # the tensor arguments
    expect: object               # (*float64 arrays) -> expected result (or tuple)
    diff: bool = True            # check the VJP against finite differences
    symbolic: bool = True        # also traced, compiled and differentiated
    rtol: float = 2e-5           # eager (float32) vs the float64 formula
    note: str = ""


def _rng(tag):
    return np.random.default_rng(zlib.crc32(tag.encode()))


_R = _rng("keras-ops")


def N(*shape, scale=1.0):
    return (_R.standard_normal(shape) * scale).astype(np.float32)


def U(lo, hi, *shape):
    return _R.uniform(lo, hi, shape).astype(np.float32)


def AZ(*shape, lo=0.3, hi=2.0):
    """|x| in [lo, hi], random sign: away from kinks at 0."""
    return (_R.choice([-1.0, 1.0], shape) * _R.uniform(lo, hi, shape)).astype(np.float32)


def I(lo, hi, *shape):
    return _R.integers(lo, hi, shape).astype(np.int32)


def D(*shape, scale=2.0):
    """Distinct values along the last axis (no ties for max/sort), spaced >= 0.05."""
    n = shape[-1]
    base = np.stack([_R.permutation(n) for _ in range(int(np.prod(shape[:-1], dtype=int)))])
    jitter = _R.uniform(0, 0.02, base.shape)
    return ((base + jitter) * (scale / n) - scale / 2).reshape(shape).astype(np.float32)


def _lattice(*shape, offset=0.0):
    return ((_R.integers(-8, 8, shape) + offset) * 0.25).astype(np.float32)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    return np.log(_softmax(x, axis))


def _softplus(x):
    return np.log1p(np.exp(x))


EPS = 1e-7


def _one_hot(labels, n, axis=-1):
    out = (labels[..., None] == np.arange(n)).astype(np.float64)
    return np.moveaxis(out, -1, axis)


def _stable_rank_sort(x):
    return np.sort(x, axis=-1, kind="stable")


def _build():
    t: dict[str, list[KCase]] = {}

    def add(name, *cases):
        t.setdefault(name, []).extend(cases)

    C = KCase
    # --------------------------------------------------------- binary arithmetic
    shapes = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (5,))]
    for name, f, dom in [
            ("add", np.add, (N, N)), ("subtract", np.subtract, (N, N)),
            ("multiply", np.multiply, (N, N)),
            ("divide", np.divide, (N, AZ)), ("true_divide", np.true_divide, (N, AZ)),
            ("maximum", np.maximum, (lambda *s: _lattice(*s), lambda *s: _lattice(*s, offset=0.5))),
            ("minimum", np.minimum, (lambda *s: _lattice(*s), lambda *s: _lattice(*s, offset=0.5)))]:
        fn = getattr(ops, name)
        for sa, sb in shapes:
            add(name, C(lambda a, b, fn=fn: fn(a, b), [dom[0](*sa), dom[1](*sb)], f))
        add(name, C(lambda a, b, fn=fn: fn(a, b), [I(-5, 6, 3, 4), I(1, 6, 4)], f, diff=False,
                    note="int"))
        add(name, C(lambda a, fn=fn: fn(a, 2), [N(3, 4) if name != "divide" else N(3, 4)],
                    lambda a, f=f: f(a, 2.0), note="python scalar"))
    add("power", C(lambda a, b: ops.power(a, b), [U(0.5, 2, 3, 4), U(-2, 2, 4)], np.power),
        C(lambda a: ops.power(a, 2), [N(3, 4)], lambda a: a ** 2, note="square of negatives"),
        C(lambda a: ops.power(a, 3), [I(-4, 5, 3, 4)], lambda a: a ** 3, diff=False, note="int"),
        C(lambda a: ops.power(a, 0.5), [U(0.5, 2, 5)], np.sqrt))
    add("floor_divide",
        C(lambda a, b: ops.floor_divide(a, b), [I(-20, 20, 3, 4), I(1, 6, 4)], np.floor_divide,
          diff=False),
        C(lambda a, b: ops.floor_divide(a, b), [I(-20, 20, 6), -I(1, 6, 6)], np.floor_divide,
          diff=False, note="negative divisor"),
        C(lambda a, b: ops.floor_divide(a, b), [U(-5, 5, 3, 4) + 0.01, AZ(4)], np.floor_divide,
          diff=False, note="float"))
    add("mod",
        C(lambda a, b: ops.mod(a, b), [I(-20, 20, 3, 4), I(1, 6, 4)], np.mod, diff=False),
        C(lambda a, b: ops.mod(a, b), [I(-20, 20, 6), -I(1, 6, 6)], np.mod, diff=False,
          note="divisor's sign"),
        C(lambda a: ops.mod(a, 1.5), [U(0.1, 1.4, 3, 4) + 1.5 * I(-3, 3, 3, 4)],
          lambda a: np.mod(a, 1.5), note="float"))

    # --------------------------------------------------------- unary math
    for name, f, dom, diff in [
            ("negative", np.negative, N, True), ("abs", np.abs, AZ, True),
            ("absolute", np.abs, AZ, True), ("square", np.square, N, True),
            ("sqrt", np.sqrt, lambda *s: U(0.2, 4, *s), True),
            ("rsqrt", lambda x: 1 / np.sqrt(x), lambda *s: U(0.2, 4, *s), True),
            ("reciprocal", lambda x: 1 / x, AZ, True),
            ("exp", np.exp, lambda *s: U(-4, 4, *s), True), ("exp2", np.exp2, N, True),
            ("log", np.log, lambda *s: U(0.1, 4, *s), True),
            ("log2", np.log2, lambda *s: U(0.1, 4, *s), True),
            ("log10", np.log10, lambda *s: U(0.1, 4, *s), True),
            ("log1p", np.log1p, lambda *s: U(-0.9, 4, *s), True),
            ("expm1", np.expm1, lambda *s: U(-4, 4, *s), True),
            ("sign", np.sign, AZ, False), ("sin", np.sin, lambda *s: U(-10, 10, *s), True),
            ("cos", np.cos, lambda *s: U(-10, 10, *s), True),
            ("tan", np.tan, lambda *s: U(-1.4, 1.4, *s), True),
            ("sinh", np.sinh, N, True), ("cosh", np.cosh, N, True),
            ("tanh", np.tanh, N, True),
            ("floor", np.floor, lambda *s: U(0.1, 0.9, *s) + I(-5, 5, *s), False),
            ("ceil", np.ceil, lambda *s: U(0.1, 0.9, *s) + I(-5, 5, *s), False),
            ("erf", _erf, lambda *s: N(*s, scale=1.5), True)]:
        fn = getattr(ops, name)
        rtol = 1e-4 if name in ("tan", "expm1", "log1p", "exp2", "sinh", "cosh") else 2e-5
        add(name, C(lambda a, fn=fn: fn(a), [dom(3, 5)], f, diff=diff, rtol=rtol),
            C(lambda a, fn=fn: fn(a), [dom(7)], f, diff=diff, rtol=rtol))
        if name not in ("sqrt", "rsqrt", "log", "log2", "log10", "log1p", "reciprocal", "sin", "cos",
                        "tan", "erf", "exp", "exp2", "expm1", "sinh", "cosh", "tanh"):
            # floor and ceil of integers are float32, as Keras computes them
            as_keras = (lambda a, f=f: f(a).astype(np.float64)) if name in ("floor", "ceil") else f
            add(name, C(lambda a, fn=fn: fn(a), [I(-5, 6, 4)], as_keras, diff=False, note="int"))
    add("log1p", C(lambda a: ops.log1p(a), [np.float32([1e-7, -1e-6, 3e-5, 0.0])], np.log1p,
                   diff=False, rtol=1e-6, note="tiny"))
    add("expm1", C(lambda a: ops.expm1(a), [np.float32([1e-7, -1e-6, 3e-5, 0.0])], np.expm1,
                   diff=False, rtol=1e-6, note="tiny"))
    add("round", C(lambda a: ops.round(a), [np.float32([0.5, 1.5, 2.5, -0.5, -1.5, 0.2, 2.7])],
                   np.round, diff=False, note="halves to even"),
        C(lambda a: ops.round(a, 2), [U(-3, 3, 3, 4)], lambda a: np.round(a, 2), diff=False,
          rtol=1e-6, note="decimals"),
        C(lambda a: ops.round(a), [I(-5, 5, 4)], np.round, diff=False, note="int"))
    add("clip", C(lambda a: ops.clip(a, -0.6, 0.7), [_lattice(3, 4, offset=0.1) * 0.4],
                  lambda a: np.clip(a, -0.6, 0.7)),
        C(lambda a: ops.clip(a, 1, 3), [I(-2, 6, 5)], lambda a: np.clip(a, 1, 3), diff=False,
          note="int"),
        C(lambda a: ops.clip(a, -1.0, 1.0), [N(9)], lambda a: np.clip(a, -1, 1), diff=False))
    add("nan_to_num",
        C(lambda a: ops.nan_to_num(a), [np.float32([1.0, np.nan, np.inf, -np.inf, -2.0])],
          lambda a: np.nan_to_num(a.astype(np.float32)), diff=False),
        C(lambda a: ops.nan_to_num(a, nan=5.0, posinf=9.0, neginf=-9.0),
          [np.float32([np.nan, np.inf, -np.inf, 0.5])],
          lambda a: np.nan_to_num(a, nan=5.0, posinf=9.0, neginf=-9.0), diff=False),
        C(lambda a: ops.nan_to_num(a), [N(3, 4)], lambda a: a))

    # --------------------------------------------------------- comparisons and logic
    for name, f in [("equal", np.equal), ("not_equal", np.not_equal), ("greater", np.greater),
                    ("greater_equal", np.greater_equal), ("less", np.less),
                    ("less_equal", np.less_equal)]:
        fn = getattr(ops, name)
        add(name, C(lambda a, b, fn=fn: fn(a, b), [I(-2, 3, 3, 4).astype(np.float32),
                                                   I(-2, 3, 4).astype(np.float32)], f, diff=False),
            C(lambda a, b, fn=fn: fn(a, b), [I(-2, 3, 3, 4), I(-2, 3, 3, 1)], f, diff=False,
              note="int"),
            C(lambda a, fn=fn: fn(a, 0.5), [N(5)], lambda a, f=f: f(a, 0.5), diff=False))
    B = lambda *s: _R.integers(0, 2, s).astype(bool)  # noqa: E731
    for name, f in [("logical_and", np.logical_and), ("logical_or", np.logical_or),
                    ("logical_xor", np.logical_xor)]:
        fn = getattr(ops, name)
        add(name, C(lambda a, b, fn=fn: fn(a, b), [B(3, 4), B(4)], f, diff=False),
            C(lambda a, b, fn=fn: fn(a, b), [I(-1, 2, 5), N(5)], f, diff=False, note="numbers"),
            C(lambda a, b, fn=fn: fn(a, b), [B(2, 1), B(1, 3)], f, diff=False))
    add("logical_not", C(lambda a: ops.logical_not(a), [B(3, 4)], np.logical_not, diff=False),
        C(lambda a: ops.logical_not(a), [I(-1, 2, 6)], np.logical_not, diff=False))
    special = np.float32([1.0, np.nan, np.inf, -np.inf, 0.0, -3.0])
    for name, f in [("isnan", np.isnan), ("isinf", np.isinf), ("isfinite", np.isfinite)]:
        fn = getattr(ops, name)
        add(name, C(lambda a, fn=fn: fn(a), [special], f, diff=False),
            C(lambda a, fn=fn: fn(a), [I(-3, 3, 4)], f, diff=False, note="int"))
    add("where",
        C(lambda c, a, b: ops.where(c, a, b), [B(3, 4), N(3, 4), N(4)], np.where),
        C(lambda c, a: ops.where(c, a, 0.0), [B(5), N(5)], lambda c, a: np.where(c, a, 0.0)),
        C(lambda c, a, b: ops.where(c, a, b), [B(2, 3), I(0, 9, 2, 3), I(0, 9, 3)], np.where,
          diff=False, note="int"))

    # --------------------------------------------------------- linear algebra
    add("matmul",
        C(lambda a, b: ops.matmul(a, b), [N(3, 4), N(4, 5)], np.matmul),
        C(lambda a, b: ops.matmul(a, b), [N(2, 3, 4), N(4, 5)], np.matmul, note="batch @ matrix"),
        C(lambda a, b: ops.matmul(a, b), [N(2, 3, 4), N(2, 4, 5)], np.matmul, note="batched"),
        C(lambda a, b: ops.matmul(a, b), [N(2, 1, 3, 4), N(3, 4, 2)], np.matmul,
          note="broadcast batch"),
        C(lambda a, b: ops.matmul(a, b), [N(4), N(4, 5)], np.matmul, note="vector @ matrix"),
        C(lambda a, b: ops.matmul(a, b), [N(3, 4), N(4)], np.matmul, note="matrix @ vector"),
        C(lambda a, b: ops.matmul(a, b), [I(-3, 3, 3, 4), I(-3, 3, 4, 2)], np.matmul, diff=False,
          note="int"))
    add("dot", C(lambda a, b: ops.dot(a, b), [N(3, 4), N(4, 5)], np.dot),
        C(lambda a, b: ops.dot(a, b), [N(4), N(4)], np.dot),
        C(lambda a, b: ops.dot(a, b), [N(2, 3, 4), N(5, 4, 2)], np.dot, note="nd"),
        C(lambda a, b: ops.dot(a, b), [N(3, 4), N(4)], np.dot))
    add("tensordot", C(lambda a, b: ops.tensordot(a, b, axes=1), [N(3, 4), N(4, 5)],
                       lambda a, b: np.tensordot(a, b, axes=1)),
        C(lambda a, b: ops.tensordot(a, b, axes=([0, 2], [2, 0])), [N(3, 4, 5), N(5, 2, 3)],
          lambda a, b: np.tensordot(a, b, axes=([0, 2], [2, 0]))),
        C(lambda a, b: ops.tensordot(a, b), [N(2, 3, 4), N(3, 4, 2)],
          lambda a, b: np.tensordot(a, b)))
    add("outer", C(lambda a, b: ops.outer(a, b), [N(3), N(4)], np.outer),
        C(lambda a, b: ops.outer(a, b), [N(2, 2), N(3)], np.outer))
    add("inner", C(lambda a, b: ops.inner(a, b), [N(4), N(4)], np.inner),
        C(lambda a, b: ops.inner(a, b), [N(2, 4), N(3, 4)], np.inner))
    for sub, shapes in [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                        ("i,j->ij", [(3,), (4,)]), ("ij->ji", [(3, 4)]), ("ij->", [(3, 4)]),
                        ("bqd,bkd->bqk", [(2, 3, 4), (2, 5, 4)]), ("ij,ij->i", [(3, 4), (3, 4)]),
                        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
                        ("ij,jk", [(3, 4), (4, 2)])]:
        add("einsum", C(lambda *xs, sub=sub: ops.einsum(sub, *xs), [N(*s) for s in shapes],
                        lambda *xs, sub=sub: np.einsum(sub, *xs), note=sub))

    # --------------------------------------------------------- reductions
    for name, f in [("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min),
                    ("amax", np.max), ("amin", np.min), ("prod", np.prod), ("std", np.std),
                    ("var", np.var)]:
        fn = getattr(ops, name)
        dom = (lambda *s: D(*s)) if name in ("max", "min", "amax", "amin") else \
            (lambda *s: U(0.5, 1.5, *s)) if name == "prod" else N
        for axis, keep in [(None, False), (1, False), ((0, 2), True), (-1, True)]:
            add(name, C(lambda a, fn=fn, axis=axis, keep=keep: fn(a, axis=axis, keepdims=keep),
                        [dom(3, 4, 5)], lambda a, f=f, axis=axis, keep=keep: f(a, axis=axis,
                                                                               keepdims=keep),
                        note=f"axis={axis}"))
        if name not in ("std", "var"):
            add(name, C(lambda a, fn=fn: fn(a, axis=0), [I(-3, 4, 3, 4)],
                        lambda a, f=f: f(a, axis=0), diff=False, note="int"))
    add("prod", C(lambda a: ops.prod(a, axis=-1), [U(0.5, 1.5, 2, 7)],
                  lambda a: np.prod(a, axis=-1), note="odd length"))
    add("max", C(lambda a: ops.max(a, initial=0.5), [N(6)], lambda a: np.max(a, initial=0.5),
                 diff=False, note="initial"))
    for name, f in [("any", np.any), ("all", np.all)]:
        fn = getattr(ops, name)
        add(name, C(lambda a, fn=fn: fn(a), [B(3, 4)], f, diff=False),
            C(lambda a, fn=fn: fn(a, axis=1), [B(3, 4)], lambda a, f=f: f(a, axis=1), diff=False),
            C(lambda a, fn=fn: fn(a, axis=0, keepdims=True), [I(0, 2, 3, 4)],
              lambda a, f=f: f(a, axis=0, keepdims=True), diff=False))
    add("count_nonzero", C(lambda a: ops.count_nonzero(a), [I(0, 2, 3, 4)], np.count_nonzero,
                           diff=False),
        C(lambda a: ops.count_nonzero(a, axis=1), [I(-1, 2, 3, 4).astype(np.float32)],
          lambda a: np.count_nonzero(a, axis=1), diff=False))
    add("average", C(lambda a: ops.average(a, axis=1), [N(3, 4)], lambda a: np.average(a, axis=1)),
        C(lambda a, w: ops.average(a, axis=1, weights=w), [N(3, 4), U(0.5, 2, 4)],
          lambda a, w: np.average(a, axis=1, weights=w)),
        C(lambda a, w: ops.average(a, weights=w), [N(3, 4), U(0.5, 2, 3, 4)],
          lambda a, w: np.average(a, weights=w)))
    for name, f in [("argmax", np.argmax), ("argmin", np.argmin)]:
        fn = getattr(ops, name)
        add(name, C(lambda a, fn=fn: fn(a), [D(3, 4)], f, diff=False),
            C(lambda a, fn=fn: fn(a, axis=0), [D(3, 4)], lambda a, f=f: f(a, axis=0), diff=False),
            C(lambda a, fn=fn: fn(a, axis=-1, keepdims=True), [D(2, 3, 5)],
              lambda a, f=f: f(a, axis=-1, keepdims=True), diff=False),
            C(lambda a, fn=fn: fn(a, axis=1), [np.float32([[1, 3, 3], [2, 2, 0]])],
              lambda a, f=f: f(a, axis=1), diff=False, note="first of ties"),
            C(lambda a, fn=fn: fn(a, axis=1), [I(-9, 9, 3, 5)], lambda a, f=f: f(a, axis=1),
              diff=False, note="int"))
    for name, f in [("cumsum", np.cumsum), ("cumprod", np.cumprod)]:
        fn = getattr(ops, name)
        dom = N if name == "cumsum" else (lambda *s: U(0.5, 1.5, *s))
        add(name, C(lambda a, fn=fn: fn(a), [dom(3, 4)], f),
            C(lambda a, fn=fn: fn(a, axis=0), [dom(5, 3)], lambda a, f=f: f(a, axis=0)),
            C(lambda a, fn=fn: fn(a, axis=-1), [dom(2, 3, 7)], lambda a, f=f: f(a, axis=-1)),
            C(lambda a, fn=fn: fn(a, axis=1), [I(-3, 4, 3, 5)], lambda a, f=f: f(a, axis=1),
              diff=False, note="int"))

    # --------------------------------------------------------- layout
    add("reshape", C(lambda a: ops.reshape(a, (4, 3)), [N(3, 4)], lambda a: a.reshape(4, 3)),
        C(lambda a: ops.reshape(a, (-1, 2)), [N(3, 4)], lambda a: a.reshape(-1, 2)),
        C(lambda a: ops.reshape(a, [12]), [I(0, 9, 3, 4)], lambda a: a.reshape(12), diff=False))
    add("ravel", C(lambda a: ops.ravel(a), [N(3, 4)], np.ravel),
        C(lambda a: ops.ravel(a), [N(2, 3, 2)], np.ravel))
    add("transpose", C(lambda a: ops.transpose(a), [N(3, 4)], np.transpose),
        C(lambda a: ops.transpose(a, (1, 2, 0)), [N(2, 3, 4)], lambda a: np.transpose(a, (1, 2, 0))),
        C(lambda a: ops.transpose(a, [0, 2, 1]), [I(0, 9, 2, 3, 4)],
          lambda a: np.transpose(a, (0, 2, 1)), diff=False))
    add("moveaxis", C(lambda a: ops.moveaxis(a, 0, -1), [N(2, 3, 4)], lambda a: np.moveaxis(a, 0, -1)),
        C(lambda a: ops.moveaxis(a, [0, 1], [2, 0]), [N(2, 3, 4)],
          lambda a: np.moveaxis(a, [0, 1], [2, 0])))
    add("swapaxes", C(lambda a: ops.swapaxes(a, 0, 2), [N(2, 3, 4)], lambda a: np.swapaxes(a, 0, 2)),
        C(lambda a: ops.swapaxes(a, -1, -2), [N(3, 4)], lambda a: np.swapaxes(a, -1, -2)))
    add("expand_dims", C(lambda a: ops.expand_dims(a, 1), [N(3, 4)], lambda a: np.expand_dims(a, 1)),
        C(lambda a: ops.expand_dims(a, -1), [N(3)], lambda a: np.expand_dims(a, -1)),
        C(lambda a: ops.expand_dims(a, (0, 2)), [N(3)], lambda a: np.expand_dims(a, (0, 2))))
    add("squeeze", C(lambda a: ops.squeeze(a), [N(3, 1, 4, 1)], np.squeeze),
        C(lambda a: ops.squeeze(a, 1), [N(3, 1, 4)], lambda a: np.squeeze(a, 1)),
        C(lambda a: ops.squeeze(a, -1), [N(3, 1)], lambda a: np.squeeze(a, -1)))
    add("concatenate",
        C(lambda a, b: ops.concatenate([a, b]), [N(2, 3), N(4, 3)], lambda a, b: np.concatenate([a, b])),
        C(lambda a, b, c: ops.concatenate([a, b, c], axis=-1), [N(2, 3), N(2, 1), N(2, 2)],
          lambda a, b, c: np.concatenate([a, b, c], axis=-1)),
        C(lambda a, b: ops.concatenate((a, b), axis=1), [I(0, 9, 2, 3), I(0, 9, 2, 2)],
          lambda a, b: np.concatenate([a, b], axis=1), diff=False, note="int"))
    add("stack", C(lambda a, b: ops.stack([a, b]), [N(2, 3), N(2, 3)], lambda a, b: np.stack([a, b])),
        C(lambda a, b, c: ops.stack([a, b, c], axis=-1), [N(4), N(4), N(4)],
          lambda a, b, c: np.stack([a, b, c], axis=-1)))
    add("vstack", C(lambda a, b: ops.vstack([a, b]), [N(2, 3), N(1, 3)], lambda a, b: np.vstack([a, b])),
        C(lambda a, b: ops.vstack([a, b]), [N(3), N(3)], lambda a, b: np.vstack([a, b])))
    add("hstack", C(lambda a, b: ops.hstack([a, b]), [N(2, 3), N(2, 1)], lambda a, b: np.hstack([a, b])),
        C(lambda a, b: ops.hstack([a, b]), [N(3), N(2)], lambda a, b: np.hstack([a, b])))
    add("split", C(lambda a: ops.split(a, 2), [N(4, 3)], lambda a: tuple(np.split(a, 2))),
        C(lambda a: ops.split(a, [1, 3], axis=1), [N(2, 5)],
          lambda a: tuple(np.split(a, [1, 3], axis=1))),
        C(lambda a: ops.split(a, 3, axis=-1), [N(2, 6)], lambda a: tuple(np.split(a, 3, axis=-1))))
    add("take", C(lambda a: ops.take(a, np.array([2, 0, -1]), axis=1), [N(3, 4)],
                  lambda a: np.take(a, [2, 0, -1], axis=1)),
        C(lambda a, i: ops.take(a, i, axis=0), [N(5, 3), I(-5, 5, 2, 4)],
          lambda a, i: np.take(a, i, axis=0), note="tensor indices"),
        C(lambda a, i: ops.take(a, i), [N(3, 4), I(0, 12, 5)], lambda a, i: np.take(a, i),
          note="flat"))
    add("take_along_axis",
        C(lambda a, i: ops.take_along_axis(a, i, axis=1), [N(3, 4), I(0, 4, 3, 2)],
          lambda a, i: np.take_along_axis(a, i, axis=1)),
        C(lambda a, i: ops.take_along_axis(a, i, axis=0), [N(3, 4), I(-3, 3, 2, 4)],
          lambda a, i: np.take_along_axis(a, i % 3, axis=0), note="negative"),
        C(lambda a, i: ops.take_along_axis(a, i, axis=-1), [N(2, 3, 5), I(0, 5, 2, 3, 1)],
          lambda a, i: np.take_along_axis(a, i, axis=-1)))
    add("tile", C(lambda a: ops.tile(a, (2, 3)), [N(2, 3)], lambda a: np.tile(a, (2, 3))),
        C(lambda a: ops.tile(a, 2), [N(3)], lambda a: np.tile(a, 2)),
        C(lambda a: ops.tile(a, (2, 1, 2)), [N(2, 3)], lambda a: np.tile(a, (2, 1, 2))))
    add("repeat", C(lambda a: ops.repeat(a, 2), [N(2, 3)], lambda a: np.repeat(a, 2)),
        C(lambda a: ops.repeat(a, 3, axis=1), [N(2, 3)], lambda a: np.repeat(a, 3, axis=1)),
        C(lambda a: ops.repeat(a, [1, 0, 2], axis=0), [N(3, 2)],
          lambda a: np.repeat(a, [1, 0, 2], axis=0)))
    add("broadcast_to", C(lambda a: ops.broadcast_to(a, (3, 4)), [N(4)],
                          lambda a: np.broadcast_to(a, (3, 4))),
        C(lambda a: ops.broadcast_to(a, (2, 3, 4)), [N(3, 1)], lambda a: np.broadcast_to(a, (2, 3, 4))))
    add("flip", C(lambda a: ops.flip(a), [N(3, 4)], np.flip),
        C(lambda a: ops.flip(a, axis=1), [N(3, 4)], lambda a: np.flip(a, axis=1)),
        C(lambda a: ops.flip(a, axis=0), [I(0, 9, 5)], lambda a: np.flip(a, axis=0), diff=False))
    add("tril", C(lambda a: ops.tril(a), [N(4, 4)], np.tril),
        C(lambda a: ops.tril(a, -1), [N(2, 3, 4)], lambda a: np.tril(a, -1)))
    add("triu", C(lambda a: ops.triu(a), [N(4, 4)], np.triu),
        C(lambda a: ops.triu(a, 1), [N(2, 3, 4)], lambda a: np.triu(a, 1)))
    add("diagonal", C(lambda a: ops.diagonal(a), [N(4, 4)], np.diagonal),
        C(lambda a: ops.diagonal(a, offset=1, axis1=1, axis2=2), [N(2, 3, 4)],
          lambda a: np.diagonal(a, offset=1, axis1=1, axis2=2)))
    add("trace", C(lambda a: ops.trace(a), [N(4, 4)], np.trace),
        C(lambda a: ops.trace(a, offset=-1), [N(3, 4)], lambda a: np.trace(a, offset=-1)))
    add("slice", C(lambda a: ops.slice(a, (1, 0), (2, 3)), [N(4, 4)], lambda a: a[1:3, 0:3]),
        C(lambda a: ops.slice(a, [0, 2, 1], [2, 1, 3]), [N(3, 4, 5)], lambda a: a[0:2, 2:3, 1:4]))
    add("slice_update",
        C(lambda a, u: ops.slice_update(a, (1, 1), u), [N(4, 4), N(2, 3)],
          lambda a, u: _updated(a, (1, 1), u)),
        C(lambda a, u: ops.slice_update(a, (0, 2), u), [I(0, 9, 3, 4), I(0, 9, 2, 2)],
          lambda a, u: _updated(a, (0, 2), u), diff=False, note="int"))

    # --------------------------------------------------------- creation and queries
    add("ones", C(lambda: ops.ones((2, 3)), [], lambda: np.ones((2, 3)), symbolic=False),
        C(lambda: ops.ones(4, dtype="int32"), [], lambda: np.ones(4, np.int32), symbolic=False))
    add("zeros", C(lambda: ops.zeros((2, 3)), [], lambda: np.zeros((2, 3)), symbolic=False),
        C(lambda: ops.zeros([3], "int64"), [], lambda: np.zeros(3, np.int64), symbolic=False))
    add("full", C(lambda: ops.full((2, 2), 7.5), [], lambda: np.full((2, 2), 7.5), symbolic=False),
        C(lambda: ops.full(3, 2), [], lambda: np.full(3, 2), symbolic=False))
    add("ones_like", C(lambda a: ops.ones_like(a), [N(2, 3)], np.ones_like, diff=False),
        C(lambda a: ops.ones_like(a, dtype="int32"), [N(3)], lambda a: np.ones_like(a, np.int32),
          diff=False))
    add("zeros_like", C(lambda a: ops.zeros_like(a), [I(0, 3, 2, 3)], np.zeros_like, diff=False),
        C(lambda a: ops.zeros_like(a), [N(3)], np.zeros_like, diff=False))
    add("full_like", C(lambda a: ops.full_like(a, 3.5), [N(2, 3)], lambda a: np.full_like(a, 3.5),
                       diff=False),
        C(lambda a: ops.full_like(a, 4), [I(0, 3, 5)], lambda a: np.full_like(a, 4), diff=False))
    add("arange", C(lambda: ops.arange(5), [], lambda: np.arange(5), symbolic=False),
        C(lambda: ops.arange(1, 2, 0.25), [], lambda: np.arange(1, 2, 0.25), symbolic=False),
        C(lambda: ops.arange(2, 11, 3, dtype="float32"), [], lambda: np.arange(2., 11, 3),
          symbolic=False))
    add("linspace", C(lambda: ops.linspace(0, 1, 5), [], lambda: np.linspace(0, 1, 5), symbolic=False),
        C(lambda: ops.linspace(-2, 2, 4, endpoint=False), [],
          lambda: np.linspace(-2, 2, 4, endpoint=False), symbolic=False))
    add("eye", C(lambda: ops.eye(3), [], lambda: np.eye(3), symbolic=False),
        C(lambda: ops.eye(2, 4, k=1), [], lambda: np.eye(2, 4, 1), symbolic=False))
    add("identity", C(lambda: ops.identity(3), [], lambda: np.identity(3), symbolic=False))
    add("tri", C(lambda: ops.tri(3, 4, k=-1), [], lambda: np.tri(3, 4, -1), symbolic=False))
    add("shape", C(lambda: ops.shape(np.ones((2, 3))), [], lambda: (2, 3), symbolic=False))
    add("size", C(lambda: ops.size(np.ones((2, 3))), [], lambda: 6, symbolic=False))
    add("ndim", C(lambda: ops.ndim(np.ones((2, 3))), [], lambda: 2, symbolic=False))
    add("dtype", C(lambda: ops.dtype(np.ones(2, np.float64)), [], lambda: "float32", symbolic=False))
    add("is_tensor", C(lambda: ops.is_tensor(np.ones(2)), [], lambda: True, symbolic=False))
    add("convert_to_tensor",
        C(lambda: ops.convert_to_tensor([[1, 2], [3, 4]]), [], lambda: np.array([[1, 2], [3, 4]]),
          symbolic=False),
        C(lambda: ops.convert_to_tensor(np.arange(3.0), dtype="float32"), [],
          lambda: np.arange(3.0), symbolic=False))
    add("convert_to_numpy", C(lambda: ops.convert_to_numpy(ops.ones(2)), [], lambda: np.ones(2),
                              symbolic=False))
    add("cast", C(lambda a: ops.cast(a, "int32"), [U(0.1, 0.9, 6) + I(-5, 5, 6)],
                  lambda a: np.trunc(a).astype(np.int64), diff=False),
        C(lambda a: ops.cast(a, "float32"), [I(-5, 5, 2, 3)], lambda a: a.astype(np.float64),
          diff=False),
        C(lambda a: ops.cast(a, "bool"), [np.float32([0, 1.5, -2, 0])], lambda a: a != 0, diff=False),
        C(lambda a: ops.cast(a, "float64"), [N(3)], lambda a: a))
    add("stop_gradient", C(lambda a: ops.stop_gradient(a), [N(3, 4)], lambda a: a, diff=False))

    # --------------------------------------------------------- norms and sorting
    add("norm", C(lambda a: ops.norm(a), [N(3, 4)], np.linalg.norm),
        C(lambda a: ops.norm(a, axis=1), [N(3, 4)], lambda a: np.linalg.norm(a, axis=1)),
        C(lambda a: ops.norm(a, ord=1, axis=-1, keepdims=True), [AZ(3, 4)],
          lambda a: np.linalg.norm(a, ord=1, axis=-1, keepdims=True)),
        C(lambda a: ops.norm(a, ord=np.inf, axis=0), [D(4, 3)],
          lambda a: np.linalg.norm(a, ord=np.inf, axis=0)),
        C(lambda a: ops.norm(a, ord=3, axis=1), [AZ(2, 5)], lambda a: np.linalg.norm(a, ord=3, axis=1)),
        C(lambda a: ops.norm(a, ord="fro"), [N(3, 4)], lambda a: np.linalg.norm(a, "fro")),
        C(lambda a: ops.norm(a, ord=1), [AZ(3, 4)], lambda a: np.linalg.norm(a, 1), diff=False,
          note="matrix 1-norm"),
        C(lambda a: ops.norm(a, ord=np.inf, axis=(0, 1)), [AZ(3, 4)],
          lambda a: np.linalg.norm(a, np.inf, axis=(0, 1)), diff=False, note="matrix inf-norm"))
    add("sort", C(lambda a: ops.sort(a), [D(3, 6)], lambda a: np.sort(a)),
        C(lambda a: ops.sort(a, axis=0), [D(5, 2).T.copy().T], lambda a: np.sort(a, axis=0)),
        C(lambda a: ops.sort(a), [np.float32([3, 1, 2, 1, 3])], np.sort, diff=False, note="ties"),
        C(lambda a: ops.sort(a), [I(-5, 5, 2, 7)], np.sort, diff=False, note="int"))
    add("argsort", C(lambda a: ops.argsort(a), [D(3, 6)], np.argsort, diff=False),
        C(lambda a: ops.argsort(a), [np.float32([3, 1, 2, 1, 3])],
          lambda a: np.argsort(a, kind="stable"), diff=False, note="stable ties"),
        C(lambda a: ops.argsort(a, axis=0), [D(2, 5).T.copy()],
          lambda a: np.argsort(a, axis=0), diff=False))
    add("top_k", C(lambda a: ops.top_k(a, 3), [D(2, 6)],
                   lambda a: (-np.sort(-a)[..., :3], np.argsort(-a, kind="stable")[..., :3])),
        C(lambda a: ops.top_k(a, 2), [np.float32([1, 5, 5, 2])],
          lambda a: (np.float64([5, 5]), np.int64([1, 2])), diff=False, note="ties: lower index"),
        C(lambda a: ops.top_k(a, 1), [I(-9, 9, 3, 4)],
          lambda a: (-np.sort(-a)[..., :1], np.argsort(-a, kind="stable")[..., :1]), diff=False,
          note="int"))
    add("in_top_k", C(lambda t, p: ops.in_top_k(t, p, 2), [I(0, 5, 4), D(4, 5)],
                      lambda t, p: np.array([t[i] in np.argsort(-p[i])[:2] for i in range(4)]),
                      diff=False),
        C(lambda t, p: ops.in_top_k(t, p, 1), [I(0, 3, 6), D(6, 3)],
          lambda t, p: t == np.argmax(p, axis=1), diff=False))
    add("logsumexp", C(lambda a: ops.logsumexp(a), [N(3, 4)], lambda a: np.log(np.sum(np.exp(a)))),
        C(lambda a: ops.logsumexp(a, axis=-1, keepdims=True), [N(3, 4, scale=30.0)],
          lambda a: a.max(-1, keepdims=True) + np.log(np.sum(np.exp(a - a.max(-1, keepdims=True)),
                                                              -1, keepdims=True)), note="large"))

    # --------------------------------------------------------- nn
    for name, f, dom in [
            ("relu", lambda x: np.maximum(x, 0), AZ),
            ("relu6", lambda x: np.clip(x, 0, 6), lambda *s: AZ(*s, lo=0.3, hi=5.5)),
            ("elu", lambda x: np.where(x > 0, x, np.exp(x) - 1), AZ),
            ("selu", lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 *
                                                             (np.exp(x) - 1)), AZ),
            ("sigmoid", _sigmoid, N),
            ("hard_sigmoid", lambda x: np.clip(x / 6 + 0.5, 0, 1), lambda *s: AZ(*s, hi=2.8)),
            ("hard_silu", lambda x: x * np.clip(x / 6 + 0.5, 0, 1), lambda *s: AZ(*s, hi=2.8)),
            ("hard_swish", lambda x: x * np.clip(x / 6 + 0.5, 0, 1), lambda *s: AZ(*s, hi=2.8)),
            ("softplus", _softplus, N), ("softsign", lambda x: x / (1 + np.abs(x)), AZ),
            ("silu", lambda x: x * _sigmoid(x), N), ("swish", lambda x: x * _sigmoid(x), N),
            ("log_sigmoid", lambda x: -_softplus(-x), N),
            ("leaky_relu", lambda x: np.where(x > 0, x, 0.2 * x), AZ),
            ("celu", lambda x: np.maximum(x, 0) + np.minimum(np.exp(x) - 1, 0), AZ),
            ("hard_tanh", lambda x: np.clip(x, -1, 1), lambda *s: AZ(*s, lo=0.1, hi=0.9)),
            ("tanh_shrink", lambda x: x - np.tanh(x), N),
            ("squareplus", lambda x: (x + np.sqrt(x * x + 4)) / 2, N),
            ("gelu", lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), N)]:
        fn = getattr(ops, name)
        add(name, C(lambda a, fn=fn: fn(a), [dom(3, 5)], f), C(lambda a, fn=fn: fn(a), [dom(8)], f))
    add("gelu", C(lambda a: ops.gelu(a, approximate=False), [N(3, 5)],
                  lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), note="exact"))
    add("elu", C(lambda a: ops.elu(a, alpha=0.5), [AZ(6)], lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))))
    add("leaky_relu", C(lambda a: ops.leaky_relu(a, negative_slope=0.01), [AZ(6)],
                        lambda x: np.where(x > 0, x, 0.01 * x)))
    add("glu", C(lambda a: ops.glu(a), [N(3, 6)], lambda x: x[:, :3] * _sigmoid(x[:, 3:])),
        C(lambda a: ops.glu(a, axis=0), [N(4, 3)], lambda x: x[:2] * _sigmoid(x[2:])))
    add("softmax", C(lambda a: ops.softmax(a), [N(3, 5)], _softmax),
        C(lambda a: ops.softmax(a, axis=0), [N(3, 5)], lambda a: _softmax(a, 0)),
        C(lambda a: ops.softmax(a, axis=(1, 2)), [N(2, 3, 4)],
          lambda a: np.exp(a) / np.exp(a).sum(axis=(1, 2), keepdims=True)))
    add("log_softmax", C(lambda a: ops.log_softmax(a), [N(3, 5)], _log_softmax),
        C(lambda a: ops.log_softmax(a, axis=0), [N(3, 5, scale=20.0)], lambda a: _log_softmax(a, 0)))
    add("moments", C(lambda a: ops.moments(a, axes=[0]), [N(4, 3)],
                     lambda a: (a.mean(0), a.var(0))),
        C(lambda a: ops.moments(a, axes=(0, 1), keepdims=True), [N(2, 3, 4)],
          lambda a: (a.mean((0, 1), keepdims=True), a.var((0, 1), keepdims=True))))
    # Convolutions: the direct loops of tests/conv_direct.py, padding by TF's "same" rule
    # (total = max((ceil(n / s) - 1) * s + k_d - n, 0), the smaller half first).
    from conv_direct import conv as direct_conv

    def same(n, k, s, d):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        return (total // 2, total - total // 2)

    def conv_ref(strides, padding, dilation, depthwise=False, channels_first=False):
        def ref(x, w):
            if channels_first:
                x = np.moveaxis(x, 1, -1)
            rank = x.ndim - 2
            if depthwise:
                w = w.reshape(*w.shape[:rank], 1, -1)
            pads = [same(n, k, s, d) if padding == "same" else (0, 0) for n, k, s, d in
                    zip(x.shape[1:-1], w.shape[:rank], strides, dilation)]
            y = direct_conv(x, w, {"strides": strides, "padding": pads, "rhs_dilation": dilation,
                                   "groups": x.shape[-1] // w.shape[-2]})
            return np.moveaxis(y, -1, 1) if channels_first else y
        return ref
    add("conv", C(lambda a, w: ops.conv(a, w), [N(2, 7, 3), N(3, 3, 4)],
                  conv_ref((1,), "valid", (1,))),
        C(lambda a, w: ops.conv(a, w, strides=2, padding="same"), [N(2, 7, 6, 3), N(3, 2, 3, 4)],
          conv_ref((2, 2), "same", (1, 1)), note="2-D strided same"),
        C(lambda a, w: ops.conv(a, w, dilation_rate=2, data_format="channels_first"),
          [N(1, 4, 9), N(3, 2, 6)], conv_ref((1,), "valid", (2,), channels_first=True),
          note="dilated, grouped, channels_first"))
    add("depthwise_conv", C(lambda a, w: ops.depthwise_conv(a, w, padding="same"),
                            [N(2, 5, 6, 3), N(3, 3, 3, 2)],
                            conv_ref((1, 1), "same", (1, 1), depthwise=True)))
    add("normalize", C(lambda a: ops.normalize(a), [N(3, 4)],
                       lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)),
        C(lambda a: ops.normalize(a, axis=0, order=1), [AZ(3, 4)],
          lambda a: a / np.abs(a).sum(0, keepdims=True)))
    add("one_hot", C(lambda a: ops.one_hot(a, 4), [I(0, 4, 5)], lambda a: _one_hot(a, 4), diff=False),
        C(lambda a: ops.one_hot(a, 3, axis=0), [I(-1, 4, 2, 3)], lambda a: _one_hot(a, 3, 0),
          diff=False, note="out of range: zeros"),
        C(lambda a: ops.one_hot(a, 3, dtype="int32"), [I(0, 3, 4)],
          lambda a: _one_hot(a, 3).astype(np.int64), diff=False))
    add("multi_hot", C(lambda a: ops.multi_hot(a, 5), [I(0, 5, 3, 2)],
                       lambda a: _one_hot(a, 5).max(axis=-2), diff=False),
        C(lambda a: ops.multi_hot(a, 4), [I(0, 4, 2, 3)], lambda a: _one_hot(a, 4).max(axis=-2),
          diff=False))
    probs = lambda *s: _softmax(N(*s).astype(np.float64)).astype(np.float32)  # noqa: E731
    add("binary_crossentropy",
        C(lambda t, p: ops.binary_crossentropy(t, p), [U(0, 1, 3, 4), U(0.05, 0.95, 3, 4)],
          lambda t, p: -(t * np.log(p) + (1 - t) * np.log(1 - p))),
        C(lambda t, x: ops.binary_crossentropy(t, x, from_logits=True), [U(0, 1, 3, 4), N(3, 4, scale=3)],
          lambda t, x: -(t * np.log(_sigmoid(x)) + (1 - t) * np.log(1 - _sigmoid(x)))))
    add("categorical_crossentropy",
        C(lambda t, p: ops.categorical_crossentropy(t, p), [probs(3, 4), probs(3, 4)],
          lambda t, p: -np.sum(t * np.log(p / p.sum(-1, keepdims=True)), -1)),
        C(lambda t, x: ops.categorical_crossentropy(t, x, from_logits=True), [probs(3, 4), N(3, 4)],
          lambda t, x: -np.sum(t * _log_softmax(x), -1)),
        C(lambda t, x: ops.categorical_crossentropy(t, x, from_logits=True, axis=0),
          [probs(4, 3).T.copy().T, N(4, 3)], lambda t, x: -np.sum(t * _log_softmax(x, 0), 0)))
    add("sparse_categorical_crossentropy",
        C(lambda t, p: ops.sparse_categorical_crossentropy(t, p), [I(0, 4, 3), probs(3, 4)],
          lambda t, p: -np.log(p[np.arange(3), t] / p.sum(-1))),
        C(lambda t, x: ops.sparse_categorical_crossentropy(t, x, from_logits=True),
          [I(0, 4, 2, 3), N(2, 3, 4)],
          lambda t, x: -np.take_along_axis(_log_softmax(x), t[..., None], -1)[..., 0]),
        C(lambda t, x: ops.sparse_categorical_crossentropy(t, x, from_logits=True),
          [I(0, 4, 3, 1), N(3, 4)], lambda t, x: -_log_softmax(x)[np.arange(3), t[:, 0]],
          note="labels (n, 1)"))
    return t


def _updated(a, start, u):
    out = a.copy()
    out[tuple(slice(s, s + n) for s, n in zip(start, u.shape))] = u
    return out


KERAS_CASES: dict[str, list[KCase]] = _build()


def all_keras_cases():
    return [(name, i, c) for name, cases in KERAS_CASES.items() for i, c in enumerate(cases)]


def keras_case_id(name, i, c):
    return f"{name}-{i}" + (f"-{c.note}".replace(" ", "_") if c.note else "")
