"""Adadelta, as Keras 3 (keras/src/optimizers/adadelta.py): per-weight step sizes from
running averages of squared gradients and squared updates, scaled by learning_rate."""
from __future__ import annotations

from kcompile.ir import builder as F

from .base import Optimizer


class Adadelta(Optimizer):
    slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = float(rho)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)

    def update_step(self, g, p, lr, it, slots):
        rho, eps = self.rho, self.epsilon
        acc_grad = rho * slots["accumulated_grad"] + (1.0 - rho) * F.square(g)
        delta = -(F.sqrt(slots["accumulated_delta_var"] + eps) * g) / F.sqrt(acc_grad + eps)
        acc_delta = rho * slots["accumulated_delta_var"] + (1.0 - rho) * F.square(delta)
        return p + lr * delta, {"accumulated_grad": acc_grad, "accumulated_delta_var": acc_delta}

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}
