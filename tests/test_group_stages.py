"""A group kernel's stages as functions, one per distinct body (codegen/lower/group.py):
a model whose update kernel has many stages of a few shapes trains, on one thread and
on two, to the reference interpreter's numbers, and its module defines fewer stage
functions than the kernel has stages."""
from __future__ import annotations

import re

import numpy as np
import pytest

from kcompile import layers, models, optimizers

RNG = np.random.default_rng(5)
X = RNG.standard_normal((16, 8)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 16)]


def deep(backend="native", nthreads=1):
    from kcompile.initializers import set_seed
    set_seed(11)
    m = models.Sequential([layers.Input((8,))])
    for _ in range(4):
        m.add(layers.Dense(8, activation="relu"))
        m.add(layers.BatchNormalization())
    m.add(layers.Dense(3, activation="softmax"))
    m.compile(optimizer=optimizers.Adam(1e-2), loss="categorical_crossentropy",
              backend=backend, nthreads=nthreads)
    return m


def train(m, steps=3):
    losses = [float(m.train_on_batch(X, Y)) for _ in range(steps)]
    return losses, m.get_weights()


@pytest.mark.parametrize("nthreads", [1, 2])
def test_outlined_stages_train_like_the_reference(monkeypatch, nthreads):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    m = deep(nthreads=nthreads)
    native = train(m)
    reference = train(deep("reference"))
    np.testing.assert_allclose(native[0], reference[0], rtol=1e-4)
    for a, b in zip(native[1], reference[1]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    (p,) = m._pipelines.values()
    (group,) = [k for k in p.fused("train_step").kernels if k.kind == "group"]
    symbol = p.llvm().kernel_symbols[f"train_step.{group.name}"]
    stages = set(re.findall(r'define internal void @"(' + re.escape(symbol) + r'\.s\d+)"',
                            p.llvm_ir()))
    assert stages and len(stages) < len(group.stages)
