"""Small kernels of a multi-threaded step run on thread 0 alone (codegen/module.py
`serial`): no barrier between two of them, none before the step returns after them,
and the same numbers as the reference interpreter, predicting and training."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from kcompile.codegen import module as module_mod
from model_checks import assert_trains_alike, native_and_reference

rng = np.random.default_rng(3)


def _entry_body(exe, entry):
    text = exe.llvm_ir
    start = text.index(f'define void @"{entry}"')
    return text[start:text.index("\n}\n", start)]


def _pair(nthreads):
    return native_and_reference(
        lambda: models.Sequential([layers.Input((256,)), layers.Dense(128, activation="relu"),
                                   layers.Dense(10, activation="softmax")]),
        nthreads, optimizer=lambda: optimizers.Adam(0.001), loss="categorical_crossentropy")


def test_a_serial_tail_needs_one_barrier_and_predicts_as_the_reference():
    nat, ref = _pair(2)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 256)).astype(np.float32)
        np.testing.assert_allclose(nat.predict_on_batch(x), ref.predict_on_batch(x),
                                   rtol=1e-5, atol=1e-6)
    exe = nat._executable(1)
    g = exe.pipeline.fused("predict").graph
    kinds = [(k.name, module_mod.serial(g, k, 2)) for k in exe.pipeline.fused("predict").kernels
             if k.kind != "view"]
    # the 256x128 product (128 KiB of weights) is split; the 128x10 one and the softmax
    # are not; so the step has one barrier: before the serial tail, none after it
    assert kinds[0][1] is False and all(s for _, s in kinds[1:]), kinds
    body = _entry_body(exe, "predict")
    assert body.count('@"kc_barrier"') == 1
    assert body.count("(i64 0,") == len(kinds) - 1      # thread 0 calls the tail alone


def test_without_serial_kernels_every_dependent_kernel_is_a_barrier(monkeypatch):
    monkeypatch.setattr(module_mod, "SERIAL_FLOPS", -1)
    nat, _ = _pair(2)
    nat.predict_on_batch(rng.standard_normal((1, 256)).astype(np.float32))
    body = _entry_body(nat._executable(1), "predict")
    n_kernels = sum(1 for k in nat._executable(1).pipeline.fused("predict").kernels
                    if k.kind != "view")
    assert body.count('@"kc_barrier"') == n_kernels     # one before each, and the join
    assert "(i64 0," not in body


@pytest.mark.parametrize("nthreads", [1, 2])
def test_training_with_serial_kernels_matches_the_reference(nthreads):
    nat, ref = _pair(nthreads)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    assert_trains_alike(nat, ref, x, y, steps=5)
    if nthreads == 2:
        g = nat._executable(8).pipeline.fused("train_step")
        assert any(module_mod.serial(g.graph, k, 2) for k in g.kernels)
