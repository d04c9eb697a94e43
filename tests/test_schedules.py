"""keras.optimizers.schedules: each schedule's value against the formula Keras documents
(written out in numpy here), the rate the compiled training step really uses at every
step, user schedules written with ops, saving and loading, and the learning-rate
callbacks refusing a schedule as Keras does.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kcompile import callbacks, layers, models, ops, optimizers, saving
from kcompile.optimizers import schedules as S

STEPS = [0, 1, 10, 1000]


# ------------------------------------------------------- Keras' documented formulas
def exponential(step, initial, decay_steps, rate, staircase=False):
    p = step / decay_steps
    return initial * rate ** (math.floor(p) if staircase else p)


def piecewise(step, boundaries, values):
    for b, v in zip(boundaries, values):
        if step <= b:
            return v
    return values[-1]


def polynomial(step, initial, decay_steps, end=0.0001, power=1.0, cycle=False):
    if cycle:
        decay_steps = decay_steps * max(1, math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (initial - end) * (1 - step / decay_steps) ** power + end


def inverse_time(step, initial, decay_steps, rate, staircase=False):
    p = step / decay_steps
    return initial / (1 + rate * (math.floor(p) if staircase else p))


def cosine(step, initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decayed(s, start):
        s = min(s, decay_steps)
        return start * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / decay_steps)) + alpha)
    if warmup_target is None:
        return decayed(step, initial)
    if step < warmup_steps:
        return initial + (warmup_target - initial) * step / warmup_steps
    return decayed(step - warmup_steps, warmup_target)


def cosine_restarts(step, initial, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    # walk the periods: period i lasts first * t_mul^i steps, peaks at initial * m_mul^i
    start, length, i = 0.0, float(first), 0
    while step >= start + length:
        start, length, i = start + length, length * t_mul, i + 1
    fraction = (step - start) / length
    return initial * ((1 - alpha) * 0.5 * m_mul ** i * (1 + math.cos(math.pi * fraction)) + alpha)


CASES = [
    ("exponential", lambda: S.ExponentialDecay(0.1, 10, 0.96),
     lambda s: exponential(s, 0.1, 10, 0.96)),
    ("exponential-staircase", lambda: S.ExponentialDecay(0.5, 3, 0.5, staircase=True),
     lambda s: exponential(s, 0.5, 3, 0.5, True)),
    ("piecewise", lambda: S.PiecewiseConstantDecay([1, 10, 100], [1.0, 0.5, 0.1, 0.01]),
     lambda s: piecewise(s, [1, 10, 100], [1.0, 0.5, 0.1, 0.01])),
    ("piecewise-one-boundary", lambda: S.PiecewiseConstantDecay([5], [0.3, 0.2]),
     lambda s: piecewise(s, [5], [0.3, 0.2])),
    ("polynomial", lambda: S.PolynomialDecay(0.1, 100), lambda s: polynomial(s, 0.1, 100)),
    ("polynomial-power-end", lambda: S.PolynomialDecay(0.1, 20, 0.01, power=0.5),
     lambda s: polynomial(s, 0.1, 20, 0.01, 0.5)),
    ("polynomial-cycle", lambda: S.PolynomialDecay(0.1, 7, 0.01, power=2.0, cycle=True),
     lambda s: polynomial(s, 0.1, 7, 0.01, 2.0, True)),
    ("inverse-time", lambda: S.InverseTimeDecay(0.1, 5, 0.5), lambda s: inverse_time(s, 0.1, 5, 0.5)),
    ("inverse-time-staircase", lambda: S.InverseTimeDecay(0.1, 3, 2.0, staircase=True),
     lambda s: inverse_time(s, 0.1, 3, 2.0, True)),
    ("cosine", lambda: S.CosineDecay(0.1, 100), lambda s: cosine(s, 0.1, 100)),
    ("cosine-alpha", lambda: S.CosineDecay(0.1, 20, alpha=0.2), lambda s: cosine(s, 0.1, 20, 0.2)),
    ("cosine-warmup", lambda: S.CosineDecay(0.0, 500, alpha=0.1, warmup_target=0.1,
                                            warmup_steps=20),
     lambda s: cosine(s, 0.0, 500, 0.1, 0.1, 20)),
    ("cosine-warmup-long", lambda: S.CosineDecay(0.01, 8, warmup_target=0.2, warmup_steps=200),
     lambda s: cosine(s, 0.01, 8, 0.0, 0.2, 200)),
    ("restarts", lambda: S.CosineDecayRestarts(0.1, 4), lambda s: cosine_restarts(s, 0.1, 4)),
    ("restarts-tmul1-mmul", lambda: S.CosineDecayRestarts(0.1, 3, t_mul=1.0, m_mul=0.9, alpha=0.1),
     lambda s: cosine_restarts(s, 0.1, 3, 1.0, 0.9, 0.1)),
    ("restarts-tmul3", lambda: S.CosineDecayRestarts(0.2, 2, t_mul=3.0, m_mul=0.5),
     lambda s: cosine_restarts(s, 0.2, 2, 3.0, 0.5)),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_at_steps_matches_keras_formula(case):
    _, make, formula = case
    schedule = make()
    for step in STEPS:
        got = schedule(step)
        assert np.asarray(got).shape == ()
        np.testing.assert_allclose(float(got), formula(step), rtol=2e-5, atol=1e-9,
                                   err_msg=f"step {step}")
    # the schedule really changes over these steps (a constant would pass nothing)
    assert len({round(formula(s), 9) for s in STEPS}) >= 2


def linear_model(schedule, backend="native"):
    """y = w x with one weight started at 0 and mean absolute error against a far target
    (y = 1000 at x = 1): the gradient is -1 at every step, so w <- w + lr and each
    update is the rate used."""
    model = models.Sequential([layers.Input((1,)),
                               layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=optimizers.SGD(schedule), loss="mae", backend=backend)
    return model


class WeightTrace(callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.w = [float(self.model.get_weights()[0][0, 0])]

    def on_train_batch_end(self, batch, logs=None):
        self.w.append(float(self.model.get_weights()[0][0, 0]))


def rates_used(w):
    return list(np.diff(w))


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("case", [CASES[i] for i in (1, 2, 6, 8, 12, 15)],
                         ids=[IDS[i] for i in (1, 2, 6, 8, 12, 15)])
def test_compiled_fit_uses_the_schedule_at_each_step(case, backend):
    _, make, formula = case
    model = linear_model(make(), backend)
    trace = WeightTrace()
    x = np.ones((12, 1), np.float32)
    model.fit(x, 1000 * x, batch_size=1, epochs=2, shuffle=False, verbose=0, callbacks=[trace])
    got = rates_used(trace.w)
    want = [formula(step) for step in range(24)]
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-6)
    assert len(model._executables) == 1
    assert int(model.optimizer.iterations.numpy()) == 24
    # optimizer.learning_rate reads the schedule at the current step, as Keras
    np.testing.assert_allclose(float(model.optimizer.learning_rate), formula(24), rtol=1e-5)


class HalvingEvery(S.LearningRateSchedule):
    """A user schedule written with ops: the rate halves every `period` steps."""

    def __init__(self, initial, period):
        self.initial, self.period = initial, period

    def __call__(self, step):
        halvings = ops.floor(ops.cast(step, "float32") / self.period)
        return self.initial * ops.power(0.5, halvings)

    def get_config(self):
        return {"initial": self.initial, "period": self.period}


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_user_schedule_runs_in_the_compiled_step(backend):
    model = linear_model(HalvingEvery(0.2, 3), backend)
    trace = WeightTrace()
    x = np.ones((8, 1), np.float32)
    model.fit(x, 1000 * x, batch_size=1, epochs=1, shuffle=False, verbose=0, callbacks=[trace])
    np.testing.assert_allclose(rates_used(trace.w), [0.2 * 0.5 ** (s // 3) for s in range(8)],
                               rtol=2e-3)


def test_schedule_that_ignores_the_step():
    class Constant(S.LearningRateSchedule):
        def __call__(self, step):
            return 0.05

        def get_config(self):
            return {}
    model = linear_model(Constant())
    trace = WeightTrace()
    model.fit(np.ones((3, 1)), np.full((3, 1), 1000.0), batch_size=1, shuffle=False, verbose=0,
              callbacks=[trace])
    np.testing.assert_allclose(rates_used(trace.w), [0.05] * 3, rtol=1e-4)


# --------------------------------------------------------------- saving and loading
def test_serialize_in_keras_format_and_back():
    schedule = S.CosineDecay(0.1, 100, alpha=0.1, warmup_target=0.5, warmup_steps=10)
    config = S.serialize(schedule)
    assert config == {"module": "keras.optimizers.schedules", "class_name": "CosineDecay",
                      "config": {"initial_learning_rate": 0.1, "decay_steps": 100,
                                 "alpha": 0.1, "name": "CosineDecay", "warmup_target": 0.5,
                                 "warmup_steps": 10},
                      "registered_name": None}
    again = S.deserialize(json.loads(json.dumps(config)))
    assert type(again) is S.CosineDecay and again.get_config() == schedule.get_config()
    opt_config = optimizers.SGD(S.ExponentialDecay(0.1, 10, 0.5)).get_config()
    assert opt_config["learning_rate"]["class_name"] == "ExponentialDecay"
    assert saving.deserialize_keras_object(saving.serialize_keras_object(schedule)) \
        .get_config() == schedule.get_config()


def test_unknown_schedule_is_refused_without_importing_anything():
    with pytest.raises(ValueError, match="Unknown learning-rate schedule: 'os.system'"):
        S.deserialize({"module": "os", "class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="HalvingEvery"):
        S.deserialize({"module": "x", "class_name": "HalvingEvery",
                       "config": {"initial": 0.1, "period": 2}})


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("user", [False, True])
def test_model_with_a_schedule_saves_loads_and_resumes(tmp_path, fmt, user):
    schedule = HalvingEvery(0.2, 2) if user else S.PiecewiseConstantDecay([1, 3], [0.2, 0.1, 0.05])
    model = linear_model(schedule)
    x, y = np.ones((1, 1), np.float32), np.full((1, 1), 1000.0, np.float32)
    for _ in range(2):
        model.train_on_batch(x, y)
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    custom = {"HalvingEvery": HalvingEvery} if user else None
    loaded = models.load_model(path, custom_objects=custom)
    assert type(loaded.optimizer._schedule) is type(schedule)
    assert loaded.optimizer._schedule.get_config() == schedule.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 2
    # no learning_rate variable is saved for a schedule (as Keras)
    assert len(loaded.optimizer.variables) == 1
    for _ in range(3):
        model.train_on_batch(x, y)
        loaded.train_on_batch(x, y)
        np.testing.assert_allclose(loaded.get_weights()[0], model.get_weights()[0], rtol=1e-6)
    if user:
        with pytest.raises(ValueError, match="HalvingEvery"):
            models.load_model(path)


# ------------------------------------------------------ reading and setting the rate
SETTABLE = ("hence its learning rate is not settable")


def test_learning_rate_of_a_schedule_is_read_not_set():
    opt = optimizers.Adam(S.ExponentialDecay(0.1, 10, 0.5))
    assert float(opt.learning_rate) == pytest.approx(0.1)
    opt.iterations.assign(10)
    assert float(opt.learning_rate) == pytest.approx(0.05)
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.05)   # a tensor, as in Keras
    with pytest.raises(TypeError, match=SETTABLE):
        opt.learning_rate = 0.01
    plain = optimizers.SGD(0.1)
    plain.learning_rate = S.ExponentialDecay(0.3, 1, 0.5)    # before use: allowed, as Keras
    assert float(plain.learning_rate) == pytest.approx(0.3)


@pytest.mark.parametrize("make_callback", [
    lambda: callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5),
    lambda: callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=1e9)],
    ids=["LearningRateScheduler", "ReduceLROnPlateau"])
def test_rate_setting_callbacks_refuse_a_schedule(make_callback):
    model = linear_model(S.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match=SETTABLE):
        model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=2, verbose=0,
                  callbacks=[make_callback()])


def test_bad_arguments_raise_keras_errors():
    for make in (lambda: S.ExponentialDecay(0.1, 0, 0.5), lambda: S.PolynomialDecay(0.1, -1),
                 lambda: S.InverseTimeDecay(0.1, 0, 0.5), lambda: S.CosineDecay(0.1, 0)):
        with pytest.raises(ValueError, match="Argument `decay_steps` must be > 0"):
            make()
    with pytest.raises(ValueError, match="first_decay_steps"):
        S.CosineDecayRestarts(0.1, 0)
    with pytest.raises(ValueError, match="length of boundaries should be 1 less"):
        S.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(TypeError, match="LearningRateSchedule subclass"):
        optimizers.SGD(lambda: 0.1)
    with pytest.raises(NotImplementedError, match="must override `__call__"):
        S.LearningRateSchedule()(0)
