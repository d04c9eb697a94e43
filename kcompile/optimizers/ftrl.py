"""FTRL-Proximal, as Keras 3 (keras/src/optimizers/ftrl.py), with L1, L2 and L2-shrinkage
regularization and the `beta` term."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F

from .base import Optimizer


class Ftrl(Optimizer):
    slot_names = ("accumulator", "linear")

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5,
                 initial_accumulator_value=0.1, l1_regularization_strength=0.0,
                 l2_regularization_strength=0.0, l2_shrinkage_regularization_strength=0.0,
                 beta=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        for arg, value, sign in (
                ("initial_accumulator_value", initial_accumulator_value, "positive or zero"),
                ("learning_rate_power", -learning_rate_power, "negative or zero"),
                ("l1_regularization_strength", l1_regularization_strength, "positive or zero"),
                ("l2_regularization_strength", l2_regularization_strength, "positive or zero"),
                ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength,
                 "positive or zero")):
            if value < 0.0:
                shown = -value if arg == "learning_rate_power" else value
                raise ValueError(f"`{arg}` needs to be {sign}. Received: {arg}={shown}.")
        self.learning_rate_power = float(learning_rate_power)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.l1_regularization_strength = float(l1_regularization_strength)
        self.l2_regularization_strength = float(l2_regularization_strength)
        self.l2_shrinkage_regularization_strength = float(l2_shrinkage_regularization_strength)
        self.beta = float(beta)

    def _slot_init(self, slot, var):
        if slot == "accumulator":
            return np.full(var.shape, self.initial_accumulator_value, np.float32)
        return super()._slot_init(slot, var)

    def update_step(self, g, p, lr, it, slots):
        power = -self.learning_rate_power
        accum, linear = slots["accumulator"], slots["linear"]
        l2 = self.l2_regularization_strength + self.beta / (2.0 * lr)
        grad_to_use = g + (2.0 * self.l2_shrinkage_regularization_strength) * p
        new_accum = accum + F.square(g)
        new_accum_pow = F.pow(new_accum, power)
        linear = linear + grad_to_use - (new_accum_pow - F.pow(accum, power)) / lr * p
        quadratic = new_accum_pow / lr + 2.0 * l2
        l1 = self.l1_regularization_strength
        new_p = (F.clip(linear, -l1, l1) - linear) / quadratic
        return new_p, {"accumulator": new_accum, "linear": linear}

    def get_config(self):
        return {**super().get_config(), "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
                "beta": self.beta}
