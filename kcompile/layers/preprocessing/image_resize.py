"""Resizing images along their height and width axes, as Keras' `image.resize` on JAX
without antialiasing: output pixel i samples input position (i + 0.5) * in / out - 0.5
("bilinear": the two nearest pixels, clamped at the borders) or the pixel
floor((i + 0.5) * in / out) ("nearest"); and Keras' crop to the target aspect ratio."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F

INTERPOLATIONS = ("bilinear", "nearest")


def resize_axis(x, axis, out, interpolation):
    n = x.shape[axis]
    if n == out:
        return x
    if interpolation == "nearest":
        idx = np.minimum(np.floor((np.arange(out) + 0.5) * n / out), n - 1).astype(np.int32)
        return F.take(x, idx, axis)
    pos = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.int32)
    hi = np.minimum(lo + 1, n - 1).astype(np.int32)
    w_hi = (pos - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = out
    return (F.take(x, lo, axis) * (1.0 - w_hi).reshape(shape)
            + F.take(x, hi, axis) * w_hi.reshape(shape))


def aspect_crop_box(height, width, target_h, target_w):
    """(top, left, crop height, crop width): the centered crop with the target's aspect
    ratio (Keras' integer arithmetic)."""
    crop_h = max(min(height, int(float(width * target_h) / target_w)), 1)
    crop_w = max(min(width, int(float(height * target_w) / target_h)), 1)
    return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w


def image_axes(x, data_format):
    """The (height, width) axes of a batch of images or of one image."""
    if x.ndim not in (3, 4):
        raise ValueError(f"Expected an image array with shape `(height, width, channels)`, "
                         f"or `(batch_size, height, width, channels)`, but got input with "
                         f"incorrect rank, of shape {tuple(x.shape)}.")
    return (x.ndim - 3, x.ndim - 2) if data_format == "channels_last" else (x.ndim - 2,
                                                                             x.ndim - 1)


def crop(x, axes, top, left, h, w):
    start, size = [0] * x.ndim, list(x.shape)
    start[axes[0]], size[axes[0]] = top, h
    start[axes[1]], size[axes[1]] = left, w
    return F.slice(x, start, size)


def resize(x, axes, height, width, interpolation="bilinear", crop_to_aspect_ratio=False):
    if crop_to_aspect_ratio:
        x = crop(x, axes, *aspect_crop_box(x.shape[axes[0]], x.shape[axes[1]], height, width))
    return resize_axis(resize_axis(x, axes[0], height, interpolation), axes[1], width,
                       interpolation)
