"""RMSprop, plain, with momentum or centered, as Keras 3."""
from __future__ import annotations

from kcompile.ir import builder as F

from .base import Optimizer


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho, self.momentum = float(rho), float(momentum)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)
        self.centered = bool(centered)

    def slot_names_for(self, var):
        return ("velocity",) + (("momentum",) if self.momentum else ()) + \
            (("average_gradient",) if self.centered else ())

    def update_step(self, g, p, lr, it, slots):
        new = {}
        v = self.rho * slots["velocity"] + (1.0 - self.rho) * F.square(g)
        new["velocity"] = v
        if self.centered:
            avg = self.rho * slots["average_gradient"] + (1.0 - self.rho) * g
            new["average_gradient"] = avg
            denom = v - F.square(avg) + self.epsilon
        else:
            denom = v + self.epsilon
        increment = lr * g / F.sqrt(denom)
        if self.momentum:
            m = self.momentum * slots["momentum"] + increment
            new["momentum"] = m
            return p - m, new
        return p - increment, new

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}
