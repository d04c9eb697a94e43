"""Adafactor, as Keras 3 (keras/src/optimizers/adafactor.py): the second moments of a
weight of rank >= 2 are kept factored, as row means `r` (shape[:-1]) and column means
`c` (shape[:-2] + shape[-1:]), and rebuilt as their outer product over the mean of r;
vectors and scalars keep a full second moment (their r and c are unused scalars, as in
Keras). The step is relative: at most 1/sqrt(t), scaled by the weight's RMS, and the
update is clipped to an RMS of clip_threshold.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F

from .base import Optimizer


def _rms(x):
    return F.sqrt(F.mean(F.square(x)))


class Adafactor(Optimizer):
    slot_names = ("r", "c", "velocity")

    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3,
                 clip_threshold=1.0, relative_step=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_2_decay = float(beta_2_decay)
        self.epsilon_1, self.epsilon_2 = float(epsilon_1), float(epsilon_2)
        self.clip_threshold = float(clip_threshold)
        self.relative_step = bool(relative_step)

    def _slot_init(self, slot, var):
        shape = tuple(var.shape)
        if slot == "velocity":
            return np.zeros(shape, np.float32)
        if len(shape) < 2:
            return np.zeros((), np.float32)
        return np.zeros(shape[:-1] if slot == "r" else shape[:-2] + shape[-1:], np.float32)

    def update_step(self, g, p, lr, it, slots):
        step = it + 1.0
        inv_sqrt_step = 1.0 / F.sqrt(step)
        if self.relative_step and self._schedule is None:     # Keras skips it for schedules
            lr = F.minimum(lr, inv_sqrt_step)
        rho = F.minimum(lr, inv_sqrt_step)
        alpha = F.maximum(self.epsilon_2, _rms(p)) * rho
        grad_square = F.square(g) + self.epsilon_1
        beta_2 = 1.0 - F.pow(step, self.beta_2_decay)
        new = {}
        if len(p.shape) >= 2:
            r = beta_2 * slots["r"] + (1.0 - beta_2) * F.mean(grad_square, axis=-1)
            c = beta_2 * slots["c"] + (1.0 - beta_2) * F.mean(grad_square, axis=-2)
            v = F.expand_dims(r / F.mean(r, axis=-1, keepdims=True), -1) * F.expand_dims(c, -2)
            new.update(r=r, c=c)
        else:
            v = beta_2 * slots["velocity"] + (1.0 - beta_2) * grad_square
        new["velocity"] = v
        u = g / F.sqrt(v)
        u_hat = u / F.maximum(1.0, _rms(u) / self.clip_threshold)
        return p - alpha * u_hat, new

    def get_config(self):
        return {**super().get_config(), "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1, "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold, "relative_step": self.relative_step}
