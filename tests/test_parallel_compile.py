"""A module compiled in partitions on several threads (codegen/partition.py, codegen/jit.py).

* the partitions together define each function of the module exactly once, and each
  is a valid module on its own;
* a program compiled in partitions trains to the same numbers as the same program
  compiled whole, and as the reference interpreter;
* what inspection shows (optimized IR, assembly) still holds every kernel;
* packed objects round-trip and a truncated pack is refused;
* a cache entry made for another CPU or by another compiler version is not loaded.
"""
from __future__ import annotations

import numpy as np
import pytest

from fixtures import compile_cases
from kcompile.codegen import cache, jit, partition
from kcompile.runtime import pipeline as pipeline_mod

X, Y = compile_cases.batch(3, 16, 12, 4)


def model(backend="native"):
    return compile_cases.mlp("pmlp", 7, 12, [(24, "tanh", "d1"), (16, "relu", "d2"),
                                             (4, "softmax", "d3")], backend)


def train(m, steps=4):
    return compile_cases.train(m, X, Y, steps)


def compiled(monkeypatch, threads):
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    monkeypatch.setenv("KCOMPILE_COMPILE_THREADS", str(threads))
    m = model()
    result = train(m)
    (exe,) = m._executables.values()
    return m, exe.pipeline, result


def test_partitions_define_every_function_once_and_each_is_a_module(monkeypatch):
    _, p, _ = compiled(monkeypatch, 1)
    text = p.llvm_ir()
    whole = [f.name for f in partition.parse(text).functions]
    parts = partition.split(text, 3)
    assert len(parts) == 3
    defined = [f.name for part in parts for f in partition.parse(part).functions]
    assert sorted(defined) == sorted(whole) and len(set(defined)) == len(defined)
    for part in parts:
        jit.parse(part).verify()      # each declares what it calls in the others
    assert partition.split(text, 1) == [text]


def test_a_program_compiled_in_partitions_equals_the_whole_and_the_reference(monkeypatch):
    _, p_whole, whole = compiled(monkeypatch, 1)
    _, p_split, split = compiled(monkeypatch, 3)
    assert len(jit.unpack(p_whole.compiled().obj)) == 1
    assert len(jit.unpack(p_split.compiled().obj)) > 1
    # the same functions optimized by the same passes: the same numbers
    np.testing.assert_allclose(split[0], whole[0], rtol=1e-6)
    for a, b in zip(split[1] + [split[2]], whole[1] + [whole[2]]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    reference = train(model("reference"))
    np.testing.assert_allclose(split[0], reference[0], rtol=1e-4)
    for a, b in zip(split[1] + [split[2]], reference[1] + [reference[2]]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_inspection_of_a_partitioned_program_shows_every_kernel(monkeypatch):
    m, p, _ = compiled(monkeypatch, 3)
    names = [f.name for f in partition.parse(p.llvm_ir()).functions]
    optimized = p.optimized_llvm_ir()
    assembly = p.assembly()
    for name in names:
        assert f'@"{name}"(' in optimized or f"@{name}(" in optimized, name
        assert f"{name}:" in assembly, name
    view = m.compiled_graph("train_step", "asm", batch_size=len(X))
    functions = view.doc["functions"]
    assert functions and all(f["text"] for f in functions)


def test_packed_objects_round_trip_and_a_truncated_pack_is_refused():
    objs = [b"first object", b"", b"third" * 100]
    packed = jit.pack(objs)
    assert jit.unpack(packed) == objs
    assert jit.unpack(jit.pack([b"one"])) == [b"one"]
    with pytest.raises(ValueError, match="truncated"):
        jit.unpack(packed[:-10])


def test_a_bad_compile_thread_count_is_named(monkeypatch):
    for bad in ("two", "0"):
        monkeypatch.setenv("KCOMPILE_COMPILE_THREADS", bad)
        with pytest.raises(ValueError, match="KCOMPILE_COMPILE_THREADS"):
            jit.compile_threads()


@pytest.mark.parametrize("change", ["cpu", "compiler"])
def test_a_cache_entry_of_another_cpu_or_compiler_version_is_not_loaded(tmp_path, monkeypatch,
                                                                       change):
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KCOMPILE_NO_CACHE", raising=False)   # the test needs the cache on
    first = model()
    train(first, 1)
    again = model()
    train(again, 1)
    assert next(iter(again._executables.values())).from_cache
    if change == "cpu":
        real = pipeline_mod.fingerprint
        monkeypatch.setattr(pipeline_mod, "fingerprint", lambda: real() + "|another cpu")
    else:
        monkeypatch.setattr(cache, "compiler_version", lambda: "another version")
    other = model()
    result = train(other, 1)
    assert not next(iter(other._executables.values())).from_cache
    assert np.isfinite(result[0]).all()


def test_the_module_text_reusing_printed_functions_is_the_modules_text(monkeypatch):
    from kcompile.codegen.module import build_module, module_text
    _, p, _ = compiled(monkeypatch, 1)
    module = build_module([p.memory(e) for e in p.entries], p.nthreads, bind_io=True)
    assert module_text(module) == str(module)
    assert module_text(module) == p.llvm_ir()
