"""Products of a few rows split between the threads along K (codegen/lower/matmul.py
`k_split`): each thread multiplies its rows of B into partial sums, a barrier inside
the kernel, then each adds the sums for its share of the columns and runs the
epilogue. Checked against the reference interpreter, predicting and training, on
two and three threads, for the shapes that take the path and its edges."""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from kcompile.codegen.lower import matmul as matmul_mod
from model_checks import assert_trains_alike, native_and_reference

rng = np.random.default_rng(11)


def _pair(build, nthreads, compile_args):
    return native_and_reference(build, nthreads, **compile_args)


def _split_kernels(exe, entry, nthreads):
    fused = exe.pipeline.fused(entry)
    return [k for k in fused.kernels
            if k.kind == "matmul" and matmul_mod.k_split(fused.graph, k, nthreads)]


def _mlp(widths, activation="relu", use_bias=True):
    def build():
        return models.Sequential(
            [layers.Input((widths[0],))]
            + [layers.Dense(n, activation=activation, use_bias=use_bias) for n in widths[1:-1]]
            + [layers.Dense(widths[-1], activation="softmax")])
    return build


@pytest.mark.parametrize("nthreads", [2, 3])
@pytest.mark.parametrize("batch", [1, 2, 5, 16])
def test_split_predict_matches_the_reference(nthreads, batch):
    # 784x512 (1.6 MB) and 512x250 (0.5 MB) are split; 250 columns are not a whole
    # number of tiles, nor of vectors; the 250x10 product is not split
    nat, ref = _pair(_mlp([784, 512, 250, 10]), nthreads, dict(
        optimizer="sgd", loss="categorical_crossentropy"))
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    np.testing.assert_allclose(nat.predict_on_batch(x), ref.predict_on_batch(x),
                               rtol=1e-5, atol=1e-6)
    split = _split_kernels(nat._executable(batch), "predict", nthreads)
    assert len(split) == 2, [k.name for k in split]


def test_the_kernel_waits_inside_and_repeats_give_the_same_bits():
    nat, _ = _pair(_mlp([784, 512, 256, 10]), 2, dict(
        optimizer="sgd", loss="categorical_crossentropy"))
    x = rng.standard_normal((1, 784)).astype(np.float32)
    first = nat.predict_on_batch(x)
    for _ in range(20):
        np.testing.assert_array_equal(nat.predict_on_batch(x), first)
    exe = nat._executable(1)
    split = _split_kernels(exe, "predict", 2)
    assert len(split) == 2
    # the kernels that wait inside are the two split ones, once each
    text = exe.llvm_ir
    waits = []
    for part in text.split("\ndefine ")[1:]:
        head, body = part.split("\n", 1)
        calls = body.count('call void @"kc_barrier"')
        if "internal" in head and calls:
            waits.append(calls)
    assert waits == [1, 1]


def test_a_product_without_an_epilogue():
    # no bias, no activation: the kernel is the product alone, stored from the sums
    nat, ref = _pair(_mlp([600, 512, 10], activation=None, use_bias=False), 2, dict(
        optimizer="sgd", loss="categorical_crossentropy"))
    x = rng.standard_normal((3, 600)).astype(np.float32)
    np.testing.assert_allclose(nat.predict_on_batch(x), ref.predict_on_batch(x),
                               rtol=1e-5, atol=1e-6)
    split = _split_kernels(nat._executable(3), "predict", 2)
    assert len(split) == 1 and len(split[0].members) == 1


def test_training_at_a_small_batch_matches_the_reference():
    nat, ref = _pair(_mlp([784, 512, 10]), 2, dict(
        optimizer=lambda: optimizers.SGD(0.01, momentum=0.9), loss="categorical_crossentropy"))
    x = rng.standard_normal((4, 784)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4)]
    assert_trains_alike(nat, ref, x, y, steps=4)
    assert _split_kernels(nat._executable(4), "train_step", 2)


def test_inside_a_recurrent_step():
    # the 512x512 recurrent product runs inside the scan's body on both threads
    def build():
        return models.Sequential([layers.Input((5, 64)), layers.SimpleRNN(512),
                                  layers.Dense(10)])
    nat, ref = _pair(build, 2, dict(optimizer="sgd", loss="mse"))
    x = rng.standard_normal((1, 5, 64)).astype(np.float32)
    np.testing.assert_allclose(nat.predict_on_batch(x), ref.predict_on_batch(x),
                               rtol=1e-4, atol=1e-5)
    from kcompile.codegen.lower.scan import scan_layout
    fused = nat._executable(1).pipeline.fused("predict")
    scan = next(k for k in fused.kernels if k.kind == "scan")
    body, *_ = scan_layout(fused.graph.nodes[scan.members[0]].params["body"], 2)
    assert any(k.kind == "matmul" and matmul_mod.k_split(body.graph, k, 2)
               for k in body.kernels)


@pytest.mark.parametrize("shape,expected", [
    ((1, 784, 512, 2), True),
    (("most", 784, 512, 2), True),      # a row per accumulator of the tile
    (("most+1", 784, 512, 2), False),   # more rows than that
    ((1, 784, 512, 1), False),      # one thread
    ((1, 100, 100, 2), False),      # B of 40 KB: not worth the barrier
    ((1, 100, 2048, 2), False),     # K under 64 a thread
])
def test_which_products_split(shape, expected):
    from kcompile.ir.graph import Graph, TensorType
    from kcompile.ir.passes.fuse import Kernel
    M, K, N, nthreads = shape
    if isinstance(M, str):
        M = matmul_mod.split_accumulators() + (M == "most+1")
    g = Graph()
    a = g.leaf("input", TensorType((M, K)), "a")
    b = g.leaf("param", TensorType((K, N)), "b")
    v = g.add("matmul", [a, b], transpose_a=False, transpose_b=False)
    k = Kernel(name="k0", kind="matmul", members=[v], inputs=[a, b], outputs=[v])
    assert matmul_mod.k_split(g, k, nthreads) is expected


def test_split_in_8_wide_vectors_matches_the_reference():
    """Code for an AVX2 CPU (it runs here too): 8 accumulators a tile, so up to 8 rows."""
    from kcompile.codegen.target import compiling_for
    with compiling_for("haswell", "+avx,+avx2,+fma,+sse4.2"):
        assert matmul_mod.split_accumulators() == 8
        nat, ref = _pair(_mlp([784, 512, 250, 10]), 2, dict(
            optimizer="sgd", loss="categorical_crossentropy"))
        for batch in (1, 3, 8):
            x = rng.standard_normal((batch, 784)).astype(np.float32)
            np.testing.assert_allclose(nat.predict_on_batch(x), ref.predict_on_batch(x),
                                       rtol=1e-5, atol=1e-6)
            assert len(_split_kernels(nat._executable(batch), "predict", 2)) == 2
