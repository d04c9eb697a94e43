"""The progress display of fit/evaluate/predict against Keras 3's format.

Keras 3 (jax backend, plain-text rendering of its output):

    Epoch 1/2
    4/4 ━━━━━━━━━━━━━━━━━━━━ 1s 126ms/step - accuracy: 0.3400 - loss: 1.6212 - val_accuracy: 0.3400 - val_loss: 1.6098
    4/4 - 1s - 229ms/step - accuracy: 0.3600 - loss: 1.3036 - val_accuracy: 0.3500 - val_loss: 1.3004   (verbose=2)

verbose=1 redraws its line with '\\r' while the epoch runs (the first update always
shows); the metric names are sorted; no "Epoch 1/1" line for a single epoch.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from kcompile import layers, models, progbar
from kcompile.progbar import Progbar
from kcompile.utils import to_categorical

N, D, K = 100, 4, 3
RNG = np.random.default_rng(3)
X = RNG.normal(size=(N, D)).astype(np.float32)
Y = to_categorical(RNG.integers(0, K, N), K)

BAR = "\u2501" * 20
NUM = r"\d\.\d{4}"
TIME = r"\d+s \d+(ms|us|s)/step"


@pytest.fixture(scope="module")
def model():
    m = models.Sequential([layers.Input((D,)), layers.Dense(K, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    m.fit(X, Y, batch_size=32, epochs=1, verbose=0)        # compiled before output is read
    return m


def final_lines(out):
    """What a terminal shows: each line's text after its last carriage return."""
    return [line.split("\r")[-1] for line in out.split("\n")]


@pytest.mark.parametrize("verbose", [1, "auto"])
def test_fit_verbose_1(model, capsys, verbose):
    h = model.fit(X, Y, batch_size=32, epochs=2, verbose=verbose, validation_data=(X, Y))
    out = capsys.readouterr().out
    lines = final_lines(out)
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[-1] == ""
    assert len(lines) == 5
    for epoch, line in ((0, lines[1]), (1, lines[3])):
        assert re.fullmatch(rf"4/4 {BAR} {TIME} - accuracy: {NUM} - loss: {NUM} - "
                            rf"val_accuracy: {NUM} - val_loss: {NUM}", line), line
        for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
            assert f"{key}: {h.history[key][epoch]:.4f}" in line
    # during the epoch: the first step with the bar partly drawn and the running loss
    first = out.split("\n")[1].split("\r")[1]
    assert re.fullmatch(rf"1/4 \u2501{{5}} {{15}} \d+s \d+(ms|us|s)/step - accuracy: {NUM} - "
                        rf"loss: {NUM}", first), first
    assert "\x1b" not in out                     # no colour codes outside a terminal


def test_fit_verbose_2_one_line_per_epoch(model, capsys):
    h = model.fit(X, Y, batch_size=32, epochs=2, verbose=2, validation_data=(X, Y))
    out = capsys.readouterr().out
    lines = out.split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[4] == ""
    assert len(lines) == 5 and "\r" not in out and "\u2501" not in out
    for epoch, line in ((0, lines[1]), (1, lines[3])):
        assert re.fullmatch(rf"4/4 - \d+s - \d+(ms|us|s)/step - accuracy: {NUM} - loss: {NUM} - "
                            rf"val_accuracy: {NUM} - val_loss: {NUM}", line), line
        assert f"loss: {h.history['loss'][epoch]:.4f} " in line


def test_fit_verbose_0_is_silent_and_one_epoch_has_no_epoch_line(model, capsys):
    model.fit(X, Y, batch_size=32, epochs=2, verbose=0, validation_data=(X, Y))
    assert capsys.readouterr().out == ""
    model.fit(X, Y, batch_size=32, epochs=1, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch" not in out and re.fullmatch(rf"4/4 - {TIME.replace(' ', ' - ')} - "
                                               rf"accuracy: {NUM} - loss: {NUM}\n", out)


def test_evaluate_progress(model, capsys):
    loss, acc = model.evaluate(X, Y, batch_size=32, verbose=1)
    # Off a terminal the bar may also print intermediate lines when a step is slow
    # (the first compiles): the last line is the finished bar.
    lines = final_lines(capsys.readouterr().out)
    assert lines[-1] == ""
    # (padded with spaces when an earlier redraw of the line was longer, as predict's)
    assert re.fullmatch(rf"4/4 {BAR} {TIME} - accuracy: {acc:.4f} - loss: {loss:.4f} *",
                        lines[-2])
    model.evaluate(X, Y, batch_size=32, verbose=2)
    assert re.fullmatch(rf"4/4 - \d+s - \d+(ms|us|s)/step - accuracy: {acc:.4f} - "
                        rf"loss: {loss:.4f}\n", capsys.readouterr().out)
    model.evaluate(X, Y, batch_size=32, verbose=0)
    assert capsys.readouterr().out == ""


def test_predict_progress(model, capsys):
    model.predict(X, batch_size=32, verbose=1)
    lines = final_lines(capsys.readouterr().out)
    assert lines[-1] == "" and re.fullmatch(rf"4/4 {BAR} {TIME} *", lines[-2])
    model.predict(X, batch_size=32, verbose=2)
    assert re.fullmatch(r"4/4 - \d+s - \d+(ms|us|s)/step\n", capsys.readouterr().out)
    model.predict(X, batch_size=32, verbose=0)
    assert capsys.readouterr().out == ""


