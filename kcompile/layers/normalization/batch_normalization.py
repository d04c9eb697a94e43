"""BatchNormalization with Keras' weights, defaults and moving-statistics update."""
from __future__ import annotations

from kcompile.ir import builder as F
from ... import initializers
from ...tracing import current
from ..layer import Layer
from .affine import add_beta, add_gamma, affine_config, set_affine_options


class BatchNormalization(Layer):
    supports_masking = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = center, scale
        set_affine_options(self, beta_initializer, gamma_initializer, beta_regularizer,
                           gamma_regularizer, beta_constraint, gamma_constraint)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        axis = self.axis % len(input_shape)
        if input_shape[axis] is None:
            raise ValueError(f"BatchNormalization {self.name!r}: axis {self.axis} of the input "
                             f"must be known, received input_shape={input_shape}")
        n = (input_shape[axis],)
        # Keras' weight order: gamma, beta, moving_mean, moving_variance.
        self.gamma = add_gamma(self, n) if self.scale else None
        self.beta = add_beta(self, n) if self.center else None
        self.moving_mean = self.add_weight(n, self.moving_mean_initializer, name="moving_mean",
                                           trainable=False)
        self.moving_variance = self.add_weight(n, self.moving_variance_initializer,
                                               name="moving_variance", trainable=False)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        axis = self.axis % x.ndim
        reduce_axes = tuple(a for a in range(x.ndim) if a != axis)
        bshape = tuple(d if a == axis else 1 for a, d in enumerate(x.shape))
        if training:
            # Moments over the real samples only: padding rows of a short batch weigh 0.
            mask = current().sample_mask
            if mask is not None and 0 in reduce_axes:
                w = F.reshape(mask, (x.shape[0],) + (1,) * (x.ndim - 1))
                per_sample = 1
                for a in reduce_axes:
                    per_sample *= x.shape[a] if a != 0 else 1
                n = F.sum(mask) * float(per_sample)
                mean = F.sum(x * w, axis=reduce_axes, keepdims=True) / n
                var = F.sum(F.square(x - mean) * w, axis=reduce_axes, keepdims=True) / n
            else:
                mean = F.mean(x, axis=reduce_axes, keepdims=True)
                var = F.mean(F.square(x - mean), axis=reduce_axes, keepdims=True)
            m = 1.0 - self.momentum
            self.add_update(self.moving_mean,
                            self.moving_mean * self.momentum + F.reshape(mean, self.moving_mean.shape) * m)
            self.add_update(self.moving_variance,
                            self.moving_variance * self.momentum
                            + F.reshape(var, self.moving_variance.shape) * m)
        else:
            mean = F.reshape(self.moving_mean, bshape)
            var = F.reshape(self.moving_variance, bshape)
        inv = 1.0 / F.sqrt(var + self.epsilon)
        if self.scale:
            inv = inv * F.reshape(self.gamma, bshape)
        y = (x - mean) * inv
        if self.center:
            y = y + F.reshape(self.beta, bshape)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **affine_config(self),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer)}
