"""callbacks.TensorBoard: the event files are read back with TensorBoard's own reader
(tensorboard's EventAccumulator) and must hold what Keras 3 writes: per-epoch scalars
in train/ and validation/, batch scalars every update_freq batches, weight histograms
every histogram_freq epochs, and the model config for the graph view."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator  # in the test extra

from kcompile import callbacks, layers, models, optimizers
from kcompile.optimizers import schedules

RNG = np.random.default_rng(11)
X = RNG.normal(size=(20, 3)).astype(np.float32)
Y = RNG.normal(size=(20, 2)).astype(np.float32)


def read(folder):
    acc = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.SCALARS: 0,
                                    event_accumulator.HISTOGRAMS: 0,
                                    event_accumulator.TENSORS: 0,
                                    event_accumulator.IMAGES: 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def make_model(optimizer="sgd"):
    model = models.Sequential([layers.Input((3,)), layers.Dense(2, name="dense")])
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def test_epoch_scalars_match_the_history(tmp_path):
    model = make_model(optimizers.SGD(schedules.ExponentialDecay(0.1, 2, 0.5)))
    history = model.fit(X, Y, batch_size=4, epochs=3, verbose=0, validation_data=(X, Y),
                        callbacks=[callbacks.TensorBoard(tmp_path)])
    train, val = read(tmp_path / "train"), read(tmp_path / "validation")
    assert set(train.Tags()["scalars"]) == {"epoch_loss", "epoch_mae", "epoch_learning_rate"}
    for name in ("loss", "mae"):
        got = scalars(train, f"epoch_{name}")
        assert [s for s, _ in got] == [0, 1, 2]
        np.testing.assert_allclose([v for _, v in got], history.history[name], rtol=1e-6)
        got = scalars(val, f"epoch_{name}")
        np.testing.assert_allclose([v for _, v in got], history.history[f"val_{name}"],
                                   rtol=1e-6)
        # evaluation inside fit: by optimizer iterations (5 batches an epoch)
        got = scalars(val, f"evaluation_{name}_vs_iterations")
        assert [s for s, _ in got] == [5, 10, 15]
    # the schedule's rate at the end of each epoch: 0.1 * 0.5 ** (iterations / 2)
    np.testing.assert_allclose([v for _, v in scalars(train, "epoch_learning_rate")],
                               [0.1 * 0.5 ** (5 * (e + 1) / 2) for e in range(3)], rtol=1e-5)
    assert not train.Tags()["histograms"]


def test_batch_scalars_every_update_freq_batches(tmp_path):
    class BatchLogs(callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(logs["loss"])
    seen = BatchLogs()
    model = make_model()
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0, shuffle=False,
              callbacks=[seen, callbacks.TensorBoard(tmp_path, update_freq=3)])
    got = scalars(read(tmp_path / "train"), "batch_loss")
    assert [s for s, _ in got] == [3, 6, 9]          # 10 batches in all, counted from 1
    np.testing.assert_allclose([v for _, v in got], [seen.losses[i - 1] for i in (3, 6, 9)],
                               rtol=1e-6)
    every = scalars(read_fresh(tmp_path, update_freq="batch"), "batch_mae")
    assert [s for s, _ in every] == list(range(1, 11))


def read_fresh(tmp_path, **kwargs):
    folder = tmp_path / "again"
    make_model().fit(X, Y, batch_size=4, epochs=2, verbose=0,
                     callbacks=[callbacks.TensorBoard(folder, **kwargs)])
    return read(folder / "train")


def test_histograms_every_histogram_freq_epochs(tmp_path):
    model = make_model()
    weights = {}

    class Keep(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights[epoch] = self.model.get_weights()
    model.fit(X, Y, batch_size=4, epochs=5, verbose=0,
              callbacks=[Keep(), callbacks.TensorBoard(tmp_path, histogram_freq=2,
                                                       write_images=True)])
    train = read(tmp_path / "train")
    assert set(train.Tags()["histograms"]) == {"dense/kernel/histogram", "dense/bias/histogram"}
    kernel = train.Histograms("dense/kernel/histogram")
    assert [h.step for h in kernel] == [0, 2, 4]
    for h in kernel:
        w = weights[h.step][0]
        v = h.histogram_value
        assert v.num == w.size
        np.testing.assert_allclose([v.min, v.max, v.sum], [w.min(), w.max(), w.sum()],
                                   rtol=1e-5)
    assert set(train.Tags()["images"]) == {"dense/kernel/image", "dense/bias/image"}


def test_graph_is_the_model_config(tmp_path):
    model = make_model()
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path)])
    tensors = read(tmp_path / "train").Tensors("keras")
    assert len(tensors) == 1 and tensors[0].step == 0
    config = json.loads(tensors[0].tensor_proto.string_val[0])
    assert config == json.loads(model.to_json())
    nothing = tmp_path / "no_graph"
    model.fit(X, Y, epochs=1, verbose=0,
              callbacks=[callbacks.TensorBoard(nothing, write_graph=False)])
    assert "keras" not in read(nothing / "train").Tags()["tensors"]


def test_evaluate_alone_writes_evaluation_scalars(tmp_path):
    model = make_model()
    model.fit(X, Y, batch_size=5, epochs=1, verbose=0)
    result = model.evaluate(X, Y, verbose=0, return_dict=True,
                            callbacks=[callbacks.TensorBoard(tmp_path)])
    got = scalars(read(tmp_path / "validation"), "evaluation_loss_vs_iterations")
    assert got == [(4, pytest.approx(result["loss"], rel=1e-6))]


def test_missing_writer_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r'kcompile\[tensorboard\]'):
        callbacks.TensorBoard("logs")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="update_freq"):
        callbacks.TensorBoard(tmp_path, update_freq=0)
    with pytest.raises(ValueError, match="histogram_freq"):
        callbacks.TensorBoard(tmp_path, histogram_freq=-1)
    with pytest.raises(NotImplementedError, match="profil"):
        callbacks.TensorBoard(tmp_path, profile_batch=2)
    with pytest.raises(NotImplementedError, match="embedding"):
        callbacks.TensorBoard(tmp_path, embeddings_freq=1)


def test_steps_per_second(tmp_path):
    make_model().fit(X, Y, batch_size=4, epochs=2, verbose=0,
                     callbacks=[callbacks.TensorBoard(tmp_path, update_freq=2,
                                                      write_steps_per_second=True)])
    train = read(tmp_path / "train")
    per_epoch = scalars(train, "epoch_steps_per_second")
    per_batch = scalars(train, "batch_steps_per_second")
    assert [s for s, _ in per_epoch] == [0, 1] and [s for s, _ in per_batch] == [2, 4, 6, 8, 10]
    assert all(v > 0 for _, v in per_epoch + per_batch)
