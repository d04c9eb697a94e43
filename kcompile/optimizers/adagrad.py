"""Adagrad, as Keras 3."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .base import Optimizer


class Adagrad(Optimizer):
    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)

    slot_names = ("accumulator",)

    def _slot_init(self, slot, var):
        if slot != "accumulator":
            return super()._slot_init(slot, var)
        return np.full(var.shape, self.initial_accumulator_value, np.float32)

    def update_step(self, g, p, lr, it, slots):
        acc = slots["accumulator"] + F.square(g)
        return p - lr * g / F.sqrt(acc + self.epsilon), {"accumulator": acc}

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
