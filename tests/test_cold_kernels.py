"""Cold kernels (codegen/cold.py): small products compiled apart with the cheaper pipeline.

* which kernels are cold: products below a share of their entry's FLOPs, in every entry
  calling them; never a kernel without a product;
* the partitions keep cold and hot functions apart, define every function once, and
  each is a valid module;
* each partition is optimized at its kind's level;
* a program with cold kernels trains to the numbers of the reference interpreter and
  of the same program compiled all at O3, on one thread and on several.
"""
from __future__ import annotations

import numpy as np
import pytest

from fixtures import compile_cases
from kcompile.codegen import cold, jit, partition
from kcompile.ir.cost import flops

X, Y = compile_cases.batch(5, 32, 256, 2)


def model(backend="native"):
    """A wide layer and a narrow head: the head's products are cold."""
    return compile_cases.mlp("coldmlp", 11, 256, [(512, "relu", "wide"), (2, "softmax", "head")],
                             backend)


def train(m, steps=3):
    return compile_cases.train(m, X, Y, steps)


def pipeline_of(m):
    (exe,) = m._executables.values()
    return exe.pipeline


def test_cold_kernels_are_the_small_products():
    m = model()
    _, p = m._pipeline(32, [((2,), "float32")])
    fg = p.fused("train_step")
    g = fg.graph
    total = flops(g)
    seen = {True: 0, False: 0}
    for k in fg.kernels:
        if k.kind == "view":
            continue
        products = [v for v in k.members if g.nodes[v].op == "matmul"]
        want = bool(products) and cold.product_flops(g, k) < cold.COLD_SHARE * total
        assert cold.is_cold(g, k, total) == want
        if products:
            shapes = {g.type(i).shape for v in products for i in g.nodes[v].inputs}
            narrow = any(2 in s for s in shapes)        # the head's weights, inputs or grads
            assert want == narrow, (k.name, shapes)
            seen[want] += 1
    assert seen[True] >= 2 and seen[False] >= 1      # the head's products, the wide ones


def test_partitions_keep_cold_functions_apart(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    m = model()
    train(m, 1)
    program = pipeline_of(m).llvm()
    names = [f.name for f in partition.parse(program.text).functions]
    assert program.cold_functions and program.cold_functions < set(names)
    for n in (1, 2, 4):
        parts = partition.split_cold(program.text, n, program.cold_functions)
        assert sum(p.cold for p in parts) >= 1 and sum(not p.cold for p in parts) >= 1
        defined = []
        for p in parts:
            fns = [f.name for f in partition.parse(p.text).functions]
            assert all((f in program.cold_functions) == p.cold for f in fns)
            defined += fns
            jit.parse(p.text).verify()
        assert sorted(defined) == sorted(names)
    # nothing cold: the whole text as one partition, as before
    (whole,) = partition.split_cold(program.text, 1)
    assert whole.text == program.text and not whole.cold


def test_each_partition_is_optimized_at_its_kinds_level(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    monkeypatch.setenv("KCOMPILE_COMPILE_THREADS", "2")
    levels = {}
    optimize = jit.optimize

    def spy(mod, tm, level=3, unlocked=False):
        for f in mod.functions:
            if not f.is_declaration:
                levels[f.name] = level
        return optimize(mod, tm, level, unlocked)
    monkeypatch.setattr(jit, "optimize", spy)
    m = model()
    train(m, 1)
    program = pipeline_of(m).llvm()
    kernels = set(program.kernel_symbols.values())
    for name in kernels:
        want = cold.COLD_LEVEL if name in program.cold_functions else cold.HOT_LEVEL
        assert levels[name] == want, name


@pytest.mark.parametrize("threads", [1, 3])
def test_a_program_with_cold_kernels_trains_as_the_reference_and_as_all_O3(monkeypatch, threads):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    monkeypatch.setenv("KCOMPILE_COMPILE_THREADS", str(threads))
    m = model()
    mixed = train(m)
    assert pipeline_of(m).llvm().cold_functions
    monkeypatch.setattr(cold, "COLD_SHARE", 0.0)          # nothing cold: all at O3
    m3 = model()
    all_o3 = train(m3)
    assert not pipeline_of(m3).llvm().cold_functions
    reference = train(model("reference"))
    np.testing.assert_allclose(mixed[0], all_o3[0], rtol=1e-5)
    for a, b in zip(mixed[1] + [mixed[2]], all_o3[1] + [all_o3[2]]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mixed[0], reference[0], rtol=1e-4)
    for a, b in zip(mixed[1] + [mixed[2]], reference[1] + [reference[2]]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
