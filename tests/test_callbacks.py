"""Callbacks against Keras 3's behaviour: the hooks fit/evaluate/predict call and in which
order, History, EarlyStopping, ModelCheckpoint, LearningRateScheduler, ReduceLROnPlateau,
CSVLogger, TerminateOnNaN, LambdaCallback, and the Keras 2 spellings of accuracy.

Monitoring callbacks are checked on scripted sequences of monitored values (a callback
placed before them rewrites the epoch logs, which the callbacks of one call share, as in
Keras), against expectations worked out by hand from Keras' rules.
"""
from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

from kcompile import callbacks, layers, models, optimizers
from kcompile.utils import to_categorical

N, D, K = 48, 4, 3
RNG = np.random.default_rng(7)
X = RNG.normal(size=(N, D)).astype(np.float32)
LABELS = RNG.integers(0, K, N)
Y = to_categorical(LABELS, K)


def classifier(metrics=("accuracy",), lr=0.05):
    m = models.Sequential([layers.Input((D,)), layers.Dense(K, activation="softmax")])
    m.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="categorical_crossentropy",
              metrics=list(metrics))
    return m


@pytest.fixture(scope="module")
def model():
    return classifier()


class Script(callbacks.Callback):
    """Rewrites the epoch logs with scripted values (it must come before the callbacks
    that read them), and records the weights at the end of every epoch."""

    def __init__(self, **series):
        super().__init__()
        self.series = series
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        for key, values in self.series.items():
            logs[key] = values[epoch]
        self.weights.append(self.model.get_weights())


def run(model, cbs, epochs, y=None, **kw):
    kw.setdefault("batch_size", 16)
    y = (Y if model.layers[-1].units == K else YR) if y is None else y
    return model.fit(X, y, epochs=epochs, verbose=0, callbacks=cbs, **kw)


# ------------------------------------------------------------------ hooks
class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def _rec(name):
        def hook(self, *args):
            logs = args[-1]
            self.calls.append((name, *args[:-1]))
            if name == "on_predict_batch_end":
                self.outputs = logs["outputs"]
            elif logs is not None:
                assert all(isinstance(v, float) for v in logs.values())
                self.last_logs = dict(logs)
        return hook

    for _h in ["on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
               "on_predict_begin", "on_predict_end"]:
        locals()[_h] = _rec(_h)
    for _h in ["on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
               "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
               "on_predict_batch_end", "on_batch_end"]:
        locals()[_h] = _rec(_h)
    del _h


def test_fit_calls_the_hooks_in_keras_order(model):
    rec = Recorder()
    h = model.fit(X, Y, batch_size=24, epochs=2, verbose=0, callbacks=[rec],
                  validation_data=(X[:30], Y[:30]), validation_batch_size=16)
    epoch = lambda e: [("on_epoch_begin", e),                               # noqa: E731
                       ("on_train_batch_begin", 0), ("on_train_batch_end", 0),
                       ("on_train_batch_begin", 1), ("on_train_batch_end", 1),
                       ("on_test_begin",),
                       ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                       ("on_test_batch_begin", 1), ("on_test_batch_end", 1),
                       ("on_test_end",), ("on_epoch_end", e)]
    assert rec.calls == [("on_train_begin",), *epoch(0), *epoch(1), ("on_train_end",)]
    assert rec.model is model
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 2}
    assert h.params == rec.params
    assert list(rec.last_logs) == ["accuracy", "loss", "val_accuracy", "val_loss"]


def test_keras2_on_batch_end_alias_is_called(model):
    seen = []
    cb = callbacks.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(batch))
    run(model, [cb], 1)
    assert seen == [0, 1, 2]


