"""The thread count of a step: a cost model of the work the other threads take over
against the barriers they add (runtime/threads.py), fed by costs measured on the
host (runtime/barrier_probe.py). The model is checked on given costs; the probe
only for well-formed results (its numbers depend on the machine's load)."""
from __future__ import annotations

import platform
import sys
import time

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from kcompile.ir.cost import barrier_estimate, flops, leaf_bytes, updated_bytes
from kcompile.runtime import threads
from kcompile.runtime.barrier_probe import measured
from kcompile.runtime.threads import choose_threads

IDLE = dict(barrier_s=2e-6, wake_s=1e-6, speedup=1.95)         # two free cores
SHARED = dict(barrier_s=20e-6, wake_s=60e-6, speedup=1.9)      # a VM with slow barriers
BUSY = dict(barrier_s=1e-6, wake_s=10e-6, speedup=0.8)         # the other core is taken


def test_big_steps_use_every_core_when_it_is_free():
    # W1's training step: ~0.6 GFLOP in about 20 kernels
    assert choose_threads(6e8, 1e6, 20, 2, **IDLE) == 2
    assert choose_threads(6e8, 1e6, 20, 2, **BUSY) == 1


def test_small_steps_do_not_pay_a_wake_up():
    # a 784-32-10 MLP's batch-1 predict: 50 kFLOP, 3 kernels
    assert choose_threads(5e4, 1e5, 3, 2, **IDLE) == 1


def deep_narrow(blocks):
    m = models.Sequential([layers.Input((64,))])
    for _ in range(blocks):
        m.add(layers.Dense(64, activation="relu"))
        m.add(layers.BatchNormalization())
        m.add(layers.Dropout(0.1))
    m.add(layers.Dense(10, activation="softmax"))
    m.compile(optimizer=optimizers.Adam(), loss="categorical_crossentropy")
    return m


def test_deep_narrow_model_counts_its_barriers():
    """Input(64) -> 30 x [Dense(64, relu), BatchNormalization, Dropout] -> Dense(10),
    Adam, batch 64: hundreds of small kernels; on a host whose barriers are slow the
    barriers decide, and the step runs on one thread."""
    m = deep_narrow(30)
    _, pipeline = m._pipeline(64, [((10,), "float32")])
    g = pipeline.graph("train_step")
    n = barrier_estimate(g)
    assert n >= 30 * 4          # per block at least: matmul, its two gradients, BN's sums
    assert choose_threads(flops(g), 0, n, 2, **SHARED) == 1
    assert choose_threads(flops(g), 0, n, 2, **BUSY) == 1


def test_a_quiet_host_keeps_the_deep_narrow_step_on_one_thread_and_batch_one_predict_on_two():
    """Where barriers cost what moving a small kernel's result between cores costs
    (~2 us), the deep narrow step's hundreds of them outweigh its small kernels; a
    batch-1 predict streaming megabytes of weights in 5 kernels is split."""
    m = deep_narrow(30)
    _, pipeline = m._pipeline(64, [((10,), "float32")])
    g = pipeline.graph("train_step")
    assert choose_threads(flops(g), leaf_bytes(g), barrier_estimate(g), 2, **IDLE) == 1
    p = mlp_784_512_256_10()._pipeline(1)[1]
    g = p.graph("predict")
    assert choose_threads(flops(g), leaf_bytes(g), barrier_estimate(g), 2, **IDLE) == 2


def mlp_784_512_256_10():
    m = models.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                           layers.Dense(256, activation="relu"),
                           layers.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m


@pytest.mark.parametrize("costs, expected", [(IDLE, 2), (SHARED, 1), (BUSY, 1)])
def test_the_choice_is_a_function_of_the_measured_costs(monkeypatch, costs, expected):
    """The same program on the same measured costs gets the same count, each time
    (the probe is replaced by fixed figures: its own are the machine's)."""
    from kcompile.runtime import barrier_probe
    monkeypatch.delenv("KCOMPILE_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(barrier_probe, "measured",
                        lambda n: (costs["barrier_s"], costs["wake_s"], costs["speedup"]))
    counts = set()
    for _ in range(3):
        m = mlp_784_512_256_10()
        _, pipeline = m._pipeline(1)
        pipeline.use_cache = False          # decided by the costs, not by a cached program
        counts.add(pipeline.nthreads)
    assert counts == {expected}


def _probe_forbidden(n):
    raise AssertionError("the host was probed")


