"""Vector-friendly float32 math as LLVM IR: exp, log, tanh, sigmoid, sin, cos, erf.

libm's expf/logf are scalar calls the loop vectorizer cannot widen (about 10x
slower). These are branch-free Cephes-style polynomials marked alwaysinline:
once inlined into a kernel's loop they vectorize to ymm code like any fmul.
Errors against float64 are checked over the whole float range in the tests.
"""
from __future__ import annotations

import struct

NAMES = ("kc_exp", "kc_log", "kc_tanh", "kc_sigmoid", "kc_sin", "kc_cos", "kc_erf")


def _hex(x: float) -> str:
    # LLVM spells float constants as the hex of the equivalent double.
    f = struct.unpack("f", struct.pack("f", x))[0]
    return "0x%016X" % struct.unpack("Q", struct.pack("d", f))[0]


def _c(x):
    return _hex(float(x))


# The largest float32 whose exp is finite (the next one, 88.72283935..., exceeds
# ln(FLT_MAX)); below -103.972 exp rounds to zero even as a subnormal.
_EXP_MAX = 88.72283172607422


def _horner(name, var, coeffs):
    """LLVM lines computing %{name} = the polynomial coeffs (highest degree first) at %{var}."""
    lines = [f"  %{name}0 = fmul contract float %{var}, {_c(coeffs[0])}"]
    for i, c in enumerate(coeffs[1:-1], 1):
        lines.append(f"  %{name}a{i} = fadd contract float %{name}{i - 1}, {_c(c)}")
        lines.append(f"  %{name}{i} = fmul contract float %{name}a{i}, %{var}")
    lines.append(f"  %{name} = fadd contract float %{name}{len(coeffs) - 2}, {_c(coeffs[-1])}")
    return "\n".join(lines)


# sin/cos (Cephes sinf/cosf): x reduced by the even multiple j of pi/4 nearest below
# |x| 4/pi, in three parts of pi/4 (exact products for |x| <= 8192, the accurate
# range); the octant's low bits choose the polynomial and the sign.
_DP = (0.78515625, 2.4187564849853515625e-4, 3.77489497744594108e-8)
_SIN = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)

# erf: |x| < 1: x P(x^2); beyond: 1 - e^{-x^2} Q(1/|x|). P and Q are least-squares
# fits of the relative error (float64, Chebyshev nodes; float32 coefficients give
# <= 8e-8 relative), e^{-x^2} is e^{-hi} (1 - lo) with x^2 = hi + lo split by an fma.
_ERF_P = (-0.0005625399062409997, 0.004916026722639799, -0.02670995518565178,
          0.11280130594968796, -0.37612318992614746, 1.1283791065216064)
_ERF_Q = (-0.010076413862407207, 0.03165923431515694, 0.017203914001584053,
          -0.23425890505313873, 0.4915410876274109, -0.4692467749118805,
          0.041353754699230194, 0.559144139289856, 0.0002635122509673238)


def _reduce_octant():
    return f"""  %ax = call float @llvm.fabs.f32(float %x)
  %t = fmul float %ax, {_c(1.27323954473516)}
  %tc = call float @llvm.minnum.f32(float %t, float {_c(16777216.0)})
  %j0 = fptosi float %tc to i32
  %odd = and i32 %j0, 1
  %j = add i32 %j0, %odd
  %y = sitofp i32 %j to float
  %d1 = fmul float %y, {_c(_DP[0])}
  %r1 = fsub float %ax, %d1
  %d2 = fmul float %y, {_c(_DP[1])}
  %r2 = fsub float %r1, %d2
  %d3 = fmul float %y, {_c(_DP[2])}
  %r = fsub float %r2, %d3
  %z = fmul float %r, %r
{_horner("sp", "z", _SIN)}
  %sz = fmul float %sp, %z
  %sr = fmul contract float %sz, %r
  %ps = fadd contract float %sr, %r
{_horner("cp", "z", _COS)}
  %cz = fmul float %cp, %z
  %cz2 = fmul float %cz, %z
  %hz = fmul contract float %z, -0.5
  %c1 = fadd contract float %cz2, %hz
  %pc = fadd float %c1, 1.0
  %j2 = and i32 %j, 2
  %j4 = and i32 %j, 4
  %use_other = icmp ne i32 %j2, 0
  %flip4 = icmp ne i32 %j4, 0"""


def _finish_trig(value):
    # |result| <= 1 whatever the reduction did (|x| far beyond the accurate range);
    # sin/cos of +-inf is nan, as numpy's.
    return f"""  %lo = call float @llvm.maxnum.f32(float {value}, float -1.0)
  %cl = call float @llvm.minnum.f32(float %lo, float 1.0)
  %isinf = fcmp oeq float %ax, 0x7FF0000000000000
  %a = select i1 %isinf, float 0x7FF8000000000000, float %cl
  %isnan = fcmp uno float %x, %x
  %res = select i1 %isnan, float %x, float %a
  ret float %res"""

