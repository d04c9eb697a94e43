"""Learning-rate schedules with Keras 3's names, arguments, formulas and configs
(keras/src/optimizers/schedules/learning_rate_schedule.py).

A schedule is a function of the optimizer's iteration count written with
`kcompile.ops`, so the same code serves twice: in the compiled training step
(the step is a traced int32 value and the rate becomes part of the step's
graph, read afresh at every step) and eagerly (`optimizer.learning_rate`,
`schedule(10)`), where it returns a float32 array. User subclasses are written
the same way: `__call__(self, step)` with `ops` calls, and `get_config()`.
Conditions are written with `ops.where` (both sides are computed, one is kept).
"""
from __future__ import annotations

import math

from kcompile import ops


class LearningRateSchedule:
    """The base of schedules: subclasses define `__call__(step)` and `get_config()`."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must "
                                  f"override `__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must "
                                  f"override `get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _KerasSchedule(LearningRateSchedule):
    """Keras' own schedules: the config is the constructor's arguments, kept as
    attributes of the same names (listed in CONFIG)."""
    CONFIG: tuple = ()

    def _keep(self, **arguments):
        for key, value in arguments.items():
            setattr(self, key, value)

    def get_config(self):
        return {key: getattr(self, key) for key in self.CONFIG}


def _positive_steps(arg, value):
    if value <= 0:
        raise ValueError(f"Argument `{arg}` must be > 0. Received: {arg}={value}")


def _float_step(step):
    return ops.cast(step, "float32")


class _StepDecay(_KerasSchedule):
    """A decay driven by step / decay_steps (floored with staircase=True)."""
    CONFIG = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name=None):
        super().__init__()
        self._keep(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps,
                   decay_rate=decay_rate, staircase=staircase, name=name or type(self).__name__)
        _positive_steps("decay_steps", decay_steps)

    def _progress(self, step):
        p = _float_step(step) / float(self.decay_steps)
        return ops.floor(p) if self.staircase else p


class ExponentialDecay(_StepDecay):
    """initial_learning_rate * decay_rate ^ (step / decay_steps), the exponent floored
    with staircase=True."""

    def __call__(self, step):
        return ops.multiply(float(self.initial_learning_rate),
                            ops.power(float(self.decay_rate), self._progress(step)))


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <=
    boundaries[i], values[-1] after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        super().__init__()
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"The length of boundaries should be 1 less than the length of "
                             f"values. Received: boundaries={boundaries} of length "
                             f"{len(boundaries)}, and values={values} of length {len(values)}.")
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step):
        step = _float_step(step)
        result = ops.cast(ops.less_equal(step, float(self.boundaries[0])), "float32") * \
            float(self.values[0])
        result = result + ops.cast(ops.greater(step, float(self.boundaries[-1])), "float32") * \
            float(self.values[-1])
        for low, high, value in zip(self.boundaries[:-1], self.boundaries[1:], self.values[1:-1]):
            inside = ops.logical_and(ops.greater(step, float(low)),
                                     ops.less_equal(step, float(high)))
            result = result + ops.cast(inside, "float32") * float(value)
        return result

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(_KerasSchedule):
    """(initial - end) * (1 - min(step, decay_steps) / decay_steps) ^ power + end; with
    cycle=True decay_steps grows to the first multiple above step."""
    CONFIG = ("initial_learning_rate", "decay_steps", "end_learning_rate", "power", "cycle",
              "name")

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        super().__init__()
        self._keep(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps,
                   end_learning_rate=end_learning_rate, power=power, cycle=cycle, name=name)
        _positive_steps("decay_steps", decay_steps)

    def __call__(self, step):
        step = _float_step(step)
        decay_steps = float(self.decay_steps)
        if self.cycle:
            multiplier = ops.where(ops.equal(step, 0.0), 1.0, ops.ceil(step / decay_steps))
            decay_steps = ops.multiply(decay_steps, multiplier)
        else:
            step = ops.minimum(step, decay_steps)
        p = ops.divide(step, decay_steps)
        span = float(self.initial_learning_rate) - float(self.end_learning_rate)
        return ops.add(ops.multiply(span, ops.power(1.0 - p, float(self.power))),
                       float(self.end_learning_rate))


class InverseTimeDecay(_StepDecay):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps), the ratio floored
    with staircase=True."""

    def __call__(self, step):
        return ops.divide(float(self.initial_learning_rate),
                          ops.add(1.0, ops.multiply(float(self.decay_rate),
                                                    self._progress(step))))


