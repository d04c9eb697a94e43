"""SGD, with momentum and Nesterov momentum, as Keras 3 (keras/src/optimizers/sgd.py)."""
from __future__ import annotations

from .base import Optimizer


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be in the range [0, 1]. Received: momentum={momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def slot_names_for(self, var):
        return ("momentum",) if self.momentum else ()

    def update_step(self, g, p, lr, it, slots):
        if not self.momentum:
            return p - g * lr, {}
        m = slots["momentum"] * self.momentum - g * lr
        if self.nesterov:
            return p + (m * self.momentum - g * lr), {"momentum": m}
        return p + m, {"momentum": m}

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
