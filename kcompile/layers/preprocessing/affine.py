"""Sampling images at affinely transformed positions, as Keras' `image.affine_transform`
on JAX (jax.scipy.ndimage.map_coordinates): output pixel (y, x) reads the input at
x' = a0 x + a1 y + a2, y' = b0 x + b1 y + b2, bilinearly (the four neighbours, each
weighted by its distance) or at the nearest pixel (rounded half away from zero).
Positions outside the image follow `fill_mode`: "constant" (each outside neighbour is
`fill_value`), "nearest" (clamped), "wrap", "mirror" (d c b | a b c d | c b a) or
"reflect" (d c b a | a b c d | d c b a)."""
from __future__ import annotations

from kcompile.ir import builder as F

FILL_MODES = ("constant", "nearest", "wrap", "mirror", "reflect")
INTERPOLATIONS = ("nearest", "bilinear")


def _mod(a, n):
    return a - F.floor(a / float(n)) * float(n)


def _mirror(i, size):
    s = size - 1
    if s == 0:
        return i * 0.0
    return F.abs(_mod(i + float(s), 2 * s) - float(s))


def _fix(i, size, mode):
    """Index fixers on float-valued integer indices (exact in float32 at image sizes)."""
    if mode == "nearest":
        return F.clip(i, 0.0, float(size - 1))
    if mode == "wrap":
        return _mod(i, size)
    if mode == "mirror":
        return _mirror(i, size)
    if mode == "reflect":
        return F.floor((_mirror(i * 2.0 + 1.0, 2 * size + 1) - 1.0) * 0.5)
    return i


def affine_sample(images, coeffs, interpolation, fill_mode, fill_value):
    """images (B, H, W, C); coeffs: the six (B,) tensors a0, a1, a2, b0, b1, b2."""
    import numpy as np
    B, H, W, C = images.shape
    a0, a1, a2, b0, b1, b2 = (F.reshape(c, (B, 1, 1)) for c in coeffs)
    ys = np.arange(H, dtype=np.float32).reshape(1, H, 1)
    xs = np.arange(W, dtype=np.float32).reshape(1, 1, W)
    xsrc = a0 * xs + a1 * ys + a2                       # (B, H, W)
    ysrc = b0 * xs + b1 * ys + b2
    table = F.reshape(images, (B * H * W, C))
    base = np.arange(B, dtype=np.float32).reshape(B, 1, 1) * float(H * W)

    def corner(yi, xi):
        """The pixels at float-valued integer positions (B, H, W), filled per fill_mode."""
        yf, xf = _fix(yi, H, fill_mode), _fix(xi, W, fill_mode)
        yc, xc = F.clip(yf, 0.0, float(H - 1)), F.clip(xf, 0.0, float(W - 1))
        idx = F.cast(base + yc * float(W) + xc, "int32")
        vals = F.gather(table, idx)                      # (B, H, W, C)
        if fill_mode != "constant":
            return vals
        inside = F.cast((yf >= 0.0) * (yf <= float(H - 1)) * (xf >= 0.0)
                        * (xf <= float(W - 1)), "float32")
        inside = F.expand_dims(inside, -1)
        return vals * inside + (1.0 - inside) * float(fill_value)

    if interpolation == "nearest":
        def rounded(c):
            return F.select(F.less(c, 0.0), -F.floor(0.5 - c), F.floor(c + 0.5))
        return corner(rounded(ysrc), rounded(xsrc))
    y0, x0 = F.floor(ysrc), F.floor(xsrc)
    wy, wx = F.expand_dims(ysrc - y0, -1), F.expand_dims(xsrc - x0, -1)
    return (corner(y0, x0) * ((1.0 - wy) * (1.0 - wx)) + corner(y0, x0 + 1.0) * ((1.0 - wy) * wx)
            + corner(y0 + 1.0, x0) * (wy * (1.0 - wx)) + corner(y0 + 1.0, x0 + 1.0) * (wy * wx))