def test_a_step_whose_choice_no_host_cost_can_change_is_not_probed(monkeypatch):
    """W1's training step (784-512-256-10, batch 128) wins on both cores even at the
    worst costs the probe is there to detect, so the probe does not run; the deep
    narrow step's choice depends on them, so it does (with the figures it gets)."""
    from kcompile.runtime import barrier_probe
    monkeypatch.delenv("KCOMPILE_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(barrier_probe, "measured", _probe_forbidden)
    m = mlp_784_512_256_10()
    _, pipeline = m._pipeline(128, [((10,), "float32")])
    pipeline.use_cache = False
    assert pipeline.nthreads == 2
    g = pipeline.graph("train_step")
    for costs in (IDLE, SHARED):        # the measured figures of a host would agree
        assert choose_threads(flops(g), leaf_bytes(g), barrier_estimate(g), 2, **costs) == 2
    calls = []
    monkeypatch.setattr(barrier_probe, "measured",
                        lambda n: calls.append(n) or tuple(SHARED.values()))
    _, deep = deep_narrow(10)._pipeline(64, [((10,), "float32")])
    deep.use_cache = False
    assert deep.nthreads == 1 and calls == [2]


def test_the_worst_host_bounds_every_skipped_choice():
    """Costs anywhere between an idle host and the worst one give every core to a step
    that the worst gives every core (the choice is monotone in each cost)."""
    worst = dict(barrier_s=threads.WORST_BARRIER_S, wake_s=threads.WORST_WAKE_S,
                 speedup=2 * threads.WORST_SPEEDUP_PER_CPU)
    rng = np.random.default_rng(0)
    for _ in range(500):
        work = (10 ** rng.uniform(5, 10), 10 ** rng.uniform(3, 8), int(rng.integers(1, 600)))
        if choose_threads(*work, 2, **worst) != 2:
            continue
        costs = dict(barrier_s=rng.uniform(1e-7, worst["barrier_s"]),
                     wake_s=rng.uniform(1e-7, worst["wake_s"]),
                     speedup=rng.uniform(worst["speedup"], 2.0))
        assert choose_threads(*work, 2, **costs) == 2, (work, costs)


def test_environment_override_and_probe_results(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NUM_THREADS", "3")
    assert threads.default_threads(1e12) == 3
    monkeypatch.setenv("KCOMPILE_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="KCOMPILE_NUM_THREADS"):
        threads.default_threads(1e12)
    barrier_s, wake_s, speedup = measured(2)
    assert np.isfinite([barrier_s, wake_s, speedup]).all()
    assert barrier_s > 0 and wake_s > 0 and 0 < speedup <= 2


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                    reason="reads the worker's system call from /proc (Linux, x86-64 numbering)")
def test_idle_workers_block_in_the_kernel_and_wake_for_the_next_step():
    """After a step the workers spin briefly, nap, then block on a futex (an idle
    process uses no CPU); the next step wakes them and computes the same numbers."""
    m = models.Sequential([layers.Input((64,)), layers.Dense(64)])
    m.compile(optimizer="sgd", loss="mse", nthreads=2)
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    first = m.predict_on_batch(x)
    worker = next(iter(m._executables.values()))._pool.threads[0]
    syscall = f"/proc/self/task/{worker.native_id}/syscall"
    deadline = time.monotonic() + 30
    while open(syscall).read().split()[0] != "202":       # futex
        assert time.monotonic() < deadline, "the idle worker never blocked"
        time.sleep(0.01)
    want = x @ m.layers[0].kernel.numpy() + m.layers[0].bias.numpy()
    np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.predict_on_batch(x), want, rtol=1e-5, atol=1e-5)


def test_weights_every_thread_reads_after_an_update_are_charged():
    """A training step's updated weights cross between the cores every step (each
    thread writes its share, every thread reads them all next step): charged at the
    probe's cost per byte, they would keep W5's step (784-32-10, RMSprop, 100 KB of
    weights) on one thread at an idle host's costs, and cost W1's (2.1 MB) far less than
    it gains. (W5's first weights are read by their own rows: the next test.)"""
    from kcompile.runtime.threads import PROBE_EXCHANGE_BYTES
    m = models.Sequential([layers.Input((784,)), layers.Dense(32, activation="relu"),
                           layers.Dense(10, activation="softmax")])
    m.compile(optimizer=optimizers.RMSprop(), loss="categorical_crossentropy")
    _, pipeline = m._pipeline(32, [((10,), "float32")])
    g = pipeline.graph("train_step")
    moved = updated_bytes(g)
    assert moved == (784 * 32 + 32 + 32 * 10 + 10) * 4        # the weights, not the slots
    work = (flops(g), leaf_bytes(g), barrier_estimate(g), 2)
    assert choose_threads(*work, **IDLE, moved_bytes=moved) == 1
    traffic = moved / 2 * IDLE["barrier_s"] / PROBE_EXCHANGE_BYTES
    assert traffic > 0 and choose_threads(*work, **IDLE, moved_bytes=0) == 2
    w1 = mlp_784_512_256_10()
    _, pipeline = w1._pipeline(128, [((10,), "float32")])
    g = pipeline.graph("train_step")
    assert choose_threads(flops(g), leaf_bytes(g), barrier_estimate(g), 2, **IDLE,
                          moved_bytes=updated_bytes(g)) == 2


def test_a_count_chosen_while_the_cores_were_taken_is_chosen_again(tmp_path, monkeypatch):
    """A program compiled while another process held the other core keeps one thread
    in the cache with a marker; the next process to load it measures again, and on
    free cores compiles the two-thread form, which replaces it: later loads take that
    form without measuring."""
    from kcompile.codegen import cache
    from kcompile.runtime import barrier_probe, pipeline as pipeline_mod
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KCOMPILE_NUM_THREADS", raising=False)
    monkeypatch.delenv("KCOMPILE_NO_CACHE", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(pipeline_mod, "available_cpus", lambda: 2)

    def program():     # the same program each time, as in a new process
        return _named_mlp()._pipeline(1)[1]

    calls = []

    def probe(costs):
        return lambda n: calls.append(n) or (costs["barrier_s"], costs["wake_s"],
                                             costs["speedup"])
    monkeypatch.setattr(barrier_probe, "measured", probe(BUSY))
    busy = program()
    assert busy.nthreads == 1 and calls
    busy.compiled()
    busy_key = busy.cache_key()
    assert cache.contains(busy_key) and cache.contains(pipeline_mod._busy_key(busy_key))

    calls.clear()
    monkeypatch.setattr(barrier_probe, "measured", probe(IDLE))
    quiet = program()
    assert quiet.nthreads == 2 and calls      # measured again, not taken from the cache
    assert not cache.contains(busy_key)
    assert not cache.contains(pipeline_mod._busy_key(busy_key))
    quiet.compiled()

    monkeypatch.setattr(barrier_probe, "measured", _probe_forbidden)
    later = program()
    assert later.nthreads == 2 and later.compiled().from_cache


def test_a_count_chosen_on_free_cores_is_kept(tmp_path, monkeypatch):
    from kcompile.codegen import cache
    from kcompile.runtime import barrier_probe, pipeline as pipeline_mod
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KCOMPILE_NUM_THREADS", raising=False)
    monkeypatch.delenv("KCOMPILE_NO_CACHE", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(pipeline_mod, "available_cpus", lambda: 2)
    monkeypatch.setattr(barrier_probe, "measured",
                        lambda n: (IDLE["barrier_s"], IDLE["wake_s"], IDLE["speedup"]))
    first = _named_mlp()._pipeline(1)[1]
    assert first.nthreads == 2
    first.compiled()
    assert not cache.contains(pipeline_mod._busy_key(first.cache_key()))
    monkeypatch.setattr(barrier_probe, "measured", _probe_forbidden)
    assert _named_mlp()._pipeline(1)[1].nthreads == 2


def _named_mlp():
    """784-512-256-10 whose layers have the same names in every call."""
    m = models.Sequential([layers.Input((784,)),
                           layers.Dense(512, activation="relu", name="hidden_1"),
                           layers.Dense(256, activation="relu", name="hidden_2"),
                           layers.Dense(10, activation="softmax", name="classes")],
                          name="named_mlp")
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m


def test_a_weight_each_thread_reads_by_its_own_rows_is_not_charged(monkeypatch):
    """W5's first layer (32x784 by 784x32) is split along K: each thread reads the rows
    of the weights it updates, which do not cross between the cores. Not charged, and
    with the barriers the fused step makes (4, not one per op), the step takes both
    cores at an idle host's costs. A hidden layer's weights are also read whole,
    transposed, for the input gradient: charged."""
    from kcompile.runtime import barrier_probe, pipeline as pipeline_mod
    monkeypatch.delenv("KCOMPILE_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(pipeline_mod, "available_cpus", lambda: 2)
    monkeypatch.setattr(barrier_probe, "measured",
                        lambda n: (IDLE["barrier_s"], IDLE["wake_s"], IDLE["speedup"]))
    m = models.Sequential([layers.Input((784,)), layers.Dense(32, activation="relu"),
                           layers.Dense(10, activation="softmax")])
    m.compile(optimizer=optimizers.RMSprop(), loss="categorical_crossentropy")
    _, pipeline = m._pipeline(32, [((10,), "float32")])
    pipeline.use_cache = False
    g = pipeline.graph("train_step")
    live = pipeline_mod.upstream(g.dag, g.roots())
    local = [g.type(v).shape for v in g.updates
             if pipeline_mod._read_by_own_rows(g, v, 2, live)]
    assert local == [(784, 32)]         # the first layer's kernel
    assert pipeline.nthreads == 2
    from kcompile.codegen.module import step_barriers
    assert step_barriers(pipeline.fused("train_step"), 2) < barrier_estimate(g)
    _, w1 = mlp_784_512_256_10()._pipeline(4, [((10,), "float32")])
    g = w1.graph("train_step")
    live = pipeline_mod.upstream(g.dag, g.roots())
    local = [g.type(v).shape for v in g.updates if g.nodes[v].role == "param"
             and pipeline_mod._read_by_own_rows(g, v, 2, live)]
    # batch 4: the first product splits along K and its input gradient is dead; the
    # second layer's weights also serve the first layer's gradient, transposed
    assert local == [(784, 512)]
