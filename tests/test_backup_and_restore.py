"""callbacks.BackupAndRestore: a fit() interrupted by an exception and run again with
the same backup folder resumes where the backup was made (weights, optimizer state,
epoch), as Keras 3 does; the files are whole at any interruption; the folder goes
away when training ends (delete_checkpoint)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kcompile import callbacks, layers, models, optimizers

RNG = np.random.default_rng(7)
X = RNG.normal(size=(24, 5)).astype(np.float32)
Y = RNG.normal(size=(24, 2)).astype(np.float32)


def fresh_model():
    model = models.Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh",
                                                                 kernel_initializer="ones"),
                               layers.Dense(2, kernel_initializer="ones")])
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    return model


class Interrupt(callbacks.Callback):
    """Raises at the start of batch `batch` of epoch `epoch`, as a crash would."""

    def __init__(self, epoch, batch=0):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("interrupted")


class Epochs(callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def fit(model, backup, *extra, epochs=4):
    return model.fit(X, Y, batch_size=6, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=[backup, *extra])


def test_resume_after_interruption_matches_uninterrupted_training(tmp_path):
    straight = fresh_model()
    straight.fit(X, Y, batch_size=6, epochs=4, shuffle=False, verbose=0)

    backup_dir = tmp_path / "backup"
    model = fresh_model()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, callbacks.BackupAndRestore(backup_dir), Interrupt(epoch=2, batch=1))
    # the backup is of the end of epoch 2 (index 1)
    meta = json.loads((backup_dir / "training_metadata.json").read_text())
    assert meta == {"epoch": 2, "batch": 0}
    assert sorted(os.listdir(backup_dir)) == ["latest.weights.h5", "training_metadata.json"]

    resumed = fresh_model()          # a new process: fresh weights and optimizer
    epochs = Epochs()
    history = fit(resumed, callbacks.BackupAndRestore(backup_dir), epochs)
    assert epochs.seen == [2, 3]
    assert history.epoch == [2, 3]
    assert int(resumed.optimizer.iterations.numpy()) == 16
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert not backup_dir.exists()          # delete_checkpoint=True after a finished fit


def test_save_freq_in_batches_restarts_the_epoch_with_the_saved_weights(tmp_path):
    """As Keras 3: a mid-epoch backup records the epoch in progress; the next fit begins
    that epoch again from its first batch, from the weights saved at that batch."""
    backup_dir = tmp_path / "b"
    model = fresh_model()
    saved = {}

    class Remember(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            saved[int(self.model.optimizer.iterations.numpy())] = self.model.get_weights()

    with pytest.raises(RuntimeError):
        fit(model, callbacks.BackupAndRestore(backup_dir, save_freq=3, delete_checkpoint=False),
            Remember(), Interrupt(epoch=1, batch=3))
    # 4 batches an epoch, saves after batches 3, 6 (epoch 1's 2nd batch): 6 steps done
    meta = json.loads((backup_dir / "training_metadata.json").read_text())
    assert meta == {"epoch": 1, "batch": 1}
    resumed = fresh_model()
    epochs = Epochs()

    class Check(callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = self.model.get_weights()
            self.iterations = int(self.model.optimizer.iterations.numpy())
    check = Check()
    fit(resumed, callbacks.BackupAndRestore(backup_dir, save_freq=3, delete_checkpoint=False),
        check, epochs, epochs=3)
    assert check.iterations == 6 and epochs.seen == [1, 2]
    for a, b in zip(saved[6], check.weights):
        np.testing.assert_array_equal(a, b)
    assert backup_dir.exists()              # delete_checkpoint=False keeps it


def test_double_checkpoint_falls_back_when_the_latest_is_unreadable(tmp_path):
    backup_dir = tmp_path / "b"
    model = fresh_model()
    with pytest.raises(RuntimeError):
        fit(model, callbacks.BackupAndRestore(backup_dir, double_checkpoint=True),
            Interrupt(epoch=3))
    assert (backup_dir / "latest.weights.h5.bkp").exists()
    (backup_dir / "latest.weights.h5").write_bytes(b"garbage")      # a damaged disk
    epochs = Epochs()
    fit(fresh_model(), callbacks.BackupAndRestore(backup_dir, double_checkpoint=True), epochs)
    assert epochs.seen == [2, 3]            # the previous backup: end of epoch index 1


def test_an_interrupted_save_leaves_the_previous_backup_whole(tmp_path, monkeypatch):
    backup_dir = tmp_path / "b"
    model = fresh_model()
    with pytest.raises(RuntimeError):
        fit(model, callbacks.BackupAndRestore(backup_dir), Interrupt(epoch=2))
    before = {p: (backup_dir / p).read_bytes() for p in os.listdir(backup_dir)}

    import h5py

    def crash(*args, **kwargs):      # the disk fills while the weights are being written
        raise OSError("No space left on device")
    model2 = fresh_model()
    backup = callbacks.BackupAndRestore(backup_dir)
    monkeypatch.setattr(h5py.Group, "create_dataset", crash)
    with pytest.raises(OSError, match="No space"):
        fit(model2, backup)
    monkeypatch.undo()
    after = {p: (backup_dir / p).read_bytes() for p in os.listdir(backup_dir)}
    assert after == before                  # no temporary file left, nothing half-written


def test_bad_arguments():
    with pytest.raises(ValueError, match="Empty `backup_dir`"):
        callbacks.BackupAndRestore("")
    with pytest.raises(ValueError, match="Invalid value for argument `save_freq`"):
        callbacks.BackupAndRestore("b", save_freq="batch")
