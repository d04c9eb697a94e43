"""Adamax, Adam's infinity-norm variant, as Keras 3."""
from __future__ import annotations

from kcompile.ir import builder as F

from .base import Optimizer


class Adamax(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)

    slot_names = ("m", "u")

    def update_step(self, g, p, lr, it, slots):
        step = it + 1.0
        b1p = F.pow(F.lift(step.g, self.beta_1), step)
        m = slots["m"] + (g - slots["m"]) * (1.0 - self.beta_1)
        u = F.maximum(self.beta_2 * slots["u"], F.abs(g))
        return p - (lr * m) / ((1.0 - b1p) * (u + self.epsilon)), {"m": m, "u": u}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}
