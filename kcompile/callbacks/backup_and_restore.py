"""BackupAndRestore: resume a fit() that was interrupted, as Keras 3 does.

Every epoch (or every `save_freq` batches) the model's weights, optimizer state and
random-number state go to `backup_dir/latest.weights.h5`, and the epoch reached to
`backup_dir/training_metadata.json`. A later fit() with the same callback loads them
when training begins and starts at the saved epoch (a save made mid-epoch restarts
that epoch from its first batch with the saved weights, as Keras does). Each file is
written to a temporary name and renamed, so an interruption while saving leaves the
previous backup whole. When training ends normally the folder is deleted
(`delete_checkpoint=True`).
"""
from __future__ import annotations

import json
import os
import shutil

from ..saving import files
from .core import Callback


class BackupAndRestore(Callback):
    """Back up and restore the training state (keras.callbacks.BackupAndRestore).

    Args:
        backup_dir: the folder of the backup (one per training job).
        save_freq: "epoch", or an integer: save every this many batches.
        double_checkpoint: keep the previous backup too (`*.bkp`), used when the latest
            one cannot be read.
        delete_checkpoint: delete the backup when training finishes.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False,
                 delete_checkpoint=True):
        super().__init__()
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        self._current_epoch = 0
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        self.backup_dir = os.fspath(backup_dir)
        self._weights_path = os.path.join(self.backup_dir, "latest.weights.h5")
        self._training_metadata_path = os.path.join(self.backup_dir, "training_metadata.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 1):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: "
                             f"save_freq={save_freq}. Expected either 'epoch' or an integer "
                             f"value.")

    def on_train_begin(self, logs=None):
        try:
            self._load_model()
        except (OSError, ValueError) as e:
            # The latest backup cannot be read: fall back on the previous one, if kept.
            if not os.path.exists(self._prev_weights_path):
                raise e
            shutil.copyfile(self._prev_weights_path, self._weights_path)
            if os.path.exists(self._prev_training_metadata_path):
                shutil.copyfile(self._prev_training_metadata_path, self._training_metadata_path)
            elif os.path.exists(self._training_metadata_path):
                os.remove(self._training_metadata_path)
            self._load_model()

    def _load_model(self):
        if not getattr(self.model, "built", True):
            raise ValueError(f"To use the BackupAndRestore callback, you model must be built "
                             f"before you call `fit()`. Model {self.model} is unbuilt. You can "
                             f"build it beforehand by calling it on a batch of data.")
        if os.path.exists(self._weights_path):
            self.model.load_weights(self._weights_path)
        if os.path.exists(self._training_metadata_path):
            with open(self._training_metadata_path) as f:
                training_metadata = json.loads(f.read())
            self.model._initial_epoch = training_metadata["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        if self.save_freq == "epoch":
            self._save_model()

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model()

    def on_epoch_begin(self, epoch, logs=None):
        # A resumed fit begins past epoch 0: a save within its first epoch records that
        # epoch, not the count of epochs this callback has ended.
        self._current_epoch = epoch

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._weights_path):
            shutil.copyfile(self._weights_path, self._prev_weights_path)
        if self.double_checkpoint and os.path.exists(self._training_metadata_path):
            shutil.copyfile(self._training_metadata_path, self._prev_training_metadata_path)
        self.model.save_weights(self._weights_path, overwrite=True)     # written atomically
        with files.atomic_path(self._training_metadata_path) as tmp:
            with open(tmp, "w") as f:
                f.write(json.dumps({"epoch": self._current_epoch,
                                    "batch": self._last_batch_seen}))

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if batch <= self._last_batch_seen:       # a new epoch
            add_batches = batch + 1
        else:
            add_batches = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += add_batches
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)
