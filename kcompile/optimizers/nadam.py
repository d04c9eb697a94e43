"""Nadam: Adam with Nesterov momentum, as Keras 3 (keras/src/optimizers/nadam.py).

Keras keeps one optimizer-wide variable, the running product of the momentum
schedule `u_t = beta_1 (1 - 0.5 * 0.96^t)`; it is advanced once per step,
before the weights' updates read it.
"""
from __future__ import annotations

from kcompile.ir import builder as F

from .base import Optimizer


def _momentum_schedule(beta_1, step):
    return beta_1 * (1.0 - 0.5 * F.pow(F.lift(step.g, 0.96), step))


class Nadam(Optimizer):
    slot_names = ("momentum", "velocity")
    global_slots = (("u_product", 1.0),)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)

    def update_globals(self, it, values):
        return {"u_product": values["u_product"] * _momentum_schedule(self.beta_1, it + 1.0)}

    def update_step(self, g, p, lr, it, slots):
        local_step, next_step = it + 1.0, it + 2.0
        u_t = _momentum_schedule(self.beta_1, local_step)
        u_t_1 = _momentum_schedule(self.beta_1, next_step)
        u_product_t = slots["u_product"]
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = F.pow(F.lift(it.g, self.beta_2), local_step)
        m = slots["momentum"] + (g - slots["momentum"]) * (1.0 - self.beta_1)
        v = slots["velocity"] + (F.square(g) - slots["velocity"]) * (1.0 - self.beta_2)
        m_hat = u_t_1 * m / (1.0 - u_product_t_1) + (1.0 - u_t) * g / (1.0 - u_product_t)
        v_hat = v / (1.0 - beta_2_power)
        return p - m_hat * lr / (F.sqrt(v_hat) + self.epsilon), {"momentum": m, "velocity": v}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}
