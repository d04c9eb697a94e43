"""Scalar lowering of each elementwise primitive.

float32 values are computed in float lanes, int32 values (labels, ids, step
counters) in integer lanes, exactly; comparisons give 1.0/0.0 floats. The
loop vectorizer widens these scalar rules to vector code.
"""
from __future__ import annotations

from llvmlite import ir

from ..irutil import F32, FLAGS, I32, f32


class Intrinsics:
    """Declares intrinsics and the math functions of a module on first use."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.cache: dict[str, ir.Function] = {}

    def get(self, name: str, nargs: int = 1) -> ir.Function:
        if name not in self.cache:
            existing = self.module.globals.get(name)
            self.cache[name] = existing or ir.Function(
                self.module, ir.FunctionType(F32, [F32] * nargs), name=name)
        return self.cache[name]

    def call(self, b, name, *args):
        return b.call(self.get(name, len(args)), list(args))


def is_int(x) -> bool:
    return isinstance(x.type, ir.IntType)


def _cmp(pred):
    def lower(b, fn, xs, a):
        if is_int(xs[0]):
            return b.uitofp(b.icmp_signed(pred, xs[0], xs[1]), F32)
        return b.uitofp(b.fcmp_ordered(pred, xs[0], xs[1]), F32)
    return lower


def _not_equal(b, fn, xs, a):
    if is_int(xs[0]):
        return b.uitofp(b.icmp_signed("!=", xs[0], xs[1]), F32)
    return b.uitofp(b.fcmp_unordered("!=", xs[0], xs[1]), F32)


def _select(b, fn, xs, a):
    c = xs[0]
    cond = b.icmp_signed("!=", c, ir.Constant(c.type, 0)) if is_int(c) else \
        b.fcmp_unordered("!=", c, f32(0))
    return b.select(cond, xs[1], xs[2])


def _sign(b, fn, xs, a):
    x = xs[0]
    neg = b.select(b.fcmp_ordered("<", x, f32(0)), f32(-1), x)
    return b.select(b.fcmp_ordered(">", x, f32(0)), f32(1), neg)


def _cast(b, fn, xs, a):
    x = xs[0]
    if a["dtype"] == "int32":
        return x if is_int(x) else b.fptosi(x, I32)     # truncates toward zero, like C
    return b.sitofp(x, F32) if is_int(x) else x


def _int_max(b, fn, xs, a):
    return b.select(b.icmp_signed(">", xs[0], xs[1]), xs[0], xs[1])


def _int_min(b, fn, xs, a):
    return b.select(b.icmp_signed("<", xs[0], xs[1]), xs[0], xs[1])


# Integer lanes for the ops an int32 value may come from (type rules keep
# div, pow and the transcendental functions float-only).
INT_SCALAR = {
    "neg": lambda b, fn, xs, a: b.neg(xs[0]),
    "abs": lambda b, fn, xs, a: b.select(b.icmp_signed("<", xs[0], ir.Constant(I32, 0)),
                                         b.neg(xs[0]), xs[0]),
    "add": lambda b, fn, xs, a: b.add(xs[0], xs[1]),
    "sub": lambda b, fn, xs, a: b.sub(xs[0], xs[1]),
    "mul": lambda b, fn, xs, a: b.mul(xs[0], xs[1]),
    "stop_gradient": lambda b, fn, xs, a: xs[0],
    "maximum": _int_max,
    "minimum": _int_min,
}


SCALAR = {
    "neg": lambda b, fn, xs, a: b.fneg(xs[0]),
    "exp": lambda b, fn, xs, a: fn.call(b, "kc_exp", xs[0]),
    "log": lambda b, fn, xs, a: fn.call(b, "kc_log", xs[0]),
    "sqrt": lambda b, fn, xs, a: fn.call(b, "llvm.sqrt.f32", xs[0]),
    "abs": lambda b, fn, xs, a: fn.call(b, "llvm.fabs.f32", xs[0]),
    "sign": _sign,
    "sigmoid": lambda b, fn, xs, a: fn.call(b, "kc_sigmoid", xs[0]),
    "tanh": lambda b, fn, xs, a: fn.call(b, "kc_tanh", xs[0]),
    "sin": lambda b, fn, xs, a: fn.call(b, "kc_sin", xs[0]),
    "cos": lambda b, fn, xs, a: fn.call(b, "kc_cos", xs[0]),
    "erf": lambda b, fn, xs, a: fn.call(b, "kc_erf", xs[0]),
    # one vroundps each
    "floor": lambda b, fn, xs, a: fn.call(b, "llvm.floor.f32", xs[0]),
    "round": lambda b, fn, xs, a: fn.call(b, "llvm.roundeven.f32", xs[0]),
    "stop_gradient": lambda b, fn, xs, a: xs[0],
    "add": lambda b, fn, xs, a: b.fadd(xs[0], xs[1], flags=FLAGS),
    "sub": lambda b, fn, xs, a: b.fsub(xs[0], xs[1], flags=FLAGS),
    "mul": lambda b, fn, xs, a: b.fmul(xs[0], xs[1], flags=FLAGS),
    "div": lambda b, fn, xs, a: b.fdiv(xs[0], xs[1], flags=("nsz", "contract")),
    "pow": lambda b, fn, xs, a: fn.call(b, "llvm.pow.f32", xs[0], xs[1]),
    # llvm.maximum/minimum propagate NaN, as numpy's maximum/minimum do.
    "maximum": lambda b, fn, xs, a: fn.call(b, "llvm.maximum.f32", xs[0], xs[1]),
    "minimum": lambda b, fn, xs, a: fn.call(b, "llvm.minimum.f32", xs[0], xs[1]),
    "greater": _cmp(">"),
    "greater_equal": _cmp(">="),
    "less": _cmp("<"),
    "less_equal": _cmp("<="),
    "equal": _cmp("=="),
    "not_equal": _not_equal,
    "select": _select,
    "cast": _cast,
}