def test_unknown_number_of_steps(model, capsys):
    def gen():
        for s in range(0, N, 32):
            yield X[s:s + 32], Y[s:s + 32]
    model.fit(gen(), epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert re.match(r"\r      1/Unknown \d+s \d+(ms|us|s)/step - accuracy", out)
    assert re.fullmatch(rf"4/4 {BAR} {TIME} - accuracy: {NUM} - loss: {NUM}",
                        final_lines(out)[0])


# ------------------------------------------------------------------ Progbar itself
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progbar.time, "time", c)
    return c


def test_eta_and_time_per_step(clock, capsys):
    bar = Progbar(10)
    clock.now += 1.0
    bar.update(1, [("loss", 1.0)])
    # 1 s for the first step: ETA 9 s
    assert capsys.readouterr().out == f"\r 1/10 \u2501\u2501{' ' * 18} 9s 1s/step - loss: 1.0000"
    clock.now += 0.5
    bar.update(2, [("loss", 3.0)])
    # the first step (compilation) is left out of the time per step: 0.5 s
    out = capsys.readouterr().out
    assert out.endswith(f"\r 2/10 \u2501\u2501\u2501\u2501{' ' * 16} 4s 500ms/step - loss: 2.0000")
    clock.now += 0.5 * 8
    bar.update(10, [("loss", 2.0)])
    assert capsys.readouterr().out == f"\r10/10 {BAR} {5.5:.0f}s 500ms/step - loss: 2.0000\n"


def test_long_eta_formats(clock, capsys):
    bar = Progbar(1000, interval=0)
    clock.now += 2.0
    bar.update(1)
    assert " 33:18 2s/step" in capsys.readouterr().out
    bar = Progbar(10000, interval=0)
    clock.now += 2.0
    bar.update(1)
    assert " 5:33:18 2s/step" in capsys.readouterr().out


def test_values_averaged_unless_stateful(clock, capsys):
    bar = Progbar(10, verbose=2, stateful_metrics=["acc"])
    bar.update(5, [("loss", 1.0), ("acc", 0.5)])
    bar.update(10, [("loss", 3.0), ("acc", 0.25)])
    out = capsys.readouterr().out
    # the final update replaces stateless values too (Keras: finalize counts once)
    assert out == "10/10 - 0s - 0s/step - loss: 3.0000 - acc: 0.2500\n"
    bar = Progbar(10, verbose=2)
    bar.update(5, [("loss", 1.0)])
    bar.update(8, [("loss", 3.0)])
    bar.update(10, [("loss", 0.0001)], finalize=True)
    assert capsys.readouterr().out.endswith("loss: 1.0000e-04\n")


def test_running_average_over_steps(clock, capsys):
    bar = Progbar(10, interval=0)
    bar.update(5, [("loss", 1.0)])
    bar.update(8, [("loss", 3.0)])
    # (1 * 5 + 3 * 3) / 8
    assert capsys.readouterr().out.endswith(f"loss: {14 / 8:.4f}")


def test_throttled_updates_and_unknown_target(clock, capsys):
    bar = Progbar(None)
    clock.now += 1.0
    bar.update(1, [("loss", 0.5)])
    bar.update(2, [("loss", 0.5)])         # within `interval`: not drawn
    out = capsys.readouterr().out
    assert out == "\r      1/Unknown 1s 1s/step - loss: 0.5000"
    bar.add(1)
    clock.now += 1.0
    bar.update(4, finalize=True)
    assert capsys.readouterr().out.endswith("      4/Unknown 2s 333ms/step - loss: 0.5000\n")


def test_shorter_line_is_padded_over_the_longer_one(clock, capsys):
    bar = Progbar(3, interval=0)
    clock.now += 1.0
    bar.update(1, [("a_long_metric_name", 1.0)])
    first = capsys.readouterr().out
    bar2 = Progbar(3, interval=0)
    bar2._prev_total_width = len(first) + 10
    clock.now += 1.0
    bar2.update(3)
    assert capsys.readouterr().out.endswith(" " * 5 + "\n")


def test_user_progbar_logger_is_the_one_used(model, capsys):
    """A ProgbarLogger in `callbacks` replaces the default one (one bar, not two), takes
    fit's verbose and epochs, and with verbose=0 draws nothing, as in Keras."""
    from kcompile import callbacks
    mine = callbacks.ProgbarLogger()
    model.fit(X, Y, batch_size=32, epochs=2, verbose=2, callbacks=[mine])
    lines = [ln for ln in final_lines(capsys.readouterr().out) if ln]
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert re.fullmatch(rf"4/4 - \d+s - \d+(ms|us|s)/step - accuracy: {NUM} - loss: {NUM}",
                        lines[1])
    assert mine.verbose == 2 and mine.epochs == 2 and mine.target == 4
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[callbacks.ProgbarLogger()])
    model.evaluate(X, Y, verbose=0, callbacks=[callbacks.ProgbarLogger()])
    assert capsys.readouterr().out == ""


def test_progbar_logger_in_a_hand_written_loop(capsys):
    """A CallbackList made by hand drives the bar as fit does (Keras' custom-loop use)."""
    from kcompile import callbacks
    cbs = callbacks.CallbackList([callbacks.ProgbarLogger()], verbose=1, epochs=1, steps=3)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    for step in range(3):
        cbs.on_train_batch_begin(step)
        cbs.on_train_batch_end(step, {"loss": 1.0 / (step + 1)})
    cbs.on_epoch_end(0, {"loss": 0.25})
    cbs.on_train_end()
    last = final_lines(capsys.readouterr().out)[-2]
    assert re.fullmatch(rf"3/3 {BAR} {TIME} - loss: 0\.2500", last), last
