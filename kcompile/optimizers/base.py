"""The optimizer base: Keras 3's arguments, state and step, emitted as graph ops.

An optimizer owns its variables (iterations, learning_rate and per-weight
slots). When a model is compiled, `emit_updates` writes one training step's
update as ops on traced values, so the update fuses and compiles like the
rest of the step. A constant learning rate is a state value: changing it
(callbacks, `optimizer.learning_rate = x`) takes effect without recompiling.
A `LearningRateSchedule` is traced into the step instead, as a function of the
iteration counter, and has no variable (as in Keras, its value is not settable).

Slots whose names start with "_" belong to the base class: "_average" (the
moving average of each weight with use_ema=True) and "_accumulated_gradient"
(gradient_accumulation_steps); subclasses name their own slots.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from ..eager import eager
from ..tracing import Trace
from ..variables import Variable
from .schedules import LearningRateSchedule

_NOT_SETTABLE = ("This optimizer was created with a `LearningRateSchedule` object as its "
                 "`learning_rate` constructor argument, hence its learning rate is not "
                 "settable. If you need the learning rate to be settable, you should "
                 "instantiate the optimizer with a float `learning_rate` argument.")


class Optimizer:
    slot_names: tuple[str, ...] = ()
    # Optimizer-wide variables (not per weight) as (name, initial value): Nadam's u_product.
    global_slots: tuple[tuple[str, float], ...] = ()

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
        if use_ema:
            if not 0 <= ema_momentum <= 1:
                raise ValueError(f"`ema_momentum` must be in the range [0, 1]. "
                                 f"Received: ema_momentum={ema_momentum}")
            if ema_overwrite_frequency and (not isinstance(ema_overwrite_frequency, int)
                                            or ema_overwrite_frequency < 1):
                raise ValueError(f"`ema_overwrite_frequency` must be an integer >= 1 or None. "
                                 f"Received: ema_overwrite_frequency={ema_overwrite_frequency}")
        self.use_ema = bool(use_ema)
        self.ema_momentum = float(ema_momentum)
        self.ema_overwrite_frequency = ema_overwrite_frequency
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
        self._slots: dict[str, dict[str, Variable]] = {}   # variable path -> slot name -> Variable
        self._schedule = None
        self._learning_rate = None
        self._set_learning_rate(learning_rate)
        self._globals = {name: Variable(np.array(init, np.float32), name, trainable=False,
                                        path=f"{self.name}/{name}")
                         for name, init in self.global_slots}

    def _set_learning_rate(self, value):
        if isinstance(value, LearningRateSchedule):
            if self._slots:
                raise ValueError("A learning-rate schedule must be given before the optimizer "
                                 "is used in a compiled step: pass it to the constructor")
            self._schedule, self._learning_rate = value, None
            return
        if callable(value):
            raise TypeError(f"Argument `learning_rate` should be a float or an instance of "
                            f"LearningRateSchedule; kcompile evaluates learning rates inside "
                            f"the compiled step, so write a callable as a "
                            f"LearningRateSchedule subclass. Received: learning_rate={value!r}")
        if self._schedule is not None:
            raise TypeError(_NOT_SETTABLE)
        try:
            rate = np.float32(value)
        except (TypeError, ValueError):
            raise ValueError(f"Argument `learning_rate` should be float, or an instance of "
                             f"LearningRateSchedule. Received instead: learning_rate={value!r}"
                             ) from None
        if self._learning_rate is None:
            self._learning_rate = Variable(np.array(rate, np.float32), "learning_rate",
                                           trainable=False, path=f"{self.name}/learning_rate")
        else:
            self._learning_rate.assign(rate)

    # -- public state ----------------------------------------------------------
    @property
    def iterations(self) -> Variable:
        return self._iterations

    @property
    def learning_rate(self):
        """The rate variable; with a schedule, the schedule's value at the current
        iteration (as Keras: `schedule(optimizer.iterations)`)."""
        if self._schedule is not None:
            step = np.asarray(self._iterations.numpy(), np.int32)
            return eager(np.asarray(self._schedule(step), np.float32))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._set_learning_rate(value)

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
        ema = ("_average",) if self.use_ema else ()
        acc = ("_accumulated_gradient",) if (self.gradient_accumulation_steps or 1) > 1 else ()
        return ema + acc + tuple(self.slot_names_for(var))

    def _slot_init(self, slot, var):
        return np.zeros(var.shape, np.float32)

    @property
    def variables(self) -> list[Variable]:
        rate = [] if self._learning_rate is None else [self._learning_rate]
        return [self._iterations, *rate,
                *(v for slots in self._slots.values() for v in slots.values()),
                *self._globals.values()]

    def slot(self, var, name) -> Variable:
        return self._slots[var.path][name]

    def finalize_variable_values(self, var_list):
        """As Keras at the end of fit(): with use_ema, the weights take their averages."""
        if self.use_ema:
            for var in var_list:
                if var.path in self._slots:
                    var.assign(self._slots[var.path]["_average"].numpy())

    # -- the step, as graph ops --------------------------------------------------
    def _traced_learning_rate(self, trace, it_int):
        if self._schedule is None:
            return trace.variable(self._learning_rate)
        lr = self._schedule(it_int)
        if not isinstance(lr, F.Sym):      # a schedule that ignores the step
            lr = F.lift(it_int.g, np.float32(np.asarray(lr)))
        if lr.shape != ():
            raise ValueError(f"The learning-rate schedule {type(self._schedule).__name__} "
                             f"returned a value of shape {lr.shape}; expected a scalar")
        return F.cast(lr, "float32") if lr.dtype != "float32" else lr

    def emit_updates(self, trace: Trace, pairs) -> dict:
        """pairs: (Variable, param Sym, gradient Sym). Returns {Variable: new value Sym}."""
        self.build([v for v, _, _ in pairs])
        it_int = trace.variable(self._iterations)     # int32: exact step counts
        it = F.cast(it_int, "float32")
        lr = self._traced_learning_rate(trace, it_int)
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
        globals_ = {name: trace.variable(v) for name, v in self._globals.items()}
        new_globals = self.update_globals(it, globals_)
        for name, val in new_globals.items():
            updates[self._globals[name]] = val
        globals_.update(new_globals)
        for (var, p0, _), gr in zip(pairs, grads):
            slots = {s: trace.variable(v) for s, v in self._slots[var.path].items()
                     if not s.startswith("_")}
            slots.update(globals_)
            p = p0 - p0 * (self.weight_decay * lr) if self.weight_decay else p0
            new_p, new_slots = self.update_step(gr, p, lr, it, slots)
            updates[var] = new_p
            for s, val in new_slots.items():
                updates[self._slots[var.path][s]] = val
        if steps > 1:
            moved = [*self._globals.values()] + [
                v for var, _, _ in pairs
                for v in [var, *(self._slots[var.path][s] for s in self._slots[var.path]
                                 if not s.startswith("_"))]]
            for v in moved:      # between update steps, nothing but the sum moves
                if v in updates:
                    updates[v] = F.select(is_update, updates[v], trace.variable(v))
            for (var, _, raw), acc in zip(pairs, accs):
                slot = self._slots[var.path]["_accumulated_gradient"]
                updates[slot] = F.select(is_update, 0.0, acc + raw)
        if self.use_ema:
            self._emit_moving_averages(trace, pairs, updates, it_int, steps)
        updates[self._iterations] = it_int + 1
        return updates

    def _emit_moving_averages(self, trace, pairs, updates, it_int, steps):
        # As Keras: average = m * average + (1 - m) * new weight, with m = 0 at the first
        # step; every ema_overwrite_frequency steps the weights take their averages.
        count = it_int if steps == 1 else F.floor_divide(it_int, F.lift(it_int.g, steps, "int32"))
        zero = F.lift(it_int.g, 0, "int32")
        momentum = F.not_equal(count, zero) * self.ema_momentum
        freq = self.ema_overwrite_frequency
        overwrite = None
        if freq:
            overwrite = F.equal(F.mod(count + 1, F.lift(it_int.g, freq, "int32")), zero)
        for var, _, _ in pairs:
            slot = self._slots[var.path]["_average"]
            average = momentum * trace.variable(slot) + (1.0 - momentum) * updates[var]
            updates[slot] = average
            if overwrite is not None:
                updates[var] = F.select(overwrite, average, updates[var])

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

    def update_globals(self, it, values) -> dict:
        """New values of the optimizer-wide variables, before the per-weight updates."""
        return {}

    def update_step(self, grad, var, lr, iterations, slots):
        raise NotImplementedError

    def get_config(self):
        from .schedules import serialize
        rate = serialize(self._schedule) if self._schedule is not None else \
            float(self._learning_rate)
        return {"name": self.name, "learning_rate": rate,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            from .schedules import deserialize
            config["learning_rate"] = deserialize(config["learning_rate"], custom_objects)
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
