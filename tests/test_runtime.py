"""The runtime around compiled steps: the disk cache, threads, memory.

* a model compiled from the cache gives the same results as a fresh compile;
* a corrupt, truncated or foreign cache entry is ignored and rebuilt, never loaded;
* results are bitwise equal run to run for a fixed thread count, and equal to
  one thread within float tolerance;
* a training step allocates nothing: memory stays flat over many steps.
"""
from __future__ import annotations

import os
import pathlib
import re
import resource

import numpy as np
import pytest

from kcompile.codegen import cache
from kcompile import layers, models, optimizers

RNG = np.random.default_rng(0)
X = RNG.random((96, 20), dtype=np.float32)
Y = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 96)]


def mlp(nthreads=1, seed=1, width=64):
    from kcompile.initializers import set_seed
    set_seed(seed)
    # Fixed names: the cache key covers variable names, as a new process would have them.
    m = models.Sequential([layers.Dense(width, activation="relu", input_shape=(20,), name="d1"),
                           layers.Dense(64, activation="tanh", name="d2"),
                           layers.Dense(4, activation="softmax", name="d3")], name="mlp")
    m.compile(optimizer=optimizers.Adam(1e-2), loss="categorical_crossentropy",
              metrics=["accuracy"], nthreads=nthreads)
    return m


def train(m, steps=5):
    losses = [m.train_on_batch(X[:32], Y[:32])[0] for _ in range(steps)]
    return losses, m.get_weights(), m.predict(X, batch_size=32, verbose=0)


def entries(d: pathlib.Path):
    return sorted(d.rglob("*.kco"))


def test_cached_executable_equals_a_fresh_compile(tmp_path, monkeypatch):
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    fresh = mlp()
    a = train(fresh)
    assert entries(tmp_path), "the first compile wrote no cache entry"
    assert not next(iter(fresh._executables.values())).from_cache
    cached = mlp()
    b = train(cached)
    assert next(iter(cached._executables.values())).from_cache
    assert a[0] == b[0]
    for x, y in zip(a[1] + [a[2]], b[1] + [b[2]]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "other_key"])
