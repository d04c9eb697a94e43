"""Optimizers and schedules against numbers real Keras 3 wrote
(tests/fixtures/make_optim_fixtures.py): the same Dense layer, batch and starting
weights, trained step by step here must give Keras' weights after every step; models
Keras saved mid-training with a schedule load here with the schedule and its step
count, and go on as Keras went on.
"""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from kcompile.optimizers import schedules

HERE = pathlib.Path(__file__).parent / "fixtures" / "optim"
KERAS = np.load(HERE / "updates.npz")
STEPS, SAVED_AT = 6, 3

# The cases of make_optim_fixtures.py, built here with the same arguments.
CASES = {
    "nadam": lambda: optimizers.Nadam(0.05),
    "nadam_betas": lambda: optimizers.Nadam(0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-4),
    "adadelta": lambda: optimizers.Adadelta(1.0),
    "adadelta_rho": lambda: optimizers.Adadelta(0.5, rho=0.8, epsilon=1e-5),
    "lion": lambda: optimizers.Lion(0.01),
    "lion_betas_decay": lambda: optimizers.Lion(0.01, beta_1=0.5, beta_2=0.7,
                                                weight_decay=0.1),
    "ftrl": lambda: optimizers.Ftrl(0.1),
    "ftrl_regularized": lambda: optimizers.Ftrl(
        0.1, learning_rate_power=-0.7, initial_accumulator_value=0.5,
        l1_regularization_strength=0.01, l2_regularization_strength=0.02,
        l2_shrinkage_regularization_strength=0.03, beta=0.2),
    "lamb": lambda: optimizers.Lamb(0.05),
    "lamb_decay": lambda: optimizers.Lamb(0.05, beta_1=0.8, beta_2=0.9, weight_decay=0.1),
    "adafactor": lambda: optimizers.Adafactor(0.5),
    "adafactor_fixed_step": lambda: optimizers.Adafactor(0.05, beta_2_decay=-0.5,
                                                         epsilon_2=1e-2, clip_threshold=0.5,
                                                         relative_step=False),
    "adafactor_schedule": lambda: optimizers.Adafactor(schedules.ExponentialDecay(2.0, 2, 0.5)),
    "adam_ema": lambda: optimizers.Adam(0.05, use_ema=True, ema_momentum=0.9),
    "sgd_ema_overwrite": lambda: optimizers.SGD(0.1, momentum=0.5, use_ema=True,
                                                ema_momentum=0.8, ema_overwrite_frequency=4),
    "sgd_exponential": lambda: optimizers.SGD(schedules.ExponentialDecay(0.1, 2, 0.5)),
    "sgd_piecewise": lambda: optimizers.SGD(schedules.PiecewiseConstantDecay([1, 3],
                                                                             [0.1, 0.05, 0.01])),
    "sgd_polynomial": lambda: optimizers.SGD(schedules.PolynomialDecay(0.1, 4, 0.01, power=2.0,
                                                                       cycle=True)),
    "sgd_inverse_time": lambda: optimizers.SGD(schedules.InverseTimeDecay(0.1, 2, 0.5,
                                                                          staircase=True)),
    "adam_cosine_warmup": lambda: optimizers.Adam(schedules.CosineDecay(
        0.01, 3, alpha=0.1, warmup_target=0.1, warmup_steps=2)),
    "sgd_cosine_restarts": lambda: optimizers.SGD(schedules.CosineDecayRestarts(
        0.1, 2, t_mul=2.0, m_mul=0.5, alpha=0.1)),
}
SAVED = sorted(p.stem for p in HERE.glob("*.keras"))


def model_with(opt, backend="native"):
    model = models.Sequential([layers.Input((4,)), layers.Dense(3)])
    model.set_weights([KERAS["kernel0"], KERAS["bias0"]])
    model.compile(optimizer=opt, loss="mse", backend=backend)
    return model


def assert_keras_step(model, case, step):
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel, KERAS[f"{case}/kernel"][step - 1], rtol=2e-5, atol=2e-6,
                               err_msg=f"{case} kernel after step {step}")
    np.testing.assert_allclose(bias, KERAS[f"{case}/bias"][step - 1], rtol=2e-5, atol=2e-6,
                               err_msg=f"{case} bias after step {step}")


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_match_keras(case, backend):
    model = model_with(CASES[case](), backend)
    for step in range(1, STEPS + 1):
        model.train_on_batch(KERAS["x"], KERAS["y"])
        assert_keras_step(model, case, step)
    assert np.max(np.abs(KERAS[f"{case}/kernel"][-1] - KERAS["kernel0"])) > 1e-3


def test_fit_with_ema_ends_on_keras_averages():
    model = model_with(optimizers.Adam(0.05, use_ema=True, ema_momentum=0.7))
    model.fit(KERAS["x"], KERAS["y"], batch_size=2, epochs=2, shuffle=False, verbose=0)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel, KERAS["fit_ema/kernel"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(bias, KERAS["fit_ema/bias"], rtol=2e-5, atol=2e-6)


def test_every_schedule_case_has_a_keras_file():
    assert SAVED == sorted(c for c in CASES if c.startswith(("sgd_", "adam_cosine"))
                           and "ema" not in c)


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("case", SAVED)
def test_keras_file_with_a_schedule_loads_and_goes_on_as_keras(case, ext):
    model = models.load_model(HERE / f"{case}.{ext}")
    opt = model.optimizer
    want = CASES[case]()
    assert type(opt) is type(want)
    assert type(opt._schedule) is type(want._schedule)
    assert opt._schedule.get_config() == want._schedule.get_config()
    assert int(opt.iterations.numpy()) == SAVED_AT
    assert_keras_step(model, case, SAVED_AT)
    # the rate read from the optimizer is the schedule's at the saved step count
    np.testing.assert_allclose(float(opt.learning_rate), float(want._schedule(SAVED_AT)),
                               rtol=1e-6)
    for step in range(SAVED_AT + 1, STEPS + 1):
        model.train_on_batch(KERAS["x"], KERAS["y"])
        assert_keras_step(model, case, step)
