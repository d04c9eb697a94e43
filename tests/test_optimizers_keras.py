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

from fixtures.optim_cases import optimizer_cases

HERE = pathlib.Path(__file__).parent / "fixtures" / "optim"
KERAS = np.load(HERE / "updates.npz")
STEPS, SAVED_AT = 6, 3

CASES = optimizer_cases(optimizers, schedules)
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
