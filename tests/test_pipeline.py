"""One compile pipeline (runtime/pipeline.py) shared by the runtime and the inspection tool.

After a model trains, the executable it runs and what `compiled_graph` / `kcompile
inspect` show are the same stage objects (not equal ones: the same), and showing
them runs no pass again; an executable loaded from the disk cache ran no stage after
the update, and builds them when asked; the thread count is decided once.
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import inspect as kinspect
from kcompile import layers, models
from kcompile.ir.passes import GRAD_PREFIX
from kcompile.runtime import pipeline as pipeline_mod

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 6)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 8)]


def mlp(backend="native", nthreads=None):
    from kcompile.initializers import set_seed
    set_seed(1)
    m = models.Sequential([layers.Dense(5, activation="relu", input_shape=(6,), name="d1"),
                           layers.Dense(3, activation="softmax", name="d2")], name="mlp")
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"],
              backend=backend, nthreads=nthreads)
    return m


class Counted:
    """Wraps a pass of runtime/pipeline.py and counts its calls."""

    def __init__(self, monkeypatch, name):
        self.calls = 0
        real = getattr(pipeline_mod, name)

        def counted(*a, **k):
            self.calls += 1
            return real(*a, **k)
        monkeypatch.setattr(pipeline_mod, name, counted)


def test_inspection_reads_the_stages_the_executable_was_built_from(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    m = mlp()
    m.train_on_batch(X, Y)
    (exe,) = m._executables.values()
    (pipeline,) = m._pipelines.values()
    assert exe.pipeline is pipeline
    passes = [Counted(monkeypatch, name) for name in
              ("autodiff", "optimizer_step", "simplify", "fuse", "plan_memory", "build_module")]
    session = kinspect.Session(m, len(X))
    assert session.pipeline() is pipeline
    for entry in ("train_step", "eval_step", "predict"):
        assert session.fused(entry) is exe.entries[entry].fused
        assert session.plan(entry) is exe.entries[entry].plan
        assert session.graph(entry, "optimized") is pipeline.optimized(entry)
        for stage in ("trace", "optimized", "fused", "memory", "llvm"):
            m.compiled_graph(entry, stage, batch_size=len(X))
    for stage in ("grad", "update"):
        m.compiled_graph("train_step", stage, batch_size=len(X))
    assert [p.calls for p in passes] == [0] * len(passes), "a pass ran again to be shown"
    # the shown kernels are the executable's
    doc = m.compiled_graph("train_step", "fused", batch_size=len(X)).doc
    assert [k["name"] for k in doc["kernels"]] == \
        [k.name for k in exe.entries["train_step"].fused.kernels]
    assert session.nthreads == exe.nthreads


def test_the_pipelines_stages_are_the_training_program():
    """grad: a gradient output per trainable weight; update: an update per weight and
    optimizer slot, the gradients consumed; optimized: the update stage simplified."""
    m = mlp()
    m.train_on_batch(X, Y)
    (p,) = m._pipelines.values()
    grad, update = p.grad("train_step"), p.update("train_step")
    paths = {w.path for w in m.trainable_weights}
    assert {k[len(GRAD_PREFIX):] for k in grad.outputs if k.startswith(GRAD_PREFIX)} == paths
    updated = {update.nodes[leaf].name for leaf in update.updates}
    assert paths <= updated and any("iterations" in n for n in updated)
    assert not [k for k in update.outputs if k.startswith(GRAD_PREFIX)]
    assert p.graph("train_step") is update and p.graph("predict") is p.trace("predict")
    assert not p.differentiated("predict")
    with pytest.raises(ValueError, match="not differentiated"):
        p.grad("eval_step")


def test_a_cache_hit_runs_no_stage_after_update_until_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    fresh = mlp()
    fresh.train_on_batch(X, Y)
    (fresh_exe,) = fresh._executables.values()
    fuse = Counted(monkeypatch, "fuse")
    build = Counted(monkeypatch, "build_module")
    cached = mlp()
    cached.train_on_batch(X, Y)
    (exe,) = cached._executables.values()
    assert exe.from_cache and fuse.calls == 0 and build.calls == 0
    assert not exe.pipeline._stages.keys() & {"llvm", "object", ("memory", "train_step")}
    # asked for: built from the same pipeline, the same kernels and code as the fresh compile
    view = cached.compiled_graph("train_step", "fused", batch_size=len(X))
    assert fuse.calls == 1
    assert exe.entries["train_step"].fused is exe.pipeline.fused("train_step")
    assert view.kernel_names == [k.name for k in fresh_exe.entries["train_step"].fused.kernels]
    assert exe.llvm_ir == fresh_exe.llvm_ir and build.calls == 1
    np.testing.assert_array_equal(cached.predict(X, verbose=0), fresh.predict(X, verbose=0))


def test_another_thread_count_shares_the_graph_stages(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    m = mlp(nthreads=1)
    m.train_on_batch(X, Y)
    (p,) = m._pipelines.values()
    two = p.with_threads(2)
    assert p.nthreads == 1 and two.nthreads == 2 and p.with_threads(2) is two
    assert two.fused("train_step") is p.fused("train_step")
    assert two.memory("train_step") is not p.memory("train_step")
    # inspecting for 2 threads reads that pipeline; the model's stays as it ran
    session = kinspect.Session(m, len(X), nthreads=2)
    assert session.pipeline() is two and session.nthreads == 2
    assert m.compiled_graph("train_step", "memory", batch_size=len(X)).doc["nthreads"] == 1


def test_inspecting_first_then_training_compiles_the_inspected_stages(monkeypatch):
    """The pipeline inspection makes is the model's: fit at that size builds from it."""
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    m = mlp()
    fused = kinspect.Session(m, len(X)).fused("train_step")
    m.train_on_batch(X, Y)
    (exe,) = m._executables.values()
    assert exe.entries["train_step"].fused is fused


def test_reference_backend_runs_the_optimized_stage():
    m = mlp(backend="reference")
    m.train_on_batch(X, Y)
    (exe,) = m._executables.values()
    for entry, g in exe.graphs.items():
        assert g is exe.pipeline.optimized(entry)
    native = mlp()
    native.train_on_batch(X, Y)
    for a, b in zip(m.get_weights(), native.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