def test_evaluate_and_predict_call_their_hooks(model):
    rec = Recorder()
    model.evaluate(X, Y, batch_size=32, verbose=0, callbacks=[rec])
    assert rec.calls == [("on_test_begin",), ("on_test_batch_begin", 0),
                         ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
                         ("on_test_batch_end", 1), ("on_test_end",)]
    assert rec.params == {"verbose": 0, "epochs": 1, "steps": 2}
    rec = Recorder()
    pred = model.predict(X, batch_size=32, verbose=0, callbacks=[rec])
    assert rec.calls == [("on_predict_begin",), ("on_predict_batch_begin", 0),
                         ("on_predict_batch_end", 0), ("on_predict_batch_begin", 1),
                         ("on_predict_batch_end", 1), ("on_predict_end",)]
    np.testing.assert_array_equal(rec.outputs, pred[32:])


def test_stop_training_from_a_batch_hook_ends_the_epoch_and_the_fit(model):
    steps = []

    class StopAt(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)
            if batch == 1:
                self.model.stop_training = True
    h = run(model, [StopAt()], 5)
    assert steps == [0, 1] and h.epoch == [0]


def test_history_is_returned_and_set_on_the_model(model):
    h = run(model, [], 3, validation_split=0.25)
    assert model.history is h and h.epoch == [0, 1, 2]
    assert list(h.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in h.history.values())


def test_callbacks_must_be_callback_instances(model):
    with pytest.raises(TypeError):
        run(model, [lambda: None], 1)


def test_callback_list_can_be_passed_and_driven_by_hand(model):
    rec = Recorder()
    cbl = callbacks.CallbackList([rec], add_history=True, model=model, epochs=1, steps=3,
                                 verbose=0)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=cbl)
    assert rec.calls[0] == ("on_train_begin",) and rec.calls[-1] == ("on_train_end",)
    cbl.on_epoch_end(5, {"loss": np.float32(1.5)})
    assert model.history.history["loss"][-1] == 1.5


# ------------------------------------------------------------------ EarlyStopping
def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    m = classifier()
    script = Script(val_loss=[1.0, 0.8, 0.9, 0.85, 0.7, 0.6, 0.5, 0.4])
    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    h = run(m, [script, es], 8)
    # epoch 0 and 1 improve; 2 and 3 do not: wait reaches the patience at epoch 3
    assert h.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3
    assert es.best == 0.8 and es.best_epoch == 1
    for got, want in zip(m.get_weights(), script.weights[1]):
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(m.get_weights()[0], script.weights[3][0])


def test_early_stopping_without_restore_keeps_the_last_weights():
    m = classifier()
    script = Script(val_loss=[1.0, 1.1, 1.2])
    h = run(m, [script, callbacks.EarlyStopping(patience=1)], 3)
    assert h.epoch == [0, 1]
    np.testing.assert_array_equal(m.get_weights()[0], script.weights[1][0])


def test_early_stopping_patience_zero_and_epoch_zero_never_stops(model):
    h = run(model, [Script(loss=[5.0, 6.0, 7.0]), callbacks.EarlyStopping("loss")], 3)
    assert h.epoch == [0, 1]           # epoch 1 does not improve: stop there


def test_early_stopping_min_delta():
    m = classifier()
    # with min_delta=0.1, 0.95 is no improvement on 1.0 (it would be without)
    h = run(m, [Script(val_loss=[1.0, 0.95, 0.5]),
                callbacks.EarlyStopping(min_delta=0.1, patience=1)], 3)
    assert h.epoch == [0, 1]
    h = run(m, [Script(val_loss=[1.0, 0.95, 0.5]), callbacks.EarlyStopping(patience=1)], 3)
    assert h.epoch == [0, 1, 2]


def test_early_stopping_start_from_epoch():
    m = classifier()
    script = Script(val_loss=[5.0, 6.0, 3.0, 4.0, 2.0])
    es = callbacks.EarlyStopping(patience=0, start_from_epoch=2)
    h = run(m, [script, es], 5)
    # epochs 0 and 1 are not looked at (6.0 after 5.0 would have stopped at epoch 1)
    assert h.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3 and es.best == 3.0


