"""TensorBoard: training logs as TensorBoard event files, as keras.callbacks.TensorBoard
writes them, through the tensorboardX writer (the optional extra
`pip install "kcompile[tensorboard]"`; no TensorFlow needed).

Layout and tags as Keras 3: `log_dir/train` and `log_dir/validation` hold the
scalars `epoch_<metric>` (step = epoch; the train side adds `epoch_learning_rate`),
with `update_freq=N` the train side also `batch_<metric>` every N batches (step =
the batch count since fit began), evaluate() inside or outside fit adds
`evaluation_<metric>_vs_iterations` (step = optimizer iterations) to the validation
side; `histogram_freq=N` adds every layer weight's histogram `<weight path>/histogram`
every N epochs (and `<weight path>/image` with write_images); write_graph writes the
model's JSON config under the tag `keras` for TensorBoard's graph plugin, as Keras does
(the compiled program itself is not written). As Keras' writer, events reach the
files when a writer closes (at the end of fit, or of an evaluate() outside fit) or
every two minutes meanwhile.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .core import Callback

_EXTRA = ('The TensorBoard callback writes event files with the tensorboardX package: '
          'install it with `pip install "kcompile[tensorboard]"` (or `pip install tensorboardX`)')


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(f"{_EXTRA}. ({e})") from e
    return SummaryWriter


class TensorBoard(Callback):
    """Writes the training logs for TensorBoard (keras.callbacks.TensorBoard).

    Args:
        log_dir: the folder of the logs (`train/` and `validation/` inside).
        histogram_freq: every how many epochs to write the weights' histograms (0: never).
        write_graph: write the model's config for TensorBoard's graph view.
        write_images: write the weights as images too (with histogram_freq).
        write_steps_per_second: log the training speed (steps per second) every epoch.
        update_freq: "epoch", "batch", or N: also write the batch logs every N batches.
        profile_batch, embeddings_freq, embeddings_metadata: accepted at their defaults
            only (profiling and the embedding projector need TensorFlow).
    """

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0,
                 embeddings_freq=0, embeddings_metadata=None):
        super().__init__()
        self._writer_class = _summary_writer()
        if update_freq != "epoch" and update_freq != "batch" and (
                isinstance(update_freq, bool) or not isinstance(update_freq, int)
                or update_freq < 1):
            raise ValueError(f"`update_freq` must be 'epoch', 'batch' or a positive integer. "
                             f"Received: update_freq={update_freq!r}")
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, int) or \
                histogram_freq < 0:
            raise ValueError(f"`histogram_freq` must be a non-negative integer. Received: "
                             f"histogram_freq={histogram_freq!r}")
        if profile_batch not in (0, None, (0, 0), [0, 0]):
            raise NotImplementedError(f"TensorBoard(profile_batch={profile_batch!r}): "
                                      f"profiling is not supported by kcompile; leave "
                                      f"profile_batch=0")
        if embeddings_freq or embeddings_metadata is not None:
            raise NotImplementedError("TensorBoard(embeddings_freq=...): the embedding "
                                      "projector is not supported by kcompile")
        self.log_dir = str(os.fspath(log_dir))
        self.histogram_freq = histogram_freq
        self.write_graph = write_graph
        self.write_images = write_images
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.embeddings_freq = embeddings_freq
        self.embeddings_metadata = embeddings_metadata
        self._writers = {}
        self._in_fit = False
        self._global_train_batch = 0
        self._previous_epoch_iterations = 0
        self._epoch_start_time = 0.0
        self._batch_start_time = 0.0

    # -- writers ------------------------------------------------------------------------
    def _writer(self, side):
        if side not in self._writers:
            folder = os.path.join(self.log_dir, "train" if side == "train" else "validation")
            self._writers[side] = self._writer_class(logdir=folder)
        return self._writers[side]

    def _close_writers(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def set_model(self, model):
        super().set_model(model)
        self._close_writers()
        if self.write_graph:
            self._write_keras_model_summary()

    def _write_keras_model_summary(self):
        """The model's JSON config as the tensor summary TensorBoard's graph plugin reads
        (plugin `graph_keras_model`, tag `keras`, step 0), as Keras writes it."""
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboardX.proto.tensor_pb2 import TensorProto
        from tensorboardX.proto.types_pb2 import DT_STRING
        to_json = getattr(self.model, "to_json", None)
        if type(self.model).__name__ not in ("Functional", "Sequential") or to_json is None:
            return
        try:
            config = to_json()
        except Exception:      # a model that cannot be configured has no graph to show
            return
        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name="graph_keras_model", content=b"1"))
        tensor = TensorProto(dtype=DT_STRING, string_val=[config.encode("utf-8")])
        summary = Summary(value=[Summary.Value(tag="keras", metadata=metadata, tensor=tensor)])
        self._writer("train")._get_file_writer().add_summary(summary, 0)

    # -- training ---------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        self._previous_epoch_iterations = 0
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False
        self._close_writers()

    def on_epoch_begin(self, epoch, logs=None):
        if self.write_steps_per_second:
            self._previous_epoch_iterations = int(self.model.optimizer.iterations.numpy())
            self._epoch_start_time = time.time()

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        if self.write_steps_per_second:
            self._batch_start_time = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        writer, step = self._writer("train"), self._global_train_batch
        if self.write_steps_per_second:
            elapsed = max(time.time() - self._batch_start_time, 1e-9)
            writer.add_scalar("batch_steps_per_second", 1.0 / elapsed, step)
        for name, value in (logs or {}).items():
            writer.add_scalar(f"batch_{name}", float(value), step)

    def on_epoch_end(self, epoch, logs=None):
        self._log_epoch_metrics(epoch, logs)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._log_weights(epoch)

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and logs:
            writer = self._writer("val")
            step = int(optimizer.iterations.numpy())
            for name, value in logs.items():
                writer.add_scalar(f"evaluation_{name}_vs_iterations", float(value), step)
        if not self._in_fit:
            # evaluate() on its own: no training end will come to close the files (closing
            # is what empties the writer's queue into them; its flush() does not).
            self._close_writers()

    def _log_epoch_metrics(self, epoch, logs):
        if not logs:
            return
        train_logs = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val_logs = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            train_logs["learning_rate"] = float(np.asarray(optimizer.learning_rate))
        if self.write_steps_per_second:
            done = int(optimizer.iterations.numpy()) - self._previous_epoch_iterations
            train_logs["steps_per_second"] = done / max(time.time() - self._epoch_start_time,
                                                        1e-9)
        for side, side_logs in (("train", train_logs), ("val", val_logs)):
            if side_logs:
                writer = self._writer(side)
                for name, value in side_logs.items():
                    writer.add_scalar(f"epoch_{name}", float(value), epoch)

    def _log_weights(self, epoch):
        writer = self._writer("train")
        for layer in self.model.layers:
            for weight in layer.weights:
                name = weight.path.replace(":", "_")
                value = np.asarray(weight.numpy(), np.float64)
                writer.add_histogram(f"{name}/histogram", value, epoch)
                if self.write_images:
                    image = _weight_image(value)
                    if image is not None:
                        writer.add_image(f"{name}/image", image, epoch, dataformats="NHWC")


def _weight_image(w):
    """A weight as Keras draws it: a vector as one row, a matrix with its longer side
    across, a 3-D kernel as one image per output channel; others are not drawn."""
    w = np.squeeze(w)
    if w.ndim == 1:
        w = w.reshape(1, w.shape[0], 1, 1)
    elif w.ndim == 2:
        if w.shape[0] > w.shape[1]:
            w = w.T
        w = w.reshape(1, w.shape[0], w.shape[1], 1)
    elif w.ndim == 3:
        w = np.transpose(w, (2, 0, 1))[..., None]
    if w.ndim != 4 or w.shape[-1] not in (1, 3, 4):
        return None
    lo, hi = float(w.min()), float(w.max())
    return ((w - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