IR = f"""
declare float @llvm.rint.f32(float)
declare float @llvm.fabs.f32(float)
declare float @llvm.minnum.f32(float, float)
declare float @llvm.maxnum.f32(float, float)
declare float @llvm.fma.f32(float, float, float)
declare float @llvm.copysign.f32(float, float)

; exp(x) = 2^n * p(r), r = x - n ln2 (ln2 split in two for accuracy); 2^n is built
; from two exponent fields so results reach the subnormal range.
define linkonce_odr float @kc_exp(float %x) alwaysinline {{
  %lo = call float @llvm.maxnum.f32(float %x, float {_c(-103.972)})
  %c = call float @llvm.minnum.f32(float %lo, float {_c(_EXP_MAX)})
  %t = fmul float %c, {_c(1.44269504088896341)}
  %fn = call float @llvm.rint.f32(float %t)
  %a1 = fmul contract float %fn, {_c(0.693359375)}
  %r1 = fsub contract float %c, %a1
  %a2 = fmul contract float %fn, {_c(-2.12194440e-4)}
  %r = fsub contract float %r1, %a2
  %z = fmul float %r, %r
  %p0 = fmul contract float %r, {_c(1.9875691500e-4)}
  %p1 = fadd contract float %p0, {_c(1.3981999507e-3)}
  %p2 = fmul contract float %p1, %r
  %p3 = fadd contract float %p2, {_c(8.3334519073e-3)}
  %p4 = fmul contract float %p3, %r
  %p5 = fadd contract float %p4, {_c(4.1665795894e-2)}
  %p6 = fmul contract float %p5, %r
  %p7 = fadd contract float %p6, {_c(1.6666665459e-1)}
  %p8 = fmul contract float %p7, %r
  %p9 = fadd contract float %p8, {_c(5.0000001201e-1)}
  %pa = fmul contract float %p9, %z
  %pb = fadd contract float %pa, %r
  %p = fadd contract float %pb, 1.0
  %n = fptosi float %fn to i32
  %n1 = ashr i32 %n, 1
  %n2 = sub i32 %n, %n1
  %e1 = add i32 %n1, 127
  %e2 = add i32 %n2, 127
  %b1 = shl i32 %e1, 23
  %b2 = shl i32 %e2, 23
  %s1 = bitcast i32 %b1 to float
  %s2 = bitcast i32 %b2 to float
  %q = fmul float %p, %s1
  %y = fmul float %q, %s2
  %big = fcmp ogt float %x, {_c(_EXP_MAX)}
  %y1 = select i1 %big, float 0x7FF0000000000000, float %y
  %tiny = fcmp olt float %x, {_c(-103.972)}
  %y2 = select i1 %tiny, float 0.0, float %y1
  %nan = fcmp uno float %x, %x
  %res = select i1 %nan, float %x, float %y2
  ret float %res
}}

; log(x) = e ln2 + log(m), m in [sqrt(1/2), sqrt(2)); subnormals are scaled first.
define linkonce_odr float @kc_log(float %x) alwaysinline {{
  %sub = fcmp olt float %x, {_c(1.17549435e-38)}
  %xs = fmul float %x, {_c(8388608.0)}
  %x1 = select i1 %sub, float %xs, float %x
  %eadj = select i1 %sub, float -23.0, float 0.0
  %bits = bitcast float %x1 to i32
  %ebits = lshr i32 %bits, 23
  %eand = and i32 %ebits, 255
  %ei = sub i32 %eand, 126
  %mbits = and i32 %bits, 8388607
  %mb2 = or i32 %mbits, 1056964608
  %m = bitcast i32 %mb2 to float
  %ef0 = sitofp i32 %ei to float
  %ef1 = fadd float %ef0, %eadj
  %small = fcmp olt float %m, {_c(0.707106781186547524)}
  %em1 = fsub float %ef1, 1.0
  %e = select i1 %small, float %em1, float %ef1
  %m2 = fadd float %m, %m
  %xa = fsub float %m2, 1.0
  %xb = fsub float %m, 1.0
  %t = select i1 %small, float %xa, float %xb
  %z = fmul float %t, %t
  %q0 = fmul contract float %t, {_c(7.0376836292e-2)}
  %q1 = fadd contract float %q0, {_c(-1.1514610310e-1)}
  %q2 = fmul contract float %q1, %t
  %q3 = fadd contract float %q2, {_c(1.1676998740e-1)}
  %q4 = fmul contract float %q3, %t
  %q5 = fadd contract float %q4, {_c(-1.2420140846e-1)}
  %q6 = fmul contract float %q5, %t
  %q7 = fadd contract float %q6, {_c(1.4249322787e-1)}
  %q8 = fmul contract float %q7, %t
  %q9 = fadd contract float %q8, {_c(-1.6668057665e-1)}
  %qa = fmul contract float %q9, %t
  %qb = fadd contract float %qa, {_c(2.0000714765e-1)}
  %qc = fmul contract float %qb, %t
  %qd = fadd contract float %qc, {_c(-2.4999993993e-1)}
  %qe = fmul contract float %qd, %t
  %qf = fadd contract float %qe, {_c(3.3333331174e-1)}
  %qg = fmul float %qf, %t
  %y0 = fmul float %qg, %z
  %y1 = fmul contract float %e, {_c(-2.12194440e-4)}
  %y2 = fadd contract float %y0, %y1
  %y3 = fmul contract float %z, -0.5
  %y4 = fadd contract float %y2, %y3
  %r0 = fadd float %t, %y4
  %r1 = fmul contract float %e, {_c(0.693359375)}
  %r = fadd contract float %r0, %r1
  %iszero = fcmp oeq float %x, 0.0
  %isneg = fcmp olt float %x, 0.0
  %isinf = fcmp oeq float %x, 0x7FF0000000000000
  %isnan = fcmp uno float %x, %x
  %a = select i1 %iszero, float 0xFFF0000000000000, float %r
  %b = select i1 %isneg, float 0x7FF8000000000000, float %a
  %c = select i1 %isinf, float %x, float %b
  %d = select i1 %isnan, float %x, float %c
  ret float %d
}}

; tanh: an odd polynomial near 0, 1 - 2/(e^{{2|x|}} + 1) elsewhere.
define linkonce_odr float @kc_tanh(float %x) alwaysinline {{
  %ax = call float @llvm.fabs.f32(float %x)
  %z = fmul float %x, %x
  %p0 = fmul contract float %z, {_c(-5.70498872745e-3)}
  %p1 = fadd contract float %p0, {_c(2.06390887954e-2)}
  %p2 = fmul contract float %p1, %z
  %p3 = fadd contract float %p2, {_c(-5.37397155531e-2)}
  %p4 = fmul contract float %p3, %z
  %p5 = fadd contract float %p4, {_c(1.33314422036e-1)}
  %p6 = fmul contract float %p5, %z
  %p7 = fadd contract float %p6, {_c(-3.33332819422e-1)}
  %p8 = fmul float %p7, %z
  %p9 = fmul contract float %p8, %x
  %small = fadd contract float %p9, %x
  %ax2 = fadd float %ax, %ax
  %e = call float @kc_exp(float %ax2)
  %e1 = fadd float %e, 1.0
  %q = fdiv float 2.0, %e1
  %big = fsub float 1.0, %q
  %neg = fcmp olt float %x, 0.0
  %nbig = fneg float %big
  %sbig = select i1 %neg, float %nbig, float %big
  %issmall = fcmp olt float %ax, 0.625
  %r = select i1 %issmall, float %small, float %sbig
  %isnan = fcmp uno float %x, %x
  %res = select i1 %isnan, float %x, float %r
  ret float %res
}}

; sigmoid without cancellation: e = exp(-|x|), 1/(1+e) for x >= 0, e/(1+e) below.
define linkonce_odr float @kc_sigmoid(float %x) alwaysinline {{
  %ax = call float @llvm.fabs.f32(float %x)
  %nax = fneg float %ax
  %e = call float @kc_exp(float %nax)
  %d = fadd float %e, 1.0
  %r = fdiv float 1.0, %d
  %er = fmul float %e, %r
  %pos = fcmp oge float %x, 0.0
  %s = select i1 %pos, float %r, float %er
  %isnan = fcmp uno float %x, %x
  %res = select i1 %isnan, float %x, float %s
  ret float %res
}}

define linkonce_odr float @kc_sin(float %x) alwaysinline {{
{_reduce_octant()}
  %p = select i1 %use_other, float %pc, float %ps
  %xneg = fcmp olt float %x, 0.0
  %neg = xor i1 %xneg, %flip4
  %np = fneg float %p
  %s = select i1 %neg, float %np, float %p
{_finish_trig("%s")}
}}

define linkonce_odr float @kc_cos(float %x) alwaysinline {{
{_reduce_octant()}
  %p = select i1 %use_other, float %ps, float %pc
  %neg = xor i1 %use_other, %flip4
  %np = fneg float %p
  %s = select i1 %neg, float %np, float %p
{_finish_trig("%s")}
}}

define linkonce_odr float @kc_erf(float %x) alwaysinline {{
  %ax = call float @llvm.fabs.f32(float %x)
  %z = fmul float %x, %x
{_horner("p", "z", _ERF_P)}
  %small = fmul float %p, %x
  %axc = call float @llvm.minnum.f32(float %ax, float 10.0)
  %t = fdiv float 1.0, %axc
{_horner("q", "t", _ERF_Q)}
  %hi = fmul float %axc, %axc
  %nhi = fneg float %hi
  %lo = call float @llvm.fma.f32(float %axc, float %axc, float %nhi)
  %e = call float @kc_exp(float %nhi)
  %elo = fmul float %e, %lo
  %e2 = fsub float %e, %elo
  %erfc = fmul float %e2, %q
  %big = fsub float 1.0, %erfc
  %sbig = call float @llvm.copysign.f32(float %big, float %x)
  %issmall = fcmp olt float %ax, 1.0
  %r = select i1 %issmall, float %small, float %sbig
  %isnan = fcmp uno float %x, %x
  %res = select i1 %isnan, float %x, float %r
  ret float %res
}}
"""
