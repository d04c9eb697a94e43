"""Resizing: images to (height, width), bilinear or nearest, optionally cropped to the
target's aspect ratio first (Keras' `crop_to_aspect_ratio`)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..layer import Layer
from .image_resize import INTERPOLATIONS, image_axes, resize


class Resizing(Layer):
    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0,
                 antialias=False, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"Resizing: kcompile implements interpolation in "
                             f"{INTERPOLATIONS}. Received: interpolation={interpolation!r}")
        if pad_to_aspect_ratio or antialias:
            raise ValueError("Resizing: `pad_to_aspect_ratio=True` and `antialias=True` are "
                             "not supported by kcompile")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError("Only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` "
                             "can be set to True.")
        self.height, self.width = int(height), int(width)
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.antialias = bool(antialias)
        self.data_format = standardize_data_format(data_format)

    def call(self, inputs):
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        return resize(x, image_axes(x, self.data_format), self.height, self.width,
                      self.interpolation, self.crop_to_aspect_ratio)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        h, w = (-3, -2) if self.data_format == "channels_last" else (-2, -1)
        out[h], out[w] = self.height, self.width
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias,
                "data_format": self.data_format}
