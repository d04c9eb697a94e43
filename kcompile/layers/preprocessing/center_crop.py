"""CenterCrop: the centered (height, width) window of each image; an image smaller
than the target is cropped to the target's aspect ratio and resized (bilinear), as
Keras' smart_resize."""
from __future__ import annotations

from kcompile.ir import builder as F
from ...utils.argument_validation import standardize_data_format
from ..layer import Layer
from .image_resize import crop, image_axes, resize


class CenterCrop(Layer):
    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        self.data_format = standardize_data_format(data_format)

    def call(self, inputs):
        x = F.cast(inputs, "float32") if inputs.dtype != "float32" else inputs
        axes = image_axes(x, self.data_format)
        h_diff = x.shape[axes[0]] - self.height
        w_diff = x.shape[axes[1]] - self.width
        if h_diff >= 0 and w_diff >= 0:
            return crop(x, axes, h_diff // 2, w_diff // 2, self.height, self.width)
        return resize(x, axes, self.height, self.width, "bilinear", crop_to_aspect_ratio=True)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        h, w = (-3, -2) if self.data_format == "channels_last" else (-2, -1)
        out[h], out[w] = self.height, self.width
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "data_format": self.data_format}