def test_early_stopping_baseline():
    m = classifier()
    seq = [1.0, 1.1, 1.2, 1.3]
    h = run(m, [Script(val_loss=seq), callbacks.EarlyStopping(patience=2)], 4)
    assert h.epoch == [0, 1, 2]
    # nothing beats the baseline: the first epoch does not reset the wait
    h = run(m, [Script(val_loss=seq), callbacks.EarlyStopping(patience=2, baseline=0.5)], 4)
    assert h.epoch == [0, 1]
    # an epoch that beats the baseline resets it
    h = run(m, [Script(val_loss=[0.4, 0.45, 0.46, 0.47]),
                callbacks.EarlyStopping(patience=2, baseline=0.5)], 4)
    assert h.epoch == [0, 1, 2]


def test_early_stopping_mode_max_and_auto_for_accuracy(model):
    seq = [0.5, 0.6, 0.55, 0.58, 0.9]
    h1 = run(model, [Script(val_accuracy=seq),
                     callbacks.EarlyStopping("val_accuracy", patience=1)], 5)
    h2 = run(model, [Script(val_accuracy=seq),
                     callbacks.EarlyStopping("val_accuracy", patience=1, mode="max")], 5)
    assert h1.epoch == h2.epoch == [0, 1, 2]
    h3 = run(model, [Script(val_accuracy=seq),
                     callbacks.EarlyStopping("val_accuracy", patience=1, mode="min")], 5)
    assert h3.epoch == [0, 1]


def test_early_stopping_on_a_real_rising_validation_loss():
    """A model fitted to labels that disagree with the validation labels (each shifted to
    the next class): from zero weights, its validation loss goes up."""
    m = classifier(lr=0.5)
    w0 = [np.zeros_like(w) for w in m.get_weights()]
    m.set_weights(w0)
    y_val = np.roll(Y, 1, axis=1)
    es = callbacks.EarlyStopping(patience=1, restore_best_weights=True)
    h = m.fit(X, Y, epochs=6, batch_size=N, verbose=0, shuffle=False,
              validation_data=(X, y_val), callbacks=[es])
    vl = h.history["val_loss"]
    assert h.epoch == [0, 1] and vl[1] > vl[0] and es.best_epoch == 0
    m2 = classifier()
    m2.set_weights(w0)
    m2.optimizer.learning_rate = 0.5
    m2.fit(X, Y, epochs=1, batch_size=N, verbose=0, shuffle=False)
    np.testing.assert_allclose(m.get_weights()[0], m2.get_weights()[0], rtol=1e-6)


def test_monitor_not_logged_warns_as_keras(model):
    with pytest.warns(UserWarning, match="Early stopping conditioned on metric `val_loss` which "
                                         "is not available"):
        h = run(model, [callbacks.EarlyStopping()], 2)
    assert h.epoch == [0, 1]


def test_monitor_whose_direction_is_unknown_raises(model):
    with pytest.raises(ValueError, match="maximized or minimized"):
        run(model, [callbacks.EarlyStopping("val_something")], 1)


# ------------------------------------------------------------------ Keras 2 names
@pytest.fixture(scope="module")
def acc_model():
    return classifier(metrics=["acc"])


def test_acc_metric_logs_acc_and_val_acc(acc_model):
    h = run(acc_model, [], 1, validation_data=(X, Y))
    assert sorted(h.history) == ["acc", "loss", "val_acc", "val_loss"]
    loss, acc = acc_model.evaluate(X, Y, verbose=0)
    assert acc == pytest.approx(np.mean(acc_model.predict(X, verbose=0).argmax(1) == LABELS))


@pytest.mark.parametrize("metric, monitor", [("acc", "val_accuracy"), ("accuracy", "val_acc"),
                                             ("acc", "accuracy")])
