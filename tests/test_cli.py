"""The inspection tool: `kcompile inspect|summary|profile|bench` and model.compiled_graph().

For a tiny model (Dense(8, relu) on 4 inputs -> Dense(3, softmax), Adam) defined in a
temporary `file.py:function`:
  - every stage prints and holds what the stage must hold: a gradient per trainable
    weight (grad), an update per weight (update), fewer kernels than the optimized
    graph has ops (fused), an arena with each buffer's place and lifetime (memory),
    a `define` per kernel (llvm), vector registers in the matmul kernel (asm);
  - the JSON validates against the documented schema and round-trips;
  - a missing file, an unknown stage or entry, a function that does not return a
    model (and the like) name the problem and exit with status 2.
The CLI runs in-process through kcompile.cli.main, once through `python -m kcompile`.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from kcompile import cli
from kcompile import inspect as kinspect
from kcompile.inspect import JSON_SCHEMA, STAGES, CompiledView, InspectError

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCH = "4"

MODEL_SOURCE = '''
from kcompile import layers, models


def make():
    model = models.Sequential()
    model.add(layers.Dense(8, activation="relu", input_shape=(4,)))
    model.add(layers.Dense(3, activation="softmax"))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def uncompiled():
    model = models.Sequential()
    model.add(layers.Dense(8, activation="relu", input_shape=(4,)))
    model.add(layers.Dense(3, activation="softmax"))
    return model


def not_a_model():
    return {"layers": 2}


def broken():
    raise RuntimeError("no weights here")
'''


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_model.py"
    path.write_text(MODEL_SOURCE)
    return path


@pytest.fixture(scope="module")
def spec(model_file):
    return f"{model_file}:make"


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def inspect_json(capsys, spec, stage, *extra):
    rc, out, err = run(capsys, "inspect", spec, "--stage", stage, "--format", "json",
                       "--batch", BATCH, *extra)
    assert rc == 0, err
    return json.loads(out)


def params_of(text):
    return re.findall(r"= param '([^']+)'", text)


# ----------------------------------------------------------------------------- stages
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_prints(capsys, spec, stage):
    rc, out, err = run(capsys, "inspect", spec, "--stage", stage, "--batch", BATCH)
    assert rc == 0, err
    assert f"train_step @ {stage}" in out.splitlines()[0]
    if stage in ("trace", "grad", "update", "optimized", "fused"):
        assert out.rstrip().endswith("}")
        assert "input 'x0'" in out and "target 'y0'" in out
        assert len(params_of(out)) == 4          # two kernels and two biases
    if stage in ("trace", "grad", "update", "optimized"):
        # jaxpr-like lines: name:type = op[attrs] operands, the layer as a scope comment
        assert re.search(r"^\s+\w+:f32\[4,8\] = matmul\[transpose_a=False transpose_b=False\] "
                         r"\w+ \w+\s+# dense(_\d+)?$", out, re.M)
        assert re.search(r"= maximum \w+ 0\.0\s+# dense", out)   # relu, scalar inlined
    if stage == "trace":
        assert "loss =" in out and "grad/" not in out
        # before the optimizer stage, the only state updates are the metric's running sums
        updates = re.findall(r"^    (\S+) <- ", out, re.M)
        assert updates == ["accuracy/total", "accuracy/count"], updates


def test_grad_has_a_gradient_per_trainable_weight(capsys, spec):
    rc, out, _ = run(capsys, "inspect", spec, "--stage", "grad", "--batch", BATCH)
    assert rc == 0
    params = params_of(out)
    assert params
    for p in params:
        assert re.search(rf"^    grad/{re.escape(p)} = \w+$", out, re.M), p
    doc = inspect_json(capsys, spec, "grad")
    leaf_ids = {v["binding"]: v["id"] for v in doc["graph"]["values"] if v["role"] == "param"}
    assert set(doc["graph"]["gradients"]) == set(leaf_ids)
    by_id = {v["id"]: v for v in doc["graph"]["values"]}
    for name, gid in doc["graph"]["gradients"].items():
        assert by_id[gid]["shape"] == by_id[leaf_ids[name]]["shape"]


def test_update_has_an_update_per_weight_and_slot(capsys, spec):
    rc, out, _ = run(capsys, "inspect", spec, "--stage", "update", "--batch", BATCH)
    assert rc == 0
    for p in params_of(out):
        assert re.search(rf"^    {re.escape(p)} <- \w+$", out, re.M), p
    assert "grad/" not in out.split("  in (")[1]      # gradients consumed by the update
    assert re.search(r"<- \w+$", out, re.M) and "adam/iterations <-" in out


def test_fused_has_fewer_kernels_than_optimized_ops(capsys, spec):
    optimized = inspect_json(capsys, spec, "optimized")
    fused = inspect_json(capsys, spec, "fused")
    ops = [v for v in optimized["graph"]["values"] if v["op"] != "leaf"]
    kernels = [k for k in fused["kernels"] if k["kind"] != "view"]
    assert 0 < len(kernels) < len(ops) == optimized["stats"]["ops"]
    # every op of the optimized graph is in a kernel; one in several kernels is a cheap
    # elementwise value recomputed by each consumer (fuse's duplication), never a
    # matmul, reduction or scan
    members = [m for k in fused["kernels"] for m in k["members"]]
    assert set(members) == {v["id"] for v in ops}
    op_of = {v["id"]: v["op"] for v in ops}
    repeated = {m for m in members if members.count(m) > 1}
    assert not {op_of[m] for m in repeated} & {"matmul", "reduce_sum", "reduce_max", "scan"}
    rc, out, _ = run(capsys, "inspect", spec, "--stage", "fused", "--batch", BATCH)
    for k in fused["kernels"]:
        assert re.search(rf"^    {k['name']}: {k['kind']} over ", out, re.M)
    assert max(len(k["members"]) for k in kernels) > 1         # something was fused


def test_memory_stage(capsys, spec):
    rc, out, _ = run(capsys, "inspect", spec, "--stage", "memory", "--batch", BATCH)
    assert rc == 0
    assert re.search(r"^work arena \d+ B .*peak live \d+ B at ", out, re.M)
    assert re.search(r"^\s+buffer\s+type\s+region\s+offset\s+bytes\s+live", out, re.M)
    assert re.search(r"input 'x0'", out) and re.search(r"start\.\.k\d+", out)
    m = inspect_json(capsys, spec, "memory")["memory"]
    assert 0 < m["peak_bytes"] <= m["arena_bytes"]
    work = [b for b in m["buffers"] if b["region"] == "work" and b["alias_of"] is None]
    assert work and all(b["offset"] + b["bytes"] <= m["arena_bytes"] for b in work)
    for a in work:      # two buffers live at the same time never overlap
        for b in work:
            if a is not b and not (a["end"] < b["start"] or b["end"] < a["start"]):
                assert a["offset"] + a["bytes"] <= b["offset"] or \
                    b["offset"] + b["bytes"] <= a["offset"], (a, b)
    assert any(b["in_place"] for b in m["buffers"])       # the weights are updated in place


def test_llvm_has_a_define_per_kernel(capsys, spec):
    fused = inspect_json(capsys, spec, "fused")
    code = [k["name"] for k in fused["kernels"] if k["kind"] != "view"]
    for extra in ((), ("--optimized",)):
        rc, out, _ = run(capsys, "inspect", spec, "--stage", "llvm", "--batch", BATCH, *extra)
        assert rc == 0
        defines = re.findall(r"^define .*@\"?train_step\.(k\d+_\w+)\"?\(", out, re.M)
        assert defines == code
        assert re.search(r"^define .*@\"?train_step\"?\(", out, re.M)     # the entry point
    rc, out, _ = run(capsys, "inspect", spec, "--stage", "llvm", "--kernel", "k0",
                     "--batch", BATCH)
    assert rc == 0 and len(re.findall(r"^define ", out, re.M)) == 1


def test_asm_matmul_kernel_uses_vector_registers(capsys, spec):
    doc = inspect_json(capsys, spec, "asm")
    matmuls = [f for f in doc["functions"] if f["kind"] == "matmul"]
    assert matmuls
    for f in matmuls:
        assert re.search(r"%[yz]mm\d+", f["text"]), f["text"][:400]
    assert "avx512f" in doc["target"]["features"] or "avx2" in doc["target"]["features"]
    if "avx512f" in doc["target"]["features"]:
        assert any("%zmm" in f["text"] for f in matmuls)
    name = matmuls[0]["kernel"]
    rc, out, _ = run(capsys, "inspect", spec, "--stage", "asm", "--kernel", name,
                     "--batch", BATCH)
    assert rc == 0 and f"{name}:" in out and re.search(r"%[yz]mm", out)


def test_narrowed_views_keep_names(capsys, spec):
    rc, full, _ = run(capsys, "inspect", spec, "--stage", "fused", "--batch", BATCH)
    rc, one, _ = run(capsys, "inspect", spec, "--stage", "fused", "--kernel", "k1",
                     "--batch", BATCH)
    assert rc == 0
    body = [l for l in one.splitlines() if l.startswith("        ")]
    assert body and all(l in full.splitlines() for l in body)


def test_other_entries(capsys, spec):
    for entry in ("eval_step", "predict"):
        rc, out, err = run(capsys, "inspect", spec, "--entry", entry, "--stage", "fused",
                           "--batch", BATCH)
        assert rc == 0, err
        assert f"{entry} @ fused" in out
    rc, out, _ = run(capsys, "inspect", spec, "--entry", "predict", "--stage", "trace")
    assert rc == 0 and "y0 = " in out and "loss" not in out


# ----------------------------------------------------------------------------- python API
def test_python_api(model_file):
    sys.path.insert(0, str(model_file.parent))
    try:
        import tiny_model
    finally:
        sys.path.remove(str(model_file.parent))
    model = tiny_model.make()
    view = model.compiled_graph("train_step", stage="fused")
    assert isinstance(view, CompiledView)
    text = str(view)
    assert "train_step @ fused" in text and "batch 32" in text
    assert re.search(r"k\d+_\w+: matmul over \(32,8\)", text)
    doc = json.loads(view.to_json())
    assert doc["stage"] == "fused" and doc["kernels"]
    dot = view.to_dot()
    assert dot.startswith("digraph") and dot.rstrip().endswith("}") and "cluster_k0" in dot
    with pytest.raises(InspectError, match="unknown stage 'bogus'"):
        model.compiled_graph("train_step", stage="bogus")
    with pytest.raises(ValueError, match="unknown entry 'fit'"):
        model.compiled_graph("fit")
    with pytest.raises(InspectError, match="only for the train_step"):
        model.compiled_graph("predict", stage="grad")
    with pytest.raises(InspectError, match="no DOT view"):
        model.compiled_graph("predict", stage="asm", batch_size=2).to_dot()


def test_what_is_shown_is_what_runs(model_file, monkeypatch):
    """The inspected kernels, arena and LLVM functions are those of the executable the
    trainer compiles for the same batch size."""
    import numpy as np
    monkeypatch.setenv("KCOMPILE_NO_CACHE", "1")
    sys.path.insert(0, str(model_file.parent))
    try:
        import tiny_model
    finally:
        sys.path.remove(str(model_file.parent))
    model = tiny_model.make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 4)]
    model.train_on_batch(x, y)
    (exe,) = model._executables.values()
    for entry in ("train_step", "predict"):
        real = exe.entries[entry]
        fused = model.compiled_graph(entry, stage="fused", batch_size=4).doc
        assert [k["name"] for k in fused["kernels"]] == [k.name for k in real.fused.kernels]
        memory = model.compiled_graph(entry, stage="memory", batch_size=4).doc["memory"]
        assert memory["arena_bytes"] == real.plan.work_bytes
        llvm = model.compiled_graph(entry, stage="llvm", batch_size=4).doc
        for f in llvm["functions"]:
            if f["kernel"] is not None:
                # the same code (a kernel identical to another entry's calls that one)
                body = f["text"][f["text"].index("("):]
                assert f["text"] and body in exe.llvm_ir, f["symbol"]


# ----------------------------------------------------------------------------- JSON
def _validator():
    import jsonschema      # part of the project's test extra
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)
    return jsonschema.Draft202012Validator(JSON_SCHEMA)


def test_json_validates_and_round_trips(model_file):
    validator = _validator()
    sys.path.insert(0, str(model_file.parent))
    try:
        import tiny_model
    finally:
        sys.path.remove(str(model_file.parent))
    model = tiny_model.make()
    session = kinspect.Session(model, 2)
    cases = [(e, s) for e in ("train_step", "eval_step", "predict") for s in STAGES
             if s not in ("grad", "update") or e == "train_step"]
    cases += [("train_step", "llvm", "opt"), ("train_step", "memory", "k3"),
              ("train_step", "fused", "k0")]
    for case in cases:
        entry, stage = case[:2]
        extra = case[2] if len(case) > 2 else None
        doc = session.document(entry, stage, kernel=extra if extra not in (None, "opt") else None,
                               optimized=extra == "opt")
        view = CompiledView(doc)
        text = view.to_json()
        errors = sorted(validator.iter_errors(json.loads(text)), key=str)
        assert not errors, (case, errors[0])
        back = CompiledView.from_json(text)
        assert back.to_json() == text
        assert str(back) == str(view)
        assert json.loads(text) == view.to_dict()
        if stage not in ("llvm", "asm"):
            assert back.to_dot() == view.to_dot()
    with pytest.raises(InspectError):
        CompiledView.from_json('{"format": "something-else"}')


def test_schema_flag_and_documentation(capsys):
    rc, out, _ = run(capsys, "inspect", "--schema")
    assert rc == 0 and json.loads(out) == json.loads(json.dumps(JSON_SCHEMA))
    doc = (ROOT / "docs" / "inspect-json.md").read_text()
    for key in list(JSON_SCHEMA["properties"]) + list(JSON_SCHEMA["$defs"]):
        assert f"`{key}`" in doc, key
    for name, d in JSON_SCHEMA["$defs"].items():
        for key in d.get("properties", {}):
            assert f"`{key}`" in doc, f"{name}.{key}"


# ----------------------------------------------------------------------------- DOT
def test_dot(capsys, spec, tmp_path, monkeypatch):
    rc, out, _ = run(capsys, "inspect", spec, "--stage", "trace", "--format", "dot",
                     "--batch", BATCH)
    assert rc == 0 and out.startswith("digraph") and "cluster_s" in out
    dot = shutil.which("dot")
    if dot:
        for stage in ("optimized", "fused", "memory"):
            rc, out, _ = run(capsys, "inspect", spec, "--stage", stage, "--format", "dot",
                             "--batch", BATCH)
            res = subprocess.run([dot, "-Tsvg"], input=out, capture_output=True, text=True)
            assert res.returncode == 0 and "<svg" in res.stdout, res.stderr
        rc, _, err = run(capsys, "inspect", spec, "--out", tmp_path / "g.svg", "--batch", BATCH)
        assert rc == 0 and "<svg" in (tmp_path / "g.svg").read_text()
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    rc, _, err = run(capsys, "inspect", spec, "--out", tmp_path / "h.png", "--batch", BATCH)
    assert rc == 1 and "Graphviz is not installed" in err
    assert (tmp_path / "h.dot").read_text().startswith("digraph")
    rc, _, err = run(capsys, "inspect", spec, "--stage", "asm", "--format", "dot")
    assert rc == 2 and "no DOT view" in err
    rc, _, err = run(capsys, "inspect", spec, "--format", "text", "--out", tmp_path / "x.svg")
    assert rc == 2


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("argv, message", [
    (["inspect", "{dir}/missing.py:make"], "no such file: {dir}/missing.py"),
    (["inspect", "{dir}/missing.h5"], "no such file"),
    (["inspect", "{spec}", "--stage", "bogus"], "invalid choice: 'bogus'"),
    (["inspect", "{spec}", "--entry", "fit"], "invalid choice: 'fit'"),
    (["inspect", "{file}:not_a_model"], "returned dict {{'layers': 2}}, not a kcompile model"),
    (["inspect", "{file}:broken"], "raised RuntimeError: no weights here"),
    (["inspect", "{file}:nothing"], "has no function 'nothing'; it defines broken, make"),
    (["inspect", "{file}"], "name the function"),
    (["inspect", "{file}:uncompiled", "--entry", "train_step"], "is not compiled"),
    (["inspect", "{spec}", "--entry", "predict", "--stage", "grad"], "only for the train_step"),
    (["inspect", "{spec}", "--kernel", "k999"], "no kernel 'k999' in train_step"),
    (["inspect", "{spec}", "--stage", "trace", "--kernel", "k0"], "no kernels before fusion"),
    (["inspect", "{spec}", "--stage", "asm", "--optimized"], "--optimized applies to"),
    (["inspect", "{spec}", "--batch", "0"], "expected a positive integer"),
    (["inspect", "{dir}/garbage.h5"], "garbage.h5"),
    (["inspect"], "MODEL argument is required"),
    (["summary", "{dir}/missing.py:make"], "no such file"),
    (["profile", "{file}:not_a_model"], "not a kcompile model"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_errors_exit_2(capsys, model_file, argv, message):
    (model_file.parent / "garbage.h5").write_bytes(b"not hdf5")
    fill = {"dir": model_file.parent, "file": model_file, "spec": f"{model_file}:make"}
    rc, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert rc == 2
    assert message.format(**fill) in err, err


def test_saved_model(capsys, model_file, tmp_path):
    assert cli._saved_model_loader() is not None
    model = cli.load_model(f"{model_file}:make")
    path = tmp_path / "tiny.h5"
    model.save(str(path))
    rc, out, err = run(capsys, "inspect", path, "--stage", "fused", "--batch", BATCH)
    assert rc == 0, err
    assert "train_step @ fused" in out and "param '" in out


def test_uncompiled_model_defaults_to_predict(capsys, model_file):
    rc, out, err = run(capsys, "inspect", f"{model_file}:uncompiled", "--stage", "optimized")
    assert rc == 0, err
    assert "predict @ optimized" in out


# ----------------------------------------------------------------------------- commands
def test_summary(capsys, spec):
    rc, out, err = run(capsys, "summary", spec, "--batch", BATCH)
    assert rc == 0, err
    assert "Total params: 67" in out and "Output Shape" in out
    table = out.split("Compiled (batch 4")[1]
    for entry in ("train_step", "eval_step", "predict"):
        row = re.search(rf"^\s+{entry}\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+\S+ \(\d+ ops\)\s+"
                        rf"[\d.]+ (B|KiB|MiB)\s+[\d.]+ k?FLOP$", table, re.M)
        assert row, table
        ops, kernels = int(row.group(1)), int(row.group(2))
        assert 0 < kernels < ops or entry == "predict"


def test_profile(capsys, spec):
    rc, out, err = run(capsys, "profile", spec, "--batch", BATCH, "--steps", "5", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["entry"] == "train_step" and data["step_seconds"] > 0
    assert data["machine"]["gflops"] > 0 and data["machine"]["levels"]
    rows = data["kernels"]
    assert rows and all(r["seconds"] > 0 and r["repetitions"] >= 5 for r in rows)
    # (a matmul kernel also counts the bias and activation fused after it)
    assert any(r["kind"] == "matmul" and r["flops"] >= 2 * 4 * 8 * 4 for r in rows)
    rc, out, err = run(capsys, "profile", spec, "--batch", BATCH, "--steps", "5", "--top", "3")
    assert rc == 0, err
    header = next(l for l in out.splitlines() if l.strip().startswith("kernel"))
    for col in ("time us", "step %", "FLOP", "bytes", "GFLOP/s", "%peak", "%roof"):
        assert col in header
    assert re.search(r"peak [\d.]+ GFLOP/s per core", out)
    assert re.search(r"\.\.\. \d+ more kernels", out)


def test_bench_runs_the_benchmark_script(capsys):
    if not cli.benchmark_script().is_file():
        pytest.skip("no examples/benchmarks in this installation")
    rc, out, err = run(capsys, "bench", "--workloads", "W6a", "--peers", "numpy",
                       "--steps", "3", "--seconds", "0")
    assert rc == 0, err
    assert "W6a" in out and re.search(r"^\s+numpy\s+[\d.]+ms", out, re.M)


def test_python_m_kcompile(spec, model_file):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-m", "kcompile", "inspect", spec, "--stage", "fused",
                          "--batch", "2"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert "train_step @ fused" in res.stdout
    res = subprocess.run([sys.executable, "-m", "kcompile", "inspect", f"{model_file}:broken"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 2 and "raised RuntimeError: no weights here" in res.stderr
