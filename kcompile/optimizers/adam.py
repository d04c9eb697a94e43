"""Adam (with amsgrad) and AdamW, as Keras 3; AdamW is Adam with decoupled weight decay."""
from __future__ import annotations

from kcompile.ir import builder as F

from .base import Optimizer


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)
        self.amsgrad = bool(amsgrad)

    def slot_names_for(self, var):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def update_step(self, g, p, lr, it, slots):
        step = it + 1.0
        b1p = F.pow(F.lift(step.g, self.beta_1), step)
        b2p = F.pow(F.lift(step.g, self.beta_2), step)
        alpha = lr * F.sqrt(1.0 - b2p) / (1.0 - b1p)
        m = slots["momentum"] + (g - slots["momentum"]) * (1.0 - self.beta_1)
        v = slots["velocity"] + (F.square(g) - slots["velocity"]) * (1.0 - self.beta_2)
        new = {"momentum": m, "velocity": v}
        if self.amsgrad:
            v = F.maximum(slots["velocity_hat"], v)
            new["velocity_hat"] = v
        return p - (m * alpha) / (F.sqrt(v) + self.epsilon), new

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)
