"""The thread count of a step: a cost model of the work the other threads take over
against the barriers they add (runtime/threads.py), fed by costs measured on the
host (runtime/barrier_probe.py). The model is checked on given costs; the probe
only for well-formed results (its numbers depend on the machine's load)."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from kcompile.ir.cost import barrier_estimate, flops
from kcompile.runtime import threads
from kcompile.runtime.barrier_probe import measured
from kcompile.runtime.threads import choose_threads

IDLE = dict(barrier_s=0.3e-6, wake_s=5e-6, speedup=1.95)       # two free cores
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


def test_environment_override_and_probe_results(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NUM_THREADS", "3")
    assert threads.default_threads(1e12) == 3
    monkeypatch.setenv("KCOMPILE_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="KCOMPILE_NUM_THREADS"):
        threads.default_threads(1e12)
    barrier_s, wake_s, speedup = measured(2)
    assert np.isfinite([barrier_s, wake_s, speedup]).all()
    assert barrier_s > 0 and wake_s > 0 and 0 < speedup <= 2