def test_other_spelling_of_accuracy_is_monitored_with_one_warning(metric, monitor, acc_model,
                                                                  model):
    m = acc_model if metric == "acc" else model
    logged = monitor.replace("accuracy", "acc") if metric == "acc" else \
        monitor.replace("val_acc", "val_accuracy")
    es = callbacks.EarlyStopping(monitor, patience=1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = run(m, [Script(**{logged: [0.5, 0.4, 0.3, 0.2]}), es], 4,
                validation_data=(X, Y))
    assert h.epoch == [0, 1]             # max mode from the name: 0.4 is no improvement
    msgs = [str(x.message) for x in w if issubclass(x.category, UserWarning)]
    assert len(msgs) == 1 and logged in msgs[0] and monitor in msgs[0]


def test_reduce_lr_and_checkpoint_accept_the_other_spelling_too(acc_model, tmp_path):
    acc_model.optimizer.learning_rate = 0.05
    rl = callbacks.ReduceLROnPlateau("val_accuracy", patience=1, factor=0.5)
    with pytest.warns(UserWarning, match="val_acc"):
        run(acc_model, [Script(val_acc=[0.5, 0.4, 0.3]), rl], 3, validation_data=(X, Y))
    assert float(acc_model.optimizer.learning_rate) == pytest.approx(0.05 * 0.25)


# ------------------------------------------------------------------ ModelCheckpoint
class FakeSaves:
    """Stands in for model.save / model.save_weights: records the calls, writes a file."""

    def __init__(self, m, monkeypatch):
        self.calls = []
        self.model = m
        for name in ("save", "save_weights"):
            monkeypatch.setattr(m, name, self._saver(name), raising=False)

    def _saver(self, name):
        def save(filepath, overwrite=True, **kwargs):
            self.calls.append((name, str(filepath)))
            with open(filepath, "wb") as f:
                np.save(f, self.model.get_weights()[0])
        return save


def test_checkpoint_every_epoch_formats_the_path(model, tmp_path, monkeypatch):
    fake = FakeSaves(model, monkeypatch)
    path = str(tmp_path / "sub" / "w-{epoch:02d}-{val_loss:.2f}.weights.h5")
    script = Script(val_loss=[0.5, 0.25, 0.125])
    run(model, [script, callbacks.ModelCheckpoint(path, save_weights_only=True)], 3)
    assert fake.calls == [("save_weights", str(tmp_path / "sub" / f"w-{e:02d}-{v:.2f}.weights.h5"))
                          for e, v in [(1, 0.5), (2, 0.25), (3, 0.125)]]


def test_checkpoint_save_best_only_keeps_the_best(model, tmp_path, monkeypatch):
    fake = FakeSaves(model, monkeypatch)
    path = str(tmp_path / "best.keras")
    script = Script(val_loss=[0.5, 0.7, 0.3, 0.4])
    mc = callbacks.ModelCheckpoint(path, save_best_only=True)
    run(model, [script, mc], 4)
    assert fake.calls == [("save", path), ("save", path)]      # epochs 1 and 3
    assert mc.best == 0.3
    np.testing.assert_array_equal(np.load(path), script.weights[2][0])


def test_checkpoint_initial_value_threshold_mode_max_and_verbose(model, tmp_path, monkeypatch,
                                                                 capsys):
    fake = FakeSaves(model, monkeypatch)
    path = str(tmp_path / "m-{epoch}.keras")
    mc = callbacks.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True,
                                   initial_value_threshold=0.6, verbose=1)
    run(model, [Script(val_accuracy=[0.5, 0.7, 0.65]), mc], 3)
    assert fake.calls == [("save", str(tmp_path / "m-2.keras"))]
    out = capsys.readouterr().out
    assert "Epoch 1: val_accuracy did not improve from 0.60000" in out
    assert "Epoch 2: val_accuracy improved from 0.60000 to 0.70000, saving model to" in out


def test_checkpoint_save_freq_in_batches(model, tmp_path, monkeypatch):
    fake = FakeSaves(model, monkeypatch)
    path = str(tmp_path / "e{epoch}-b{batch}.weights.h5")
    run(model, [callbacks.ModelCheckpoint(path, save_weights_only=True, save_freq=2)], 2)
    # 3 batches per epoch: saves after batches 2 (epoch 1), 4 = epoch 2 batch 1, 6 = e2 b3
    assert [p.rsplit("/", 1)[1] for _, p in fake.calls] == [
        "e1-b2.weights.h5", "e2-b1.weights.h5", "e2-b3.weights.h5"]


