"""Lion, as Keras 3 (keras/src/optimizers/lion.py): the update is the sign of an
interpolation of momentum and gradient, so every weight moves by exactly lr."""
from __future__ import annotations

from kcompile.ir import builder as F

from .base import Optimizer


class Lion(Optimizer):
    slot_names = ("momentum",)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(f"Argument `beta_1` must be in the [0, 1] range. Otherwise, the "
                             f"optimizer degenerates to SignSGD. Received: beta_1={beta_1}.")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)

    def update_step(self, g, p, lr, it, slots):
        m = slots["momentum"]
        step = F.sign(m * self.beta_1 + g * (1.0 - self.beta_1))
        return p - lr * step, {"momentum": m * self.beta_2 + g * (1.0 - self.beta_2)}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}
