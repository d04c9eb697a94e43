"""Lamb, as Keras 3 (keras/src/optimizers/lamb.py): Adam's bias-corrected step scaled per
weight by the trust ratio ||weight|| / ||step|| (1 when either norm is 0)."""
from __future__ import annotations

from kcompile.ir import builder as F

from .base import Optimizer


class Lamb(Optimizer):
    slot_names = ("momentum", "velocity")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)

    def update_step(self, g, p, lr, it, slots):
        step = it + 1.0
        b1p = F.pow(F.lift(step.g, self.beta_1), step)
        b2p = F.pow(F.lift(step.g, self.beta_2), step)
        m = slots["momentum"] + (g - slots["momentum"]) * (1.0 - self.beta_1)
        v = slots["velocity"] + (F.square(g) - slots["velocity"]) * (1.0 - self.beta_2)
        update = (m / (1.0 - b1p)) / (F.sqrt(v / (1.0 - b2p)) + self.epsilon)
        w_norm = F.sqrt(F.sum(F.square(p)))
        g_norm = F.sqrt(F.sum(F.square(update)))
        # Both norms positive: their ratio; otherwise 1 (the divisor kept nonzero either way).
        both = F.greater(w_norm, 0.0) * F.greater(g_norm, 0.0)
        ratio = F.select(both, w_norm / F.select(both, g_norm, 1.0), 1.0)
        return p - ratio * lr * update, {"momentum": m, "velocity": v}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}
