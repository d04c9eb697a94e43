"""Kernels compiled while the module is still being lowered (codegen/jit.py's Stream).

* the big hot kernels are handed over as they are lowered, the rest when the module
  is built: every function is compiled exactly once;
* the program trains to the numbers of the same module compiled after it was built,
  and of the reference interpreter;
* a module that fails to build stops the compiling threads.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from fixtures import compile_cases
from kcompile.codegen import jit, module as module_mod, partition, sync

X, Y = compile_cases.batch(9, 32, 256, 2)


def model(backend="native"):
    return compile_cases.mlp("streamed", 13, 256, [(256, "relu", "a"), (128, "relu", "b"),
                                                   (2, "softmax", "head")], backend)


def train(m, steps=3):
    return compile_cases.train(m, X, Y, steps)


class Recorder(jit.Stream):
    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Recorder.made.append(self)


def test_streamed_kernels_compile_once_and_train_as_the_whole_module(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    monkeypatch.setenv("KCOMPILE_COMPILE_THREADS", "2")
    Recorder.made = []
    monkeypatch.setattr(jit, "Stream", Recorder)
    m = model()
    streamed = train(m)
    (exe,) = m._executables.values()
    p = exe.pipeline
    (stream,) = Recorder.made
    names = [f.name for f in partition.parse(p.llvm_ir()).functions]
    assert stream.streamed and stream.streamed < set(names)
    assert not stream.streamed & p.llvm().cold_functions
    defined = [f.name for text in p.object().optimized_parts
               for f in partition.parse(text).functions if f.name not in (*sync.SYMBOLS, "kc_barrier")]
    assert sorted(defined) == sorted(names)
    # the same module compiled after it was built
    monkeypatch.setenv("KCOMPILE_COMPILE_THREADS", "1")
    Recorder.made = []
    whole = train(model())
    assert not Recorder.made
    np.testing.assert_allclose(streamed[0], whole[0], rtol=1e-6)
    for a, b in zip(streamed[1] + [streamed[2]], whole[1] + [whole[2]]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    reference = train(model("reference"))
    np.testing.assert_allclose(streamed[0], reference[0], rtol=1e-4)
    for a, b in zip(streamed[1] + [streamed[2]], reference[1] + [reference[2]]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_a_module_that_fails_to_build_stops_the_compiling_threads(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    monkeypatch.setenv("KCOMPILE_COMPILE_THREADS", "2")
    emit_entry = module_mod.emit_entry
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:         # after the first entry's kernels were handed over
            raise RuntimeError("lowering failed")
        return emit_entry(*args, **kwargs)
    monkeypatch.setattr(module_mod, "emit_entry", failing)
    m = model()
    with pytest.raises(RuntimeError, match="lowering failed"):
        m.train_on_batch(X, Y)
    assert not [t for t in threading.enumerate() if t.name.startswith("kcompile-llvm")]
