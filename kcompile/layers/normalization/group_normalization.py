"""GroupNormalization: the channels split into `groups`, each normalized per sample over
its channels and the other non-batch axes (Keras 3's arguments, weights and formula)."""
from __future__ import annotations

from kcompile.ir import builder as F
from ..layer import Layer
from .affine import add_beta, add_gamma, affine_config, check_axes, set_affine_options


class GroupNormalization(Layer):
    """groups=-1 makes one group per channel (instance normalization); groups=1 one
    group of all channels."""
    supports_masking = True

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        if not isinstance(groups, int) or isinstance(groups, bool) or \
                (groups <= 0 and groups != -1):
            raise ValueError(f"Received an invalid value for argument `groups`, expected a "
                             f"positive integer (or `-1` for instance normalization). "
                             f"Received: groups={groups}")
        super().__init__(**kwargs)
        self.groups = groups
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        set_affine_options(self, beta_initializer, gamma_initializer, beta_regularizer,
                           gamma_regularizer, beta_constraint, gamma_constraint)

    def build(self, input_shape):
        check_axes(self, [self.axis], len(input_shape), input_shape)
        dim = input_shape[self.axis]
        if dim is None:
            raise ValueError(f"Axis {self.axis} of input tensor should have a defined dimension "
                             f"but the layer received an input with shape {tuple(input_shape)}.")
        if self.groups == -1:
            self.groups = dim
        if dim < self.groups:
            raise ValueError(f"Number of groups ({self.groups}) cannot be more than the number "
                             f"of channels ({dim}).")
        if dim % self.groups != 0:
            raise ValueError(f"Number of groups ({self.groups}) must be a multiple of the "
                             f"number of channels ({dim}).")
        self.gamma = add_gamma(self, (dim,)) if self.scale else None
        self.beta = add_beta(self, (dim,)) if self.center else None
        self.built = True

    def call(self, inputs):
        x = F.cast(inputs, "float32")
        axis = self.axis % x.ndim
        if axis == 0:
            raise ValueError(f"GroupNormalization {self.name!r}: axis {self.axis} is the batch "
                             f"axis; the channels axis must be another one")
        dim = x.shape[axis]
        # (..., C, ...) -> (..., groups, C // groups, ...): moments over every non-batch
        # axis but the groups axis.
        grouped_shape = x.shape[:axis] + (self.groups, dim // self.groups) + x.shape[axis + 1:]
        g = F.reshape(x, grouped_shape)
        axes = tuple(a for a in range(1, g.ndim) if a != axis)
        mean = F.mean(g, axis=axes, keepdims=True)
        var = F.mean(F.square(g - mean), axis=axes, keepdims=True)
        inv = 1.0 / F.sqrt(var + self.epsilon)
        bshape = tuple(d if a in (axis, axis + 1) else 1 for a, d in enumerate(grouped_shape))
        if self.gamma is not None:
            inv = inv * F.reshape(self.gamma, bshape)
        res = -mean * inv
        if self.beta is not None:
            res = res + F.reshape(self.beta, bshape)
        return F.reshape(g * inv + res, x.shape)

    def compute_output_shape(self, input_shape):
        check_axes(self, [self.axis], len(input_shape), input_shape)
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **affine_config(self)}