def test_damaged_cache_entries_are_rebuilt_not_loaded(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    reference = train(mlp())
    (path,) = [p for p in entries(tmp_path)]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0xFF
        path.write_bytes(bytes(b))
    elif damage == "garbage":
        path.write_bytes(b"not an object file at all")
    else:   # an intact entry of another model, stored under this model's key
        train(mlp(width=48))
        (other,) = [p for p in entries(tmp_path) if p != path]
        path.write_bytes(other.read_bytes())
    m = mlp()
    again = train(m)
    assert not next(iter(m._executables.values())).from_cache
    assert again[0] == reference[0]
    np.testing.assert_array_equal(again[2], reference[2])
    # and the rebuilt entry is intact again
    assert cache.load(path.stem) is not None


def test_threads_bitwise_reproducible_and_close_to_one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    one = train(mlp(1))
    two_a = train(mlp(2))
    two_b = train(mlp(2))
    assert two_a[0] == two_b[0]
    for x, y in zip(two_a[1] + [two_a[2]], two_b[1] + [two_b[2]]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(two_a[0], one[0], rtol=1e-5)
    for x, y in zip(two_a[1], one[1]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_memory_stays_flat_over_many_steps():
    m = mlp()
    exe = None
    m.train_on_batch(X[:32], Y[:32])
    exe = next(iter(m._executables.values()))
    feeds = {"x0": X[:32], "y0": Y[:32], "mask": np.ones(32, np.float32),
             "sample_weight": np.ones(32, np.float32)}
    for _ in range(500):                        # warm up allocator caches
        exe.run("train_step", feeds)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(10_000):
        exe.run("train_step", feeds)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 2048, f"peak RSS grew by {grown_kb} KB over 10,000 steps"


@pytest.mark.parametrize("shape", [(4, 3, 6, False), (6, 3, 6, True), (100, 64, 400, True),
                                   (7, 5, 33, False), (13, 40, 130, False)])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_gemm_epilogue_updates_in_place_on_threads(shape, nthreads):
    """acc <- acc + op(A) @ B: the add runs on each product tile and writes the state in
    place; every tile must be computed by exactly one thread (a tile done twice would
    add twice)."""
    from kcompile.ir import builder as F
    from kcompile.ir.builder import Sym
    from kcompile.ir.graph import Graph, TensorType
    from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
    from kcompile.runtime.state import State
    M, K, N, ta = shape
    g = Graph()
    a = Sym(g, g.leaf("input", TensorType((K, M) if ta else (M, K)), "a"))
    b = Sym(g, g.leaf("input", TensorType((K, N)), "b"))
    acc = Sym(g, g.leaf("state", TensorType((M, N)), "acc"))
    g.updates[acc.id] = (acc + F.matmul(a, b, transpose_a=ta)).id
    g.outputs["total"] = F.sum(acc).id
    rng = np.random.default_rng(M * N)
    feeds = {"a": rng.random(g.type(a.id).shape, dtype=np.float32),
             "b": rng.random((K, N), dtype=np.float32)}
    finals = []
    for make in (lambda s: ReferenceExecutable({"f": g}, s),
                 lambda s: NativeExecutable({"f": g}, s, use_cache=False, nthreads=nthreads)):
        st = State([("acc", TensorType((M, N)))])
        st.assign("acc", np.ones((M, N)))
        exe = make(st)
        for _ in range(2):
            exe.run("f", feeds)
        finals.append(st["acc"].copy())
    np.testing.assert_allclose(finals[1], finals[0], rtol=2e-6 * K, atol=1e-5)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_gemm_epilogue_with_k_blocks(nthreads):
    """A long K (k-blocks of partial sums) with a bias + relu epilogue, product not kept."""
    from kcompile.ir import builder as F
    from kcompile.ir.builder import Sym
    from kcompile.ir.graph import Graph, TensorType
    from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
    from kcompile.runtime.state import State
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((70, 600)), "x"))
    w = Sym(g, g.leaf("input", TensorType((600, 90)), "w"))
    bias = Sym(g, g.leaf("input", TensorType((90,)), "b"))
    g.outputs["h"] = F.relu(x @ w + bias).id
    rng = np.random.default_rng(5)
    feeds = {"x": rng.standard_normal((70, 600), dtype=np.float32),
             "w": rng.standard_normal((600, 90), dtype=np.float32) * 0.05,
             "b": rng.standard_normal(90, dtype=np.float32)}
    ref = ReferenceExecutable({"f": g}, State([])).run("f", feeds)["h"]
    exe = NativeExecutable({"f": g}, State([]), use_cache=False, nthreads=nthreads)
    (k,) = [k for k in exe.entries["f"].fused.kernels if k.kind == "matmul"]
    assert {"add", "maximum"} <= {exe.entries["f"].fused.graph.nodes[m].op for m in k.members}
    np.testing.assert_allclose(exe.run("f", feeds)["h"], ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ the optimizer's update kernel
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("opt", ["adam", "rmsprop", "sgd"])
def test_updates_outside_gemm_epilogues_are_one_kernel_in_place(nthreads, opt):
    """Bias updates and the iteration counter: one `group` kernel, written in place,
    and the weights after 3 steps equal the reference interpreter's."""
    def make(backend):
        from kcompile.initializers import set_seed
        set_seed(3)
        # (d1 has no bias: before a BatchNormalization its gradient is rounding
        # noise, which Adam scales up to full steps)
        m = models.Sequential([layers.Dense(16, activation="relu", input_shape=(20,), name="d1",
                                            use_bias=False),
                               layers.BatchNormalization(name="bn"),
                               layers.Dense(4, activation="softmax", name="d2")])
        m.compile(optimizer=opt, loss="categorical_crossentropy", backend=backend,
                  nthreads=nthreads if backend == "native" else None)
        return m
    native, ref = make("native"), make("reference")
    for _ in range(3):
        native.train_on_batch(X[:32], Y[:32])
        ref.train_on_batch(X[:32], Y[:32])
    for a, b in zip(native.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    entry = next(iter(native._executables.values())).entries["train_step"]
    fg, plan = entry.fused, entry.plan
    groups = [k for k in fg.kernels if k.kind == "group"]
    assert len(groups) == 1, "\n".join(k.describe(fg.graph) for k in fg.kernels)
    g = fg.graph
    leaf_of = {u: leaf for leaf, u in g.updates.items()}
    updated = {g.nodes[leaf_of[o]].name for o in groups[0].outputs}
    # every bias, BN's gamma, beta and moving statistics, and the iteration counter
    for name in ("d2/bias", "bn/gamma", "bn/beta", "bn/moving_mean"):
        assert name in updated, (name, updated)
    if opt != "sgd":
        assert any(n.endswith("iterations") for n in updated), updated
    # no loop kernel of the optimizer is left outside the group
    assert not [k for k in fg.kernels if k.kind == "loop" and k.outputs
                and all(o in leaf_of for o in k.outputs)]
    in_place = {o for o in groups[0].outputs if plan.locations[o] == plan.locations[leaf_of[o]]}
    assert in_place == set(groups[0].outputs)


def test_identical_kernels_of_the_entries_are_compiled_once():
    m = mlp()
    m.train_on_batch(X[:32], Y[:32])
    m.evaluate(X[:32], Y[:32], batch_size=32, verbose=0)
    (exe,) = m._executables.values()
    defined = re.findall(r'define internal void @"([^"]+)"', exe.llvm_ir)
    kernels = [(e, k) for e, ent in exe.entries.items() for k in ent.fused.kernels
               if k.kind not in ("view", "scan")]
    assert len(set(defined)) == len(defined) < len(kernels)
    # the first layer's product + bias + relu: one function, called by all three entries
    calls = {e: re.findall(r'call void @"([^"]+)"', exe.llvm_ir.split(f'define void @"{e}"')[1]
                           .split("\n}\n")[0]) for e in exe.entries}
    assert calls["eval_step"][0] == calls["predict"][0] == calls["train_step"][0]


def test_barriers_hold_over_many_steps_of_a_recurrent_model():
    """~60 barriers per step (the scan's body, each time step) for 300 steps on 2
    threads: the same weights as a second run, bitwise, and as one thread, closely."""
    def run(nthreads):
        from kcompile.initializers import set_seed
        set_seed(5)
        m = models.Sequential([layers.LSTM(16, input_shape=(20, 3), name="l"),
                               layers.Dense(2, name="d")], name="rnn")
        m.compile(optimizer=optimizers.Adam(1e-2), loss="mse", nthreads=nthreads)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, 20, 3)).astype(np.float32)
        y = rng.standard_normal((8, 2)).astype(np.float32)
        m.train_on_batch(x, y)
        exe = next(iter(m._executables.values()))
        feeds = {"x0": x, "y0": y, "mask": np.ones(8, np.float32),
                 "sample_weight": np.ones(8, np.float32)}
        losses = [float(exe.run("train_step", feeds)["loss"]) for _ in range(300)]
        return losses, m.get_weights()
    a, b, one = run(2), run(2), run(1)
    assert a[0] == b[0] and a[0][-1] < a[0][0]
    for x, y, z in zip(a[1], b[1], one[1]):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_bad_thread_count_from_the_environment_is_named(monkeypatch, value):
    monkeypatch.setenv("KCOMPILE_NUM_THREADS", value)
    m = models.Sequential([layers.Dense(2, input_shape=(20,))])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="KCOMPILE_NUM_THREADS must be a positive integer"):
        m.train_on_batch(X[:4], Y[:4, :2])


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NUM_THREADS", "2")
    m = models.Sequential([layers.Dense(2, input_shape=(20,))])
    m.compile(optimizer="sgd", loss="mse")
    m.train_on_batch(X[:4], Y[:4, :2])
    assert next(iter(m._executables.values())).nthreads == 2


def test_independent_kernels_share_a_barrier_interval():
    """The 784-32-10 softmax MLP's training step on 2 threads: kernels in dependency
    levels (the loss's sample count no longer interleaves the forward chain), 7
    barriers where the fused order needed 10, plus the copy-back of the accuracy metric's
    running total (its update ends a reduction kernel); every other update written in
    place."""
    m = models.Sequential([layers.Dense(32, activation="relu", input_shape=(784,)),
                           layers.Dense(10, activation="softmax")])
    m.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"],
              nthreads=2)
    x = RNG.random((32, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 32)]
    m.train_on_batch(x, y)
    (exe,) = m._executables.values()
    body = exe.llvm_ir.split('define void @"train_step"')[1].split("\n}\n")[0]
    assert body.count("@\"kc_barrier\"") <= 8, body.count("@\"kc_barrier\"")
    # the one copy-back: the metric's running total, whose update ends a reduction kernel
    g = exe.entries["train_step"].fused.graph
    copied = [g.nodes[leaf].name for _, leaf in exe.entries["train_step"].plan.copies]
    assert copied in ([], ["accuracy/total"]), copied
