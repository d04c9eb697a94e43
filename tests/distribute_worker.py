"""A training script that tests/test_distribute.py runs as one process and under
`mpiexec -n 2`: the same file, unchanged, both ways.

    python distribute_worker.py MODEL SOURCE BATCH OUT [fail|stuck|die]

MODEL is dense (W1's layers: 784-512-256-10, Adam), lstm (Embedding-LSTM-Dense),
varlen (LSTM on a time axis declared None), bn (Dense-BatchNormalization-Dense) or
bnsync (the same, DataParallel(sync_batch_norm=True)); SOURCE is arrays, pydataset or
generator. Rank 0 writes OUT (.npz): the weights and optimizer state after two epochs
and one train_on_batch, the History, evaluate's loss, predict's output, and whether
every rank ended with bitwise the same State.
"""
import os
import signal
import sys
import time

import numpy as np

from kcompile import callbacks, distribute, layers, models, optimizers
from kcompile.random import seed_states
from kcompile.utils import PyDataset

N = 200          # 3 global batches of 64 and a short one of 8 (rank 1 gets none of it)


def build(kind):
    rng = np.random.default_rng(1)
    if kind == "dense":
        model = models.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                                   layers.Dense(256, activation="relu"),
                                   layers.Dense(10, activation="softmax")])
        loss, metrics = "categorical_crossentropy", ["accuracy"]
    elif kind.startswith("bn"):
        model = models.Sequential([layers.Input((784,)), layers.Dense(32),
                                   layers.BatchNormalization(), layers.Activation("relu"),
                                   layers.Dense(10, activation="softmax")])
        loss, metrics = "categorical_crossentropy", ["accuracy"]
    elif kind == "varlen":      # a variable time axis: one step for every length
        model = models.Sequential([layers.Input((None, 3)), layers.LSTM(8), layers.Dense(1)])
        loss, metrics = "mse", ["mae"]
    else:
        model = models.Sequential([layers.Input((12,), dtype="int32"), layers.Embedding(50, 8),
                                   layers.LSTM(16), layers.Dense(1, activation="sigmoid")])
        loss, metrics = "binary_crossentropy", ["accuracy"]
    # The same start on every run, whatever the initializers draw.
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.1
                       for w in model.get_weights()])
    model.compile(optimizer=optimizers.Adam(1e-3), loss=loss, metrics=metrics, nthreads=1)
    return model


def data(kind):
    rng = np.random.default_rng(0)
    if kind == "varlen":
        return (rng.standard_normal((N, 7, 3)).astype(np.float32),
                rng.standard_normal((N, 1)).astype(np.float32))
    if kind != "lstm":
        x = rng.standard_normal((N, 784)).astype(np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, N)]
    else:
        x = rng.integers(0, 50, (N, 12)).astype(np.int32)
        y = rng.integers(0, 2, (N, 1)).astype(np.float32)
    return x, y


class Batches(PyDataset):
    def __init__(self, x, y, batch):
        super().__init__()
        self.x, self.y, self.batch = x, y, batch

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        s = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[s], self.y[s]


class Fail(callbacks.Callback):
    """Rank 1 raises, hangs or dies (SIGKILL) at its third batch."""

    def __init__(self, how, dp):
        super().__init__()
        self.how, self.dp = how, dp

    def on_train_batch_begin(self, batch, logs=None):
        if self.how == "stuck" and batch == 2:
            # The short timeout starts only now, on every rank: before, a rank still
            # compiling on a loaded machine could outlast it and be named instead.
            self.dp.world.timeout = 5.0
        if distribute.rank() == 1 and batch == 2:
            if self.how == "fail":
                raise RuntimeError("a bad batch on rank 1")
            if self.how == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(120)


def main(kind, source, batch, out, how=None):
    dp = distribute.DataParallel(timeout=600.0, sync_batch_norm=kind == "bnsync")
    distribute.set_distribution(dp)
    model = build(kind)
    x, y = data(kind)
    cbs = [Fail(how, dp)] if how else []
    # The generator yields the per-rank batches; each rank skips the others' ones.
    per_rank = batch if source != "arrays" else None
    if source == "arrays":
        hist = model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0,
                         callbacks=cbs, validation_data=(x[:48], y[:48]))
    elif source == "pydataset":
        hist = model.fit(Batches(x, y, per_rank), epochs=2, shuffle=False, verbose=0,
                         callbacks=cbs)
    else:
        def gen():     # whole batches of 64 only: 1 x 64 and 2 x 32 see the same rows
            for _ in range(2):
                for i in range(0, N - N % 64, per_rank):
                    yield x[i:i + per_rank], y[i:i + per_rank]
        steps = (N // 64 * 64 // per_rank) // dp.num_processes
        hist = model.fit(gen(), epochs=2, steps_per_epoch=steps, verbose=0, callbacks=cbs)
    # One more step through train_on_batch: each rank passes its own half of 64 rows.
    rows = slice(dp.rank * batch, (dp.rank + 1) * batch)
    step_loss = model.train_on_batch(x[rows], y[rows], return_dict=True)["loss"]
    state = np.array(model._state.buffer)
    # The random counters are each rank's own (its own Dropout masks); all else is alike.
    seeds = [model._state[v.path] for v in seed_states(model)]
    seed_values = [int(np.asarray(view)) for view in seeds]
    base = model._state.buffer.__array_interface__["data"][0]
    for view in seeds:
        at = view.__array_interface__["data"][0] - base
        state.view(np.uint8)[at:at + view.nbytes] = 0
    moving = [v.numpy() for v in model.non_trainable_weights]
    if dp.active:
        every = dp.world.allgather_object((state.tobytes(), moving, seed_values))
        identical = all(s == every[0][0] for s, _, _ in every)
        own_streams = len({tuple(sv) for _, _, sv in every}) == len(every) and bool(seeds)
        moving_mean = [np.mean([m[i] for _, m, _ in every], axis=0) for i in range(len(moving))]
    else:
        identical, moving_mean, own_streams = True, moving, True
    loss = model.evaluate(x, y, batch_size=batch, verbose=0, return_dict=True)
    pred = model.predict(x, batch_size=batch, verbose=0)
    if distribute.rank() == 0:
        opt = [v.numpy() for v in model.optimizer.variables]
        np.savez(out, identical=identical, own_streams=own_streams,
                 **{f"moving{i}": m for i, m in enumerate(moving_mean)}, ranks=dp.num_processes, pred=pred,
                 eval_loss=loss["loss"], eval_acc=loss.get("accuracy", loss.get("mae")),
                 loss=np.array(hist.history["loss"]), step_loss=step_loss,
                 val_loss=np.array(hist.history.get("val_loss", [])),
                 metric=np.array(hist.history["mae" if kind == "varlen" else "accuracy"]),
                 **{f"w{i}": w for i, w in enumerate(model.get_weights())},
                 **{f"opt{i}": v for i, v in enumerate(opt)})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], *sys.argv[5:])