class CosineDecay(LearningRateSchedule):
    """A linear warmup from initial_learning_rate to warmup_target over warmup_steps
    (when warmup_target is set), then a cosine from there down to alpha times it over
    decay_steps; constant afterwards."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        super().__init__()
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target
        _positive_steps("decay_steps", decay_steps)

    def _decay(self, step, decay_from):
        fraction = ops.divide(step, float(self.decay_steps))
        cosine = 0.5 * (1.0 + ops.cos(ops.multiply(math.pi, fraction)))
        return ops.multiply(decay_from, (1.0 - float(self.alpha)) * cosine + float(self.alpha))

    def __call__(self, step):
        step = _float_step(step)
        initial = float(self.initial_learning_rate)
        if self.warmup_target is None:
            return self._decay(ops.minimum(step, float(self.decay_steps)), initial)
        target, warmup = float(self.warmup_target), float(self.warmup_steps)
        step = ops.minimum(step, float(self.decay_steps) + warmup)
        # warmup_steps may be 0: the warmup side is then never kept, but is still computed.
        warming = (target - initial) * (step / max(warmup, 1.0)) + initial
        return ops.where(ops.less(step, warmup), warming, self._decay(step - warmup, target))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): period i lasts first_decay_steps * t_mul^i
    steps and starts from initial_learning_rate * m_mul^i."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        super().__init__()
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self._t_mul = t_mul
        self._m_mul = m_mul
        self.alpha = alpha
        self.name = name
        _positive_steps("first_decay_steps", first_decay_steps)

    def __call__(self, step):
        fraction = _float_step(step) / float(self.first_decay_steps)
        t_mul = float(self._t_mul)
        if t_mul == 1.0:
            i_restart = ops.floor(fraction)
            fraction = fraction - i_restart
        else:
            i_restart = ops.floor(ops.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
            sum_r = (1.0 - ops.power(t_mul, i_restart)) / (1.0 - t_mul)
            fraction = (fraction - sum_r) / ops.power(t_mul, i_restart)
        m_fac = ops.power(float(self._m_mul), i_restart)
        cosine = 0.5 * m_fac * (1.0 + ops.cos(ops.multiply(math.pi, fraction)))
        decayed = (1.0 - float(self.alpha)) * cosine + float(self.alpha)
        return ops.multiply(float(self.initial_learning_rate), decayed)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self._t_mul,
                "m_mul": self._m_mul, "alpha": self.alpha, "name": self.name}


_BUILTIN = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay,
                                           PolynomialDecay, InverseTimeDecay, CosineDecay,
                                           CosineDecayRestarts)}


def serialize(learning_rate_schedule):
    """The schedule as Keras 3 writes it in an optimizer's config."""
    from kcompile.saving.serialization import get_registered_name
    cls = type(learning_rate_schedule)
    builtin = _BUILTIN.get(cls.__name__) is cls
    return {"module": "keras.optimizers.schedules" if builtin else cls.__module__,
            "class_name": cls.__name__, "config": learning_rate_schedule.get_config(),
            "registered_name": None if builtin else get_registered_name(cls)}


def deserialize(config, custom_objects=None):
    """A schedule from its config: a built-in one, or a user's class registered or passed
    in `custom_objects` (nothing else is imported)."""
    from kcompile.saving.serialization import _lookup_custom, custom_object_scope
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"Could not interpret learning-rate schedule config: {config!r}")
    name = config["class_name"]
    with custom_object_scope(custom_objects):
        cls = _lookup_custom(config.get("registered_name"), name) or _BUILTIN.get(name)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
        raise ValueError(f"Unknown learning-rate schedule: {name!r}. Please ensure you are "
                         f"using a `keras.optimizers.schedules` class or pass yours in "
                         f"`custom_objects=`.")
    return cls.from_config(dict(config.get("config") or {}))
