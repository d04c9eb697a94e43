"""Scalar lowering of each elementwise primitive, in float32 lanes.

Every fused value is computed as a float inside a kernel: int32 buffers are
converted on load and store (exact below 2**24), comparisons give 1.0/0.0.
The loop vectorizer widens these scalar rules to ymm code.
"""
from __future__ import annotations

from llvmlite import ir

from ..irutil import F32, FLAGS, f32


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


def _cmp(pred):
    return lambda b, fn, xs, a: b.uitofp(b.fcmp_ordered(pred, xs[0], xs[1]), F32)


def _sign(b, fn, xs, a):
    x = xs[0]
    neg = b.select(b.fcmp_ordered("<", x, f32(0)), f32(-1), x)
    return b.select(b.fcmp_ordered(">", x, f32(0)), f32(1), neg)


def _cast(b, fn, xs, a):
    # Values are float lanes; a cast to int32 truncates toward zero like C.
    return fn.call(b, "llvm.trunc.f32", xs[0]) if a["dtype"] == "int32" else xs[0]


SCALAR = {
    "neg": lambda b, fn, xs, a: b.fneg(xs[0]),
    "exp": lambda b, fn, xs, a: fn.call(b, "kc_exp", xs[0]),
    "log": lambda b, fn, xs, a: fn.call(b, "kc_log", xs[0]),
    "sqrt": lambda b, fn, xs, a: fn.call(b, "llvm.sqrt.f32", xs[0]),
    "abs": lambda b, fn, xs, a: fn.call(b, "llvm.fabs.f32", xs[0]),
    "sign": _sign,
    "sigmoid": lambda b, fn, xs, a: fn.call(b, "kc_sigmoid", xs[0]),
    "tanh": lambda b, fn, xs, a: fn.call(b, "kc_tanh", xs[0]),
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
    "not_equal": lambda b, fn, xs, a: b.uitofp(b.fcmp_unordered("!=", xs[0], xs[1]), F32),
    "select": lambda b, fn, xs, a: b.select(b.fcmp_unordered("!=", xs[0], f32(0)), xs[1], xs[2]),
    "cast": _cast,
}
