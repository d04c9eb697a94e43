"""Test cases for every primitive of `ir.ops.REGISTRY`.

`OP_CASES[name]` lists `Case`s: operand types, attributes and an input
generator whose domain suits the op (positive inputs for log/sqrt, values kept
away from kinks and discontinuities such as `abs` at 0, ties of `maximum` or
argmax, comparisons boundaries for the differentiable ops). Shapes cover odd
sizes (1, 7, 33, 1000), scalars, broadcasting, every axis pattern of the
reductions and every transpose combination of matmul.

`build_case_graph(name, case)` turns a case into a one-op `Graph` whose output
'out' is the op applied to one leaf per operand: float operands are 'param'
leaves (so autodiff differentiates them) unless the case marks them as not
differentiable, int32 operands are 'input' leaves.

This module is plain Python (no pytest import, no fixtures) so that other
test files, e.g. a compiled-vs-reference comparison, can reuse it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence
import zlib

import numpy as np

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.ir.ops import get_op

F32, I32 = "float32", "int32"

Gen = Callable[[np.random.Generator], list]   # rng -> one array per operand


@dataclass(eq=False)
class Case:
    """One application of a primitive.

    in_types: operand types, in order.
    attrs:    keyword attributes passed to `ir.builder.op`.
    gen:      rng -> list of arrays (one per operand, already of the operand dtype).
    nodiff:   indices of float operands bound as 'input' leaves instead of
              'param' leaves (e.g. the 0/1 condition of select, whose finite
              differences are meaningless).
    note:     short human description, used in test ids.
    seed:     seed of the default generator (filled in from the op name and index).
    """
    in_types: tuple[TensorType, ...]
    attrs: dict = field(default_factory=dict)
    gen: Gen | None = None
    nodiff: tuple[int, ...] = ()
    note: str = ""
    seed: int = 0

    def make_inputs(self, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed) if rng is None else rng
        arrays = self.gen(rng)
        out = []
        for t, a in zip(self.in_types, arrays, strict=True):
            a = np.asarray(a, dtype=t.dtype)
            assert a.shape == t.shape, (a.shape, t)
            out.append(a)
        return out

    def leaf_names(self) -> list[str]:
        return [f"x{i}" for i in range(len(self.in_types))]

    def leaf_roles(self) -> list[str]:
        return ["param" if t.dtype == F32 and i not in self.nodiff else "input"
                for i, t in enumerate(self.in_types)]

    @property
    def has_float_param(self) -> bool:
        return "param" in self.leaf_roles()

    def label(self) -> str:
        types = ",".join(str(t) for t in self.in_types)
        parts = [types]
        for k, v in sorted(self.attrs.items()):
            if isinstance(v, bool):         # flags: named when set
                if v:
                    parts.append(k)
                continue
            if isinstance(v, tuple):
                v = "(" + ",".join(map(str, v)) + ")"
            parts.append(f"{k}={v}")
        if self.note:
            parts.append(self.note)
        return " ".join(parts).replace(" ", "_")


# ------------------------------------------------------------------ generators
# Each per-operand generator is (rng, shape) -> array.

def normal(scale=1.0):
    return lambda rng, shape: rng.standard_normal(shape) * scale


def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def away_from_zero(lo=0.25, hi=2.0):
    """|x| in [lo, hi], random sign: no kink of abs/sign, no pole of 1/x."""
    return lambda rng, shape: rng.choice([-1.0, 1.0], shape) * rng.uniform(lo, hi, shape)


def lattice(offset=0.0, lo=-16, hi=16, step=0.125):
    """Values (k + offset) * step: with offsets 0 and 0.5 two operands never tie
    (|a - b| >= step / 2 under any broadcast), all exact in float32."""
    return lambda rng, shape: (rng.integers(lo, hi, shape) + offset) * step


def small_ints(lo=-2, hi=3):
    """Few distinct integer values (as float or int): many exact ties."""
    return lambda rng, shape: rng.integers(lo, hi, shape)


def distinct(scale=2.0):
    """Pairwise distinct values in [-scale, scale), exactly representable in float32."""
    def g(rng, shape):
        n = int(np.prod(shape, dtype=np.int64))
        step = 2.0 ** np.floor(np.log2(2 * scale / max(n, 1)))
        return ((rng.permutation(n) - n // 2) * step).reshape(shape)
    return g


def away_from_integers():
    """k + f with f in [0.15, 0.85]: trunc (cast to int) is locally constant."""
    return lambda rng, shape: rng.integers(-20, 20, shape) + rng.uniform(0.15, 0.85, shape)


def away_from_halves():
    """k + f with f in [-0.35, 0.35]: round is locally constant."""
    return lambda rng, shape: rng.integers(-20, 20, shape) + rng.uniform(-0.35, 0.35, shape)


def mask01():
    return lambda rng, shape: rng.integers(0, 2, shape)


def per_operand(*gens) -> Callable[[tuple[TensorType, ...]], Gen]:
    def bind(in_types):
        return lambda rng: [g(rng, t.shape) for g, t in zip(gens, in_types, strict=True)]
    return bind


def case(shapes: Sequence[tuple], gens: Sequence, dtypes: Sequence[str] | None = None,
         attrs: dict | None = None, nodiff=(), note="") -> Case:
    dtypes = dtypes or [F32] * len(shapes)
    in_types = tuple(TensorType(tuple(s), d) for s, d in zip(shapes, dtypes, strict=True))
    return Case(in_types, dict(attrs or {}), per_operand(*gens)(in_types), tuple(nodiff), note)


# --------------------------------------------------------------------- tables
UNARY_SHAPES = [(1000,), (7, 33), (33, 7), (1, 7), (), (7, 1, 33)]

BINARY_SHAPES = [
    ((1000,), (1000,)),
    ((7, 33), (33,)),          # row broadcast
    ((7, 1), (1, 33)),         # outer broadcast
    ((33, 7), (33, 1)),        # column broadcast
    ((), (7, 33)),             # scalar and matrix
    ((1, 7), (1, 7)),
    ((), ()),
    ((7, 1, 33), (5, 1)),      # rank 3 with rank 2
]

UNARY_DOMAINS = {
    "neg": normal(2.0),
    "exp": uniform(-4.0, 4.0),
    "log": uniform(0.1, 4.0),
    "sqrt": uniform(0.1, 4.0),
    "abs": away_from_zero(),
    "sign": away_from_zero(),
    "sigmoid": normal(3.0),
    "tanh": normal(2.0),
    "stop_gradient": normal(2.0),
    "sin": uniform(-10.0, 10.0),
    "cos": uniform(-10.0, 10.0),
    "erf": normal(1.5),
    "floor": away_from_integers(),
    "round": away_from_halves(),
}

BINARY_DOMAINS = {
    "add": (normal(), normal()),
    "sub": (normal(), normal()),
    "mul": (normal(), normal()),
    "div": (normal(), away_from_zero(0.5, 2.0)),
    "pow": (uniform(0.5, 2.0), uniform(-2.0, 2.5)),
    "maximum": (lattice(0.5), lattice(0.0)),
    "minimum": (lattice(0.0), lattice(0.5)),
}
COMPARISONS = ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"]
INT_BINARY = ["add", "sub", "mul", "maximum", "minimum", *COMPARISONS]

REDUCTION_CASES = [        # (shape, axes, keepdims)
    ((1000,), (0,), False),
    ((1000,), (0,), True),
    ((7, 33), (0,), False),
    ((7, 33), (1,), True),
    ((7, 33), (-1,), False),
    ((7, 33), (0, 1), False),
    ((7, 33), (0, 1), True),
    ((33, 7), (0,), True),
    ((1, 7), (0,), False),
    ((7, 1), (1,), False),
    ((), (), False),
    ((7, 1, 33), (0, 2), False),
    ((7, 5, 33), (1,), True),
    ((7, 33), (), False),      # no axis: the identity
]

MATMUL_MKN = [(7, 33, 1), (1, 7, 33), (33, 1000, 7)]


def _matmul_case(m, k, n, ta, tb):
    a = (k, m) if ta else (m, k)
    b = (n, k) if tb else (k, n)
    return case([a, b], [normal(), normal()],
                attrs=dict(transpose_a=ta, transpose_b=tb),
                note=f"{m}x{k}x{n}_{'T' if ta else 'N'}{'T' if tb else 'N'}")


# (x shape, kernel shape, attrs): 1-D and 2-D, odd sizes, strides, both dilations,
# asymmetric and negative (cropping) padding, groups and depthwise.
CONV_CASES = [
    ((2, 7, 5, 3), (3, 2, 3, 4), dict(strides=(1, 2), padding=((1, 1), (0, 2)),
                                      rhs_dilation=(1, 2))),
    ((3, 33, 2), (3, 2, 5), dict(strides=(3,), padding=((2, 1),), lhs_dilation=(2,))),
    ((1, 6, 7, 4), (3, 3, 1, 8), dict(strides=(1, 1), padding=((1, 1), (1, 1)), groups=4)),
    ((2, 5, 5, 6), (1, 1, 3, 4), dict(strides=(2, 1), padding=((0, 0), (0, 0)), groups=2)),
    ((2, 4, 3), (1, 3, 2), dict(strides=(2,), padding=((0, 3),))),
    ((1, 9, 3), (2, 3, 1), dict(strides=(1,), padding=((-1, 2),), rhs_dilation=(3,))),
]


def _conv_out_shape(xs, ks, a):
    from kcompile.ir.conv import normalize, out_spatial
    attrs = normalize((TensorType(xs),), a)
    return (xs[0], *out_spatial(xs[1:-1], ks[:-2], attrs), ks[-1])


def _build_table() -> dict[str, list[Case]]:
    t: dict[str, list[Case]] = {}

    for name, dom in UNARY_DOMAINS.items():
        t[name] = [case([s], [dom]) for s in UNARY_SHAPES]
    # sigmoid far in both tails (stability of the reference)
    t["sigmoid"].append(case([(33,)], [uniform(-60.0, 60.0)], note="tails"))

    # exact halves round to even (no gradient case: round jumps there)
    t["round"].append(case([(33,)], [lambda rng, s: rng.integers(-20, 20, s) + 0.5],
                           nodiff=(0,), note="halves"))
    t["floor"].append(case([(33,)], [small_ints(-20, 20)], nodiff=(0,), note="integers"))
    t["erf"].append(case([(1000,)], [uniform(-6.0, 6.0)], note="tails"))

    for name, (da, db) in BINARY_DOMAINS.items():
        t[name] = [case(list(shapes), [da, db]) for shapes in BINARY_SHAPES]
    # pow with an integral exponent and a base close to 1
    t["pow"].append(case([(7, 33), ()], [uniform(0.9, 1.1), lambda rng, s: np.full(s, 3.0)],
                         note="cube"))

    for name in COMPARISONS:
        # many exact ties: they distinguish greater from greater_equal
        t[name] = [case(list(shapes), [small_ints(), small_ints()], note="ties")
                   for shapes in BINARY_SHAPES[:5]]
        t[name].append(case([(7, 33), (7, 33)], [lattice(0.5), lattice(0.0)], note="noties"))
    for name in ("neg", "abs"):
        t[name].append(case([(7, 33)], [small_ints(-9, 9)], dtypes=[I32], note="int"))
    for name in INT_BINARY:
        t[name].append(case([(7, 33), (33,)], [small_ints(-5, 6), small_ints(-5, 6)],
                            dtypes=[I32, I32], note="int"))
    # the one_hot pattern: int labels against an iota
    t["equal"].append(case([(7, 1), (33,)], [small_ints(0, 33), lambda rng, s: np.arange(33)],
                           dtypes=[I32, I32], note="one_hot"))

    t["select"] = [
        case([(7, 33)] * 3, [mask01(), normal(), normal()], dtypes=[I32, F32, F32], note="intmask"),
        case([(7, 1), (7, 33), (33,)], [mask01(), normal(), normal()], nodiff=(0,), note="floatmask"),
        case([(1000,), (1000,), ()], [normal(), normal(), normal()], nodiff=(0,),
             note="nonzero_is_true"),
        case([(), (1, 7), (1, 7)], [mask01(), normal(), normal()], dtypes=[I32, F32, F32]),
        case([(7, 33), (), ()], [mask01(), normal(), normal()], nodiff=(0,), note="scalar_branches"),
        case([(33, 7), (33, 7), (33, 1)], [mask01(), small_ints(-9, 9), small_ints(-9, 9)],
             dtypes=[I32, I32, I32], note="int"),
    ]

    t["cast"] = [
        case([(7, 33)], [away_from_integers()], attrs=dict(dtype=I32), note="trunc"),
        case([(1000,)], [away_from_integers()], attrs=dict(dtype=I32), note="trunc"),
        case([(33, 7)], [small_ints(-1000, 1000)], dtypes=[I32], attrs=dict(dtype=F32)),
        case([()], [small_ints(-1000, 1000)], dtypes=[I32], attrs=dict(dtype=F32)),
        case([(1, 7)], [normal()], attrs=dict(dtype=F32), note="identity"),
        case([(7, 1)], [small_ints()], dtypes=[I32], attrs=dict(dtype=I32), note="identity"),
    ]

    for name in ("reduce_sum", "reduce_mean", "reduce_max"):
        dom = distinct() if name == "reduce_max" else normal()
        t[name] = [case([s], [dom], attrs=dict(axes=axes, keepdims=kd))
                   for s, axes, kd in REDUCTION_CASES]

    t["argmax"] = [case([s], [distinct()], attrs=dict(axis=-1))
                   for s in [(1000,), (7, 33), (33, 7), (1, 7), (7, 1), (7, 1, 33)]]
    t["argmax"].append(case([(7, 33)], [distinct()], attrs=dict(axis=1), note="posaxis"))
    t["argmax"].append(case([(33, 7)], [lambda rng, s: rng.permutation(231).reshape(s)],
                            dtypes=[I32], attrs=dict(axis=-1), note="int"))

    t["matmul"] = [_matmul_case(m, k, n, ta, tb)
                   for m, k, n in MATMUL_MKN for ta in (False, True) for tb in (False, True)]
    t["matmul"].append(_matmul_case(1, 1, 1, False, False))

    t["conv"] = [case([xs, ks], [normal(), normal()], attrs=a) for xs, ks, a in CONV_CASES]
    t["conv_weight_grad"] = [
        case([xs, _conv_out_shape(xs, ks, a)], [normal(), normal()],
             attrs=dict(a, kernel_shape=ks[:-2])) for xs, ks, a in CONV_CASES]

    t["reshape"] = [
        case([(7, 33)], [normal()], attrs=dict(shape=(33, 7))),
        case([(7, 33)], [normal()], attrs=dict(shape=(231,))),
        case([(1000,)], [normal()], attrs=dict(shape=(8, 125))),
        case([(1, 7)], [normal()], attrs=dict(shape=(7,))),
        case([()], [normal()], attrs=dict(shape=(1, 1))),
        case([(1,)], [normal()], attrs=dict(shape=())),
        case([(7, 1, 33)], [normal()], attrs=dict(shape=(7, 33))),
        case([(7, 33)], [small_ints(-9, 9)], dtypes=[I32], attrs=dict(shape=(33, 7)), note="int"),
    ]

    t["transpose"] = [
        case([(7, 33)], [normal()], attrs=dict(perm=(1, 0))),
        case([(1, 7)], [normal()], attrs=dict(perm=(1, 0))),
        case([(7, 1, 33)], [normal()], attrs=dict(perm=(2, 0, 1))),
        case([(7, 5, 33)], [normal()], attrs=dict(perm=(1, 0, 2))),
        case([(7, 33)], [normal()], attrs=dict(perm=(0, 1)), note="identity"),
        case([(1000,)], [normal()], attrs=dict(perm=(0,))),
        case([()], [normal()], attrs=dict(perm=())),
        case([(33, 7)], [small_ints(-9, 9)], dtypes=[I32], attrs=dict(perm=(1, 0)), note="int"),
    ]

    t["broadcast_to"] = [
        case([(33,)], [normal()], attrs=dict(shape=(7, 33))),
        case([(7, 1)], [normal()], attrs=dict(shape=(7, 33))),
        case([()], [normal()], attrs=dict(shape=(1000,))),
        case([(1, 7)], [normal()], attrs=dict(shape=(33, 1, 7))),
        case([(1,)], [normal()], attrs=dict(shape=(7,))),
        case([(7, 33)], [normal()], attrs=dict(shape=(7, 33)), note="identity"),
        case([(7, 1)], [small_ints(-9, 9)], dtypes=[I32], attrs=dict(shape=(7, 33)), note="int"),
    ]

    t["slice"] = [
        case([(7, 33)], [normal()], attrs=dict(start=(2, 5), size=(3, 20))),
        case([(1000,)], [normal()], attrs=dict(start=(1,), size=(999,))),
        case([(7, 1, 33)], [normal()], attrs=dict(start=(0, 0, 32), size=(7, 1, 1))),
        case([(33, 7)], [small_ints(-9, 9)], dtypes=[I32], attrs=dict(start=(3, 0), size=(1, 7)),
             note="int"),
    ]

    t["pad"] = [
        case([(7, 33)], [normal()], attrs=dict(lo=(1, 0), hi=(2, 5))),
        case([(1000,)], [normal()], attrs=dict(lo=(0,), hi=(0,)), note="identity"),
        case([(1, 7)], [normal()], attrs=dict(lo=(3, 1), hi=(0, 1))),
        case([(7, 1, 33)], [normal()], attrs=dict(lo=(0, 2, 0), hi=(1, 0, 7))),
    ]

    def ids(hi):
        return lambda rng, shape: rng.integers(0, hi, shape)

    t["gather"] = [
        case([(50, 8), (4, 7)], [normal(), ids(50)], dtypes=[F32, I32]),
        case([(1000,), (33,)], [normal(), ids(1000)], dtypes=[F32, I32], note="vector table"),
        case([(7, 3, 5), (1,)], [normal(), ids(7)], dtypes=[F32, I32]),
        case([(33, 1), (7, 1)], [normal(), ids(33)], dtypes=[F32, I32]),
    ]

    t["scatter_add"] = [
        case([(4, 7), (4, 7, 8)], [ids(50), normal()], dtypes=[I32, F32], attrs=dict(num=50)),
        case([(33,), (33,)], [ids(7), normal()], dtypes=[I32, F32], attrs=dict(num=7),
             note="repeated ids"),
        case([(1,), (1, 3, 5)], [ids(7), normal()], dtypes=[I32, F32], attrs=dict(num=7)),
    ]

    t["random_uniform"] = [
        case([()], [lambda rng, shape: np.float32(rng.integers(0, 1000))], attrs=dict(shape=(33, 7), salt=1),
             nodiff=(0,)),
        case([()], [lambda rng, shape: np.float32(5)], attrs=dict(shape=(1000,), salt=123456),
             nodiff=(0,)),
        case([()], [lambda rng, shape: np.float32(0)], attrs=dict(shape=(), salt=0), nodiff=(0,)),
    ]

    for name, cases in t.items():
        for i, c in enumerate(cases):
            c.seed = zlib.crc32(f"{name}/{i}".encode())
    return t


OP_CASES: dict[str, list[Case]] = _build_table()

# Primitives whose operands are not plain arrays (a scan carries a body graph):
# their reference, compiled and finite-difference checks live in the named file.
TESTED_ELSEWHERE = {"scan": "tests/test_scan.py", "scan_result": "tests/test_scan.py"}


def all_cases():
    """[(op name, index, case)] over the whole table."""
    return [(name, i, c) for name, cases in OP_CASES.items() for i, c in enumerate(cases)]


def case_id(name: str, index: int, c: Case | None = None) -> str:
    return f"{name}-{index}" + (f"-{c.label()}" if c is not None else "")


# ------------------------------------------------------------------ graphs
def build_case_graph(opname: str, case: Case, rng: np.random.Generator | None = None,
                     prefix: str = "") -> tuple[Graph, dict[str, np.ndarray]]:
    """A graph computing 'out' = op(x0, x1, ...) and the leaf values for it.

    Float operands are 'param' leaves (or 'input' if listed in case.nodiff),
    int32 operands are 'input' leaves. Values come from `case.make_inputs`
    (seeded by case.seed unless `rng` is given). `prefix` is prepended to every
    leaf name (and so to the keys of the returned values), so that the graphs
    of many cases can share one `runtime.state.State`.
    """
    g = Graph()
    names = [prefix + n for n in case.leaf_names()]
    syms = [Sym(g, g.leaf(role, t, name))
            for t, name, role in zip(case.in_types, names, case.leaf_roles())]
    out = F.op(opname, *syms, **case.attrs)
    g.outputs["out"] = out.id
    values = dict(zip(names, case.make_inputs(rng)))
    return g, values


def differentiable_operands(opname: str, case: Case) -> tuple[bool, ...]:
    """Which operands the op's VJP rule returns a cotangent for, on this case.

    Int32 values never carry a cotangent (their consumers, cast/comparisons/
    argmax, return None), so an int32 output or operand counts as not
    differentiable without asking the rule.
    """
    g, _ = build_case_graph(opname, case)
    out_id = g.outputs["out"]
    node = g.nodes[out_id]
    if node.type.dtype != F32:
        return (False,) * len(node.inputs)
    ct = Sym(g, g.leaf("input", node.type, "__cotangent"))
    xs = [Sym(g, i) for i in node.inputs]
    cts = get_op(opname).vjp(F, xs, Sym(g, out_id), ct, node.params)
    return tuple(c is not None and t.dtype == F32 for c, t in zip(cts, case.in_types))