def test_checkpoint_path_checks():
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        callbacks.ModelCheckpoint("w.h5", save_weights_only=True)
    with pytest.raises(ValueError, match=r"\.keras"):
        callbacks.ModelCheckpoint("model.ckpt")
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.ModelCheckpoint("m.keras", save_freq="batch")


def test_checkpoint_missing_key_in_path(model, tmp_path, monkeypatch):
    FakeSaves(model, monkeypatch)
    with pytest.raises(KeyError, match="Failed to format"):
        run(model, [callbacks.ModelCheckpoint(str(tmp_path / "{val_loss}.keras"))], 1)


def test_checkpoint_with_the_real_save_weights(tmp_path):
    m = classifier()
    path = str(tmp_path / "best.weights.h5")
    script = Script(val_loss=[0.5, 0.3, 0.9])
    run(m, [script, callbacks.ModelCheckpoint(path, save_best_only=True,
                                              save_weights_only=True)], 3)
    m.load_weights(path)
    np.testing.assert_array_equal(m.get_weights()[0], script.weights[1][0])


# ------------------------------------------------------------------ learning rate
def linear_sgd(lr=0.1):
    m = models.Sequential([layers.Input((D,)), layers.Dense(1, use_bias=False)])
    m.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="mse")
    return m


def sgd_step(w, lr, x, y):
    """One SGD step on the mean squared error of x @ w against y."""
    grad = 2.0 / len(x) * x.T @ (x @ w - y)
    return w - lr * grad


YR = (X @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)).astype(np.float32)


def test_learning_rate_scheduler_changes_the_compiled_step_without_recompiling():
    m = linear_sgd()
    m.fit(X, YR, batch_size=N, epochs=1, verbose=0)                 # compiles
    n_exe = len(m._executables)
    w = m.get_weights()[0].astype(np.float64)
    schedule = [0.02, 0.005, 0.3]
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: schedule[epoch])
    h = m.fit(X, YR, batch_size=N, epochs=3, verbose=0, shuffle=False, callbacks=[sched])
    assert len(m._executables) == n_exe
    for lr in schedule:
        w = sgd_step(w, lr, X.astype(np.float64), YR.astype(np.float64))
    np.testing.assert_allclose(m.get_weights()[0], w, rtol=2e-5, atol=1e-6)
    assert h.history["learning_rate"] == pytest.approx(schedule)
    assert float(m.optimizer.learning_rate) == pytest.approx(0.3)


def test_learning_rate_assignment_takes_effect_in_the_next_step():
    m = linear_sgd()
    m.train_on_batch(X, YR)
    n_exe = len(m._executables)
    w = m.get_weights()[0].astype(np.float64)
    m.optimizer.learning_rate = 0.01
    m.train_on_batch(X, YR)
    np.testing.assert_allclose(m.get_weights()[0], sgd_step(w, 0.01, X, YR), rtol=2e-5,
                               atol=1e-6)
    assert len(m._executables) == n_exe


def test_learning_rate_scheduler_old_api_verbose_and_type_check(capsys):
    m = linear_sgd()
    h = m.fit(X, YR, batch_size=N, epochs=2, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1),
                                                         verbose=1)])
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05])
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.05." in \
        capsys.readouterr().out
    with pytest.raises(ValueError, match="should be a float"):
        m.fit(X, YR, epochs=1, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(lambda epoch, lr: 1)])


def test_reduce_lr_on_plateau_follows_keras_rules():
    m = linear_sgd(lr=0.1)
    rl = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.02)
    h = run(m, [Script(val_loss=[1.0] * 7), rl], 7)
    # reduce at epochs 2, 4, 6 (wait 2 after a cooldown epoch), floored at min_lr; the
    # logged rate is the one the epoch trained with
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert float(m.optimizer.learning_rate) == pytest.approx(0.02)
    assert list(h.history)[-1] == "learning_rate"


