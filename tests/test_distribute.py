"""kcompile.distribute: data-parallel training on MPI ranks.

The MPI tests run tests/distribute_worker.py as one process with batch 64 and under
`mpiexec -n 2` with batch 32 per rank (same data order): the weights, optimizer
state, History, evaluate and predict must agree within float tolerance, and the two
ranks' States bitwise. They need mpi4py and an MPI (`pip install "kcompile[mpi]"`).
The sharding and API tests need neither.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from kcompile import distribute
from kcompile.data import ArraySource, StreamSource
from kcompile.distribute import launch
from kcompile.distribute.data import ShardedArrays, ShardedStream

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distribute_worker.py")

try:
    import mpi4py  # noqa: F401
    HAVE_MPI = True
except ImportError:
    HAVE_MPI = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="mpi4py is not installed "
                               "(pip install \"kcompile[mpi]\")")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args, ranks, timeout=300):
    """The worker on `ranks` processes (a plain process for 1): the finished process."""
    if ranks == 1:
        cmd, env = [sys.executable, WORKER, *args], _env()
    else:
        cmd, env = launch.mpiexec_command(ranks, [WORKER, *args])
        env["PYTHONPATH"] = _env()["PYTHONPATH"]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)


def _train(tmp_path, model, source, ranks, batch):
    out = str(tmp_path / f"{model}-{source}-{ranks}.npz")
    proc = _run([model, source, str(batch), out], ranks)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return np.load(out)


@needs_mpi
@pytest.mark.parametrize("model,source", [("dense", "arrays"), ("lstm", "arrays"),
                                          ("dense", "pydataset"), ("lstm", "generator"),
                                          ("varlen", "arrays")])
def test_two_ranks_of_32_train_as_one_process_of_64(tmp_path, model, source):
    one = _train(tmp_path, model, source, 1, 64)
    two = _train(tmp_path, model, source, 2, 32)
    assert int(one["ranks"]) == 1 and int(two["ranks"]) == 2
    assert bool(two["identical"]), "the ranks' weights and optimizer state differ"
    assert bool(two["own_streams"]), "the ranks draw the same random numbers"
    keys = [k for k in one.files if k.startswith(("w", "opt"))]
    assert len(keys) > 6
    for k in keys:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # Training moved the weights: the comparison is not of two untouched starts.
    start = np.random.default_rng(1).standard_normal(one["w0"].shape).astype(np.float32) * 0.1
    assert np.abs(one["w0"] - start).max() > 1e-4
    # History (averaged over ranks), evaluate (reduced) and predict (gathered, in order).
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(two["metric"], one["metric"], rtol=1e-5)
    np.testing.assert_allclose(two["step_loss"], one["step_loss"], rtol=1e-5)
    assert len(one["val_loss"]) == (2 if source == "arrays" else 0)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(two["eval_loss"], one["eval_loss"], rtol=1e-5)
    np.testing.assert_allclose(two["eval_acc"], one["eval_acc"], rtol=1e-6)
    assert two["pred"].shape == one["pred"].shape == (200, *one["pred"].shape[1:])
    np.testing.assert_allclose(two["pred"], one["pred"], rtol=1e-4, atol=1e-5)


def _stderr(proc):
    return proc.stderr.decode(errors="replace").replace("\x00", "")


@needs_mpi
def test_an_exception_on_one_rank_stops_every_rank(tmp_path):
    proc = _run(["dense", "arrays", "32", str(tmp_path / "x.npz"), "fail"], 2, timeout=120)
    assert proc.returncode != 0
    err = _stderr(proc)
    assert "RuntimeError: a bad batch on rank 1" in err
    assert "rank 1 failed with RuntimeError; aborting all 2 ranks" in err
    assert not (tmp_path / "x.npz").exists()


@needs_mpi
def test_a_stuck_rank_is_named_by_the_allreduce_timeout(tmp_path):
    proc = _run(["dense", "arrays", "32", str(tmp_path / "x.npz"), "stuck"], 2, timeout=120)
    assert proc.returncode != 0
    err = _stderr(proc)
    assert "did not complete within 5 s" in err
    assert "rank(s) 1 of 2 never reached it" in err


@needs_mpi
def test_a_killed_rank_ends_the_run(tmp_path):
    proc = _run(["dense", "arrays", "32", str(tmp_path / "x.npz"), "die"], 2, timeout=120)
    assert proc.returncode != 0
    assert "rank 1" in _stderr(proc)


# -- without MPI ------------------------------------------------------------------------
class _World:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size


def _rows(shard):
    return [list(b.idx) for b in shard.iterator()]


@pytest.mark.parametrize("shuffle", [False, True, "batch"])
def test_array_shards_are_disjoint_and_cover_each_epoch(shuffle):
    x = np.arange(70, dtype=np.float32).reshape(70, 1)
    src = ArraySource([x], [x], None, 16, shuffle)
    shards = [ShardedArrays(src, r, 2, seed=5) for r in range(2)]
    for epoch in range(2):
        per_rank = [_rows(s) for s in shards]
        assert [len(p) for p in per_rank] == [3, 3]     # ceil(70 / 32) steps on each
        rows = [i for p in per_rank for b in p for i in b]
        assert sorted(rows) == list(range(70))
        # global step k is rank 0's batch then rank 1's: one 32-sample batch's order
        merged = [i for k in range(3) for p in per_rank for i in p[k]]
        if not shuffle:
            assert merged == list(range(70))
        # the short last global batch (6 samples) is rank 0's; rank 1 runs an empty one
        assert [len(b) for b in per_rank[0]] == [16, 16, 6]
        assert [len(b) for b in per_rank[1]] == [16, 16, 0]
        for s in shards:
            s.on_epoch_end()
        if shuffle:
            assert merged != list(range(70))


def test_stream_shards_deal_batches_round_robin_with_equal_steps():
    batches = [(np.full((4, 1), i, np.float32), np.full((4, 1), i, np.float32))
               for i in range(5)]

    class Model:
        input_specs = [((1,), "float32")]
        output_names = ["out"]
        _loss_spec = "mse"
        _is_subclassed = False

        def _per_output(self, spec, n, what):
            return [spec] * n

    seen = []
    for rank in range(2):
        src = StreamSource(list(batches), Model(), "fit")
        shard = ShardedStream(src, _World(rank, 2), seed=0, collective=True)
        assert shard.num_batches == 3
        got = list(shard.iterator())
        assert len(got) == 3
        seen.append([int(b.xs[0][0, 0]) if b.real else None for b in got])
        assert [b.real for b in got] == ([4, 4, 4] if rank == 0 else [4, 4, 0])
    assert seen == [[0, 2, 4], [1, 3, None]]
    pred = ShardedStream(StreamSource(list(batches), Model(), "predict", targets=False),
                         _World(1, 2), seed=0, collective=False)
    assert pred.num_batches == 2 and len(list(pred.iterator())) == 2


def test_one_process_runs_without_mpi():
    dp = distribute.DataParallel()
    assert (dp.rank, dp.num_processes, dp.active) == (0, 1, False)
    distribute.set_distribution(dp)
    try:
        assert distribute.distribution() is dp and distribute.active() is None
        assert distribute.rank() == 0 and distribute.num_processes() == 1
    finally:
        distribute.set_distribution(None)
    with dp.scope():
        assert distribute.distribution() is dp
    assert distribute.distribution() is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="set_distribution expects a DataParallel"):
        distribute.set_distribution("data_parallel")
    with pytest.raises(ValueError, match="device_mesh"):
        distribute.DataParallel(device_mesh=object())
    with pytest.raises(ValueError, match="2 devices given, but the run has 1 MPI rank"):
        distribute.DataParallel(devices=["cpu:0", "cpu:1"])
    with pytest.raises(ValueError, match="predict_on"):
        distribute.DataParallel(predict_on="rank1")
    with pytest.raises(ValueError, match="`timeout` must be a positive number"):
        distribute.DataParallel(timeout=0)
    with pytest.raises(ValueError, match="number of ranks must be positive"):
        launch.mpiexec_command(0, ["x.py"])


def test_launch_sets_what_open_mpi_needs(monkeypatch):
    monkeypatch.setattr(launch, "find_mpiexec", lambda: "/opt/mpi/bin/mpiexec")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("KCOMPILE_NUM_THREADS", raising=False)
    monkeypatch.delenv("PRTE_MCA_rmaps_default_mapping_policy", raising=False)
    cmd, env = launch.mpiexec_command(4, ["train.py", "--epochs", "3"])
    assert cmd == ["/opt/mpi/bin/mpiexec", "-n", "4", sys.executable, "train.py", "--epochs", "3"]
    assert env["PRTE_MCA_rmaps_default_mapping_policy"] == ":oversubscribe"
    assert env["KCOMPILE_NUM_THREADS"] == "1"
    if os.geteuid() == 0:
        assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    cmd, env = launch.mpiexec_command(2, ["train.py"], hosts="a,b")
    assert cmd[1:5] == ["-H", "a,b", "-n", "2"]


@needs_mpi
def test_batch_norm_statistics_per_rank_or_synchronised(tmp_path):
    per_rank = _train(tmp_path, "bn", "arrays", 2, 32)
    synced = _train(tmp_path, "bnsync", "arrays", 2, 32)
    # Keras' default: each rank's moving statistics follow its own batches (the
    # trainable weights still agree); sync_batch_norm=True: every rank holds the same.
    assert not bool(per_rank["identical"])
    assert bool(synced["identical"])
    for k in ("w0", "w1", "w2", "w3", "w6", "w7"):          # Dense and gamma/beta
        np.testing.assert_array_equal(per_rank[k], synced[k], err_msg=k)
    assert np.abs(per_rank["w4"] - synced["w4"]).max() > 1e-5    # rank 0's moving_mean
    assert np.isfinite(synced["w4"]).all() and np.isfinite(synced["w5"]).all()


def test_keras_distribution_names():
    import kcompile as keras
    assert keras.distribution.DataParallel is distribute.DataParallel
    dp = keras.distribution.DataParallel()
    keras.distribution.set_distribution(dp)
    try:
        assert keras.distribution.distribution() is dp
    finally:
        keras.distribution.set_distribution(None)


def test_only_rank_0_prints_and_writes_files(tmp_path):
    from kcompile import callbacks
    backup = callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=True)
    cbs = [callbacks.ModelCheckpoint(str(tmp_path / "m.keras")),
           callbacks.CSVLogger(str(tmp_path / "log.csv")), callbacks.EarlyStopping(),
           [callbacks.ReduceLROnPlateau()], backup]
    dp = distribute.DataParallel()
    assert dp.callbacks(cbs) is cbs and dp.verbose(1) == 1
    dp.rank = 1         # as on another rank
    kept = dp.callbacks(cbs)
    assert [type(cb).__name__ for cb in kept] == ["EarlyStopping", "ReduceLROnPlateau",
                                                  "BackupAndRestore"]
    reader = kept[-1]
    assert reader is not backup and not reader.delete_checkpoint and backup.delete_checkpoint
    reader._save_model()        # restores like rank 0, never writes
    assert not (tmp_path / "backup").exists()
    assert dp.verbose(1) == 0 and dp.verbose("auto") == 0


def test_under_mpiexec_without_mpi4py_the_error_names_the_extra(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "kcompile\[mpi\]"'):
        distribute.DataParallel()
