"""Optimizers with Keras 3's names, defaults and update formulas, emitted as graph ops.

An optimizer owns its variables (iterations, learning_rate and per-weight
slots). When a model is compiled, `emit_updates` writes one training step's
update as ops on traced values, so the update fuses and compiles like the
rest of the step. The learning rate is a state value: changing it (callbacks,
`optimizer.learning_rate = x`) takes effect without recompiling.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .tracing import Trace
from .variables import Variable


class Optimizer:
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        # Keras 2 spellings found in older code: lr= and decay=.
        if "lr" in kwargs:
            learning_rate = kwargs.pop("lr")
        self.decay = float(kwargs.pop("decay", 0.0) or 0.0)
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)}")
        # Accepted by Keras but not done here: refuse rather than silently differ.
        if use_ema:
            raise NotImplementedError("use_ema=True is not supported by kcompile optimizers")
        if gradient_accumulation_steps is not None and (
                not isinstance(gradient_accumulation_steps, int) or gradient_accumulation_steps < 1):
            raise ValueError(f"`gradient_accumulation_steps` must be an integer >= 1. Received: "
                             f"gradient_accumulation_steps={gradient_accumulation_steps}")
        self.gradient_accumulation_steps = gradient_accumulation_steps
        if loss_scale_factor not in (None, 1, 1.0):
            raise NotImplementedError("loss_scale_factor is not supported by kcompile optimizers")
        if sum(x is not None for x in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set.")
        self.name = name or type(self).__name__.lower()
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self._iterations = Variable(np.zeros((), np.int32), "iterations", trainable=False,
                                    path=f"{self.name}/iterations")
        self._learning_rate = Variable(np.array(float(learning_rate), np.float32), "learning_rate",
                                       trainable=False, path=f"{self.name}/learning_rate")
        self._slots: dict[str, dict[str, Variable]] = {}   # variable path -> slot name -> Variable

    # -- public state ----------------------------------------------------------
    @property
    def iterations(self) -> Variable:
        return self._iterations

    @property
    def learning_rate(self) -> Variable:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate.assign(np.float32(value))

    lr = learning_rate

    def build(self, var_list) -> None:
        for var in var_list:
            if var.path not in self._slots:
                self._slots[var.path] = {
                    s: Variable(self._slot_init(s, var), s, trainable=False,
                                path=f"{self.name}/{var.path}/{s}")
                    for s in self._all_slot_names(var)}

    def slot_names_for(self, var):
        return self.slot_names

    def _all_slot_names(self, var):
        extra = ("_accumulated_gradient",) if (self.gradient_accumulation_steps or 1) > 1 else ()
        return tuple(self.slot_names_for(var)) + extra

    def _slot_init(self, slot, var):
        return np.zeros(var.shape, np.float32)

    @property
    def variables(self) -> list[Variable]:
        return [self._iterations, self._learning_rate,
                *(v for slots in self._slots.values() for v in slots.values())]

    def slot(self, var, name) -> Variable:
        return self._slots[var.path][name]

    # -- the step, as graph ops --------------------------------------------------
    def emit_updates(self, trace: Trace, pairs) -> dict:
        """pairs: (Variable, param Sym, gradient Sym). Returns {Variable: new value Sym}."""
        self.build([v for v, _, _ in pairs])
        it_int = trace.variable(self._iterations)     # int32: exact step counts
        it = F.cast(it_int, "float32")
        lr = trace.variable(self._learning_rate)
        if self.decay:
            lr = lr / (1.0 + self.decay * it)     # Keras 2 inverse-time decay
        grads = [gr for _, _, gr in pairs]
        steps = self.gradient_accumulation_steps or 1
        if steps > 1:
            # As Keras: accumulate, and every `steps`-th call update with the mean.
            accs = [trace.variable(self._slots[var.path]["_accumulated_gradient"])
                    for var, _, _ in pairs]
            nxt = it_int + 1
            quot = F.cast(F.cast(nxt, "float32") * (1.0 / steps) + 1e-3, "int32")
            is_update = F.equal(nxt - quot * steps, F.lift(it_int.g, 0, "int32"))
            grads = [(g + a) * (1.0 / steps) for g, a in zip(grads, accs)]
        grads = self._clip(grads)
        updates = {}
        for (var, p0, _), gr in zip(pairs, grads):
            slots = {s: trace.variable(v) for s, v in self._slots[var.path].items()
                     if not s.startswith("_")}
            p = p0 - p0 * (self.weight_decay * lr) if self.weight_decay else p0
            new_p, new_slots = self.update_step(gr, p, lr, it, slots)
            updates[var] = new_p
            for s, val in new_slots.items():
                updates[self._slots[var.path][s]] = val
        if steps > 1:
            for var, _, _ in pairs:      # between update steps, nothing but the sum moves
                for v in [var, *(self._slots[var.path][s] for s in self._slots[var.path]
                                 if not s.startswith("_"))]:
                    if v in updates:
                        updates[v] = F.select(is_update, updates[v], trace.variable(v))
            for (var, _, raw), acc in zip(pairs, accs):
                slot = self._slots[var.path]["_accumulated_gradient"]
                updates[slot] = F.select(is_update, 0.0, acc + raw)
        updates[self._iterations] = it_int + 1
        return updates

    def _clip(self, grads):
        if self.clipnorm is not None:
            return [_clip_by_norm(g, float(self.clipnorm)) for g in grads]
        if self.clipvalue is not None:
            v = float(self.clipvalue)
            return [F.clip(g, -v, v) for g in grads]
        if self.global_clipnorm is not None:
            c = float(self.global_clipnorm)
            norm = F.sqrt(sum_of([F.sum(F.square(g)) for g in grads]))
            scale = c * F.minimum(1.0 / norm, 1.0 / c)
            return [g * scale for g in grads]
        return grads

    def update_step(self, grad, var, lr, iterations, slots):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "learning_rate": float(self._learning_rate),
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def sum_of(xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _clip_by_norm(g, clip):
    # As Keras: g * clip / max(||g||, clip), with a zero gradient left alone.
    l2 = F.sqrt(F.sum(F.square(g)))
    return g * clip / F.maximum(l2, clip)


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


_REGISTRY = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad,
             "adamax": Adamax}


def get(identifier) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    if isinstance(identifier, dict) and str(identifier.get("class_name", "")).lower() in _REGISTRY:
        return _REGISTRY[identifier["class_name"].lower()](**identifier.get("config", {}))
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}. "
                     f"Valid names: {sorted(_REGISTRY)}")


def serialize(opt):
    return {"class_name": type(opt).__name__, "config": opt.get_config()}