def test_reduce_lr_improvement_resets_and_min_delta():
    m = linear_sgd(lr=0.1)
    rl = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, min_delta=0.05)
    h = run(m, [Script(loss=[1.0, 0.9, 0.87, 0.7]), rl], 4)
    # 0.9 improves by more than 0.05; 0.87 does not: reduce at epoch 2; 0.7 improves
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_verbose_message(capsys):
    m = linear_sgd(lr=0.1)
    run(m, [Script(val_loss=[1.0, 1.0]), callbacks.ReduceLROnPlateau(patience=1, verbose=1)], 2)
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to" in capsys.readouterr().out


# ------------------------------------------------------------------ CSVLogger
def test_csv_logger_writes_one_row_per_epoch(model, tmp_path):
    path = tmp_path / "log.csv"
    h = run(model, [callbacks.CSVLogger(str(path))], 2, validation_data=(X, Y))
    raw = path.read_bytes().decode()
    assert raw.startswith("epoch,accuracy,loss,val_accuracy,val_loss\r\n")
    rows = list(csv.DictReader(raw.splitlines()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert [float(r[key]) for r in rows] == h.history[key]
    # append=True adds rows without a second header
    run(model, [callbacks.CSVLogger(str(path), append=True)], 1, validation_data=(X, Y))
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[3].startswith("0,")


def test_csv_logger_separator_and_na_for_missing_validation(model, tmp_path):
    path = tmp_path / "log.tsv"
    run(model, [callbacks.CSVLogger(str(path), separator="\t")], 1)
    header, row = path.read_text().splitlines()
    assert header.split("\t") == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert row.split("\t")[3:] == ["NA", "NA"]


# ------------------------------------------------------------------ TerminateOnNaN, Lambda
def test_terminate_on_nan_stops_at_the_nan_batch(capsys):
    m = linear_sgd()
    xb = X.copy()
    xb[20] = np.nan                      # in the second batch of 16
    steps = []
    cb = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))
    h = m.fit(xb, YR, batch_size=16, epochs=3, verbose=0, shuffle=False,
              callbacks=[callbacks.TerminateOnNaN(), cb])
    assert steps == [0, 1] and h.epoch == [0] and np.isnan(h.history["loss"][0])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        m.fit(xb, YR, batch_size=16, epochs=1, verbose=0, shuffle=False,
              callbacks=[callbacks.TerminateOnNaN(raise_error=True)])


def test_lambda_callback(model):
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("begin"),
        on_epoch_end=lambda epoch, logs: events.append((epoch, sorted(logs))),
        on_train_end=lambda logs: events.append("end"),
        on_test_end=lambda logs: events.append("test_end"))
    run(model, [cb], 2)
    assert events == ["begin", (0, ["accuracy", "loss"]), (1, ["accuracy", "loss"]), "end"]
    model.evaluate(X, Y, verbose=0, callbacks=[cb])
    assert events[-1] == "test_end"


def test_signatures_match_keras():
    import inspect

    def params(cls):
        return [(p.name, p.default) for p in inspect.signature(cls).parameters.values()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    E = inspect.Parameter.empty
    assert params(callbacks.EarlyStopping) == [
        ("monitor", "val_loss"), ("min_delta", 0), ("patience", 0), ("verbose", 0),
        ("mode", "auto"), ("baseline", None), ("restore_best_weights", False),
        ("start_from_epoch", 0)]
    assert params(callbacks.ModelCheckpoint) == [
        ("filepath", E), ("monitor", "val_loss"), ("verbose", 0), ("save_best_only", False),
        ("save_weights_only", False), ("mode", "auto"), ("save_freq", "epoch"),
        ("initial_value_threshold", None)]
    assert params(callbacks.LearningRateScheduler) == [("schedule", E), ("verbose", 0)]
    assert params(callbacks.ReduceLROnPlateau) == [
        ("monitor", "val_loss"), ("factor", 0.1), ("patience", 10), ("verbose", 0),
        ("mode", "auto"), ("min_delta", 1e-4), ("cooldown", 0), ("min_lr", 0.0)]
    assert params(callbacks.CSVLogger) == [("filename", E), ("separator", ","),
                                           ("append", False)]
