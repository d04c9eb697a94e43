"""Lambda layers and what a model file may make the loader do.

* Lambda: the function traced as a call (compiled == reference, input gradient vs
  finite differences), `arguments`, `mask`, `training`, several inputs, output_shape;
* safe mode, as Keras 3: a saved Python lambda is refused by load_model (.keras and
  .h5), model_from_json, layers.deserialize and Lambda.from_config unless
  safe_mode=False or config.enable_unsafe_deserialization(); the error names the
  layer and the flag. Crafted files whose lambda would write a file show that
  nothing runs when refused (and that the payload is real: it runs when allowed);
* the rest of a model file (layer, initializer, activation, loss, optimizer and
  function entries, `module` and `registered_name` fields, HDF5 attributes) can name
  only registered or kcompile's own classes and functions: a config naming anything
  else (os.system, subprocess.Popen, a module kcompile imports) raises.
"""
from __future__ import annotations

import contextlib
import json
import os
import zipfile

import h5py
import numpy as np
import pytest

import kcompile
from kcompile import config, layers, models, ops, saving
from kcompile.ir import builder as F
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State
from kcompile.tracing import Trace, tracing

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "small")


@contextlib.contextmanager
def unsafe_enabled():
    from kcompile import config as cfg
    saved = dict(cfg._settings)
    cfg.enable_unsafe_deserialization()
    try:
        yield
    finally:
        cfg._settings.clear()
        cfg._settings.update(saved)


# ----------------------------------------------------------------------- the layer
def _input_graph(make, shapes, seed=0):
    trace = Trace()
    rng = np.random.default_rng(seed)
    with tracing(trace):
        xs = [trace.input(f"x{i}", s) for i, s in enumerate(shapes)]
        y = make()(xs if len(xs) > 1 else xs[0])
        r = trace.input("r", y.shape)
        trace.graph.outputs["y"] = y.id
        trace.graph.outputs["loss"] = F.sum(y * r).id
    feeds = {f"x{i}": rng.normal(size=s).astype(np.float32) for i, s in enumerate(shapes)}
    feeds["r"] = rng.normal(size=y.shape).astype(np.float32)
    return autodiff(trace.graph, wrt_role="input"), feeds


LAMBDA_CASES = {
    "square-plus-arg": (lambda: layers.Lambda(lambda x, c: ops.square(x) + c,
                                              arguments={"c": 0.5}), [(2, 5)],
                        lambda x: x * x + 0.5),
    "two-inputs": (lambda: layers.Lambda(lambda t: t[0] * ops.tanh(t[1])), [(3, 4), (3, 4)],
                   lambda a, b: a * np.tanh(b)),
    "reduce": (lambda: layers.Lambda(lambda x: ops.sum(ops.exp(x), axis=-1, keepdims=True)),
               [(2, 3, 4)], lambda x: np.exp(x).sum(-1, keepdims=True)),
}


@pytest.mark.parametrize("case", sorted(LAMBDA_CASES))
def test_lambda_compiled_matches_reference_and_numpy_and_fd(case):
    make, shapes, ref = LAMBDA_CASES[case]
    g, feeds = _input_graph(make, shapes)
    want = ref(*[feeds[f"x{i}"].astype(np.float64) for i in range(len(shapes))])
    got = ReferenceExecutable({"e": g}, State([])).run("e", feeds)
    np.testing.assert_allclose(got["y"], want, rtol=1e-5, atol=1e-6)
    native = NativeExecutable({"e": g}, State([])).run("e", feeds)
    for k in got:
        np.testing.assert_allclose(native[k], got[k], rtol=1e-5, atol=1e-5, err_msg=k)
    f64 = {k: v.astype(np.float64) for k, v in feeds.items()}
    grad = interpret(g, f64, float64=True)[0]["grad/x0"]
    x = f64["x0"]
    for flat in range(0, x.size, max(1, x.size // 6)):
        idx = np.unravel_index(flat, x.shape)
        vals = []
        for s in (1, -1):
            xp = x.copy()
            xp[idx] += s * 1e-6
            vals.append(interpret(g, {**f64, "x0": xp}, float64=True)[0]["loss"])
        np.testing.assert_allclose(grad[idx], (vals[0] - vals[1]) / 2e-6, rtol=1e-5, atol=1e-6)


def test_lambda_training_and_mask_arguments_and_output_shape():
    seen = {}

    def fn(x, training=None, mask=None):
        seen["training"], seen["mask"] = training, mask
        return x * 2.0

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    layer = layers.Lambda(fn, output_shape=(3,))
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), 2 * x)
    assert seen["training"] is True
    assert layer.compute_output_shape((None, 3)) == (None, 3)
    masked = layers.Lambda(lambda x: x, mask=lambda inputs, mask: ops.greater(inputs, 2.0))
    model = models.Sequential([layers.Input((4,)), masked,
                               layers.Lambda(lambda x, mask=None: x if mask is None
                                             else x * ops.cast(mask, "float32"))])
    xs = np.array([[1.0, 3.0, 2.0, 5.0]], np.float32)
    np.testing.assert_allclose(model.predict(xs, verbose=0), xs * (xs > 2.0))


def test_lambda_bad_function_raises():
    with pytest.raises(ValueError, match="callable"):
        layers.Lambda(3)


def _named(x):
    return ops.relu(x) - 1.0


def test_named_function_saves_by_name_and_needs_registration(tmp_path):
    model = models.Sequential([layers.Input((3,)), layers.Lambda(_named, name="named")])
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    cfg = json.loads(zipfile.ZipFile(path).read("config.json"))
    entry = cfg["config"]["layers"][1]["config"]["function"]
    assert entry["class_name"] == "function" and entry["config"] == "_named"
    with pytest.raises(ValueError, match="_named"):
        models.load_model(path)
    loaded = models.load_model(path, custom_objects={"_named": _named})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), np.maximum(x, 0) - 1.0)


# ----------------------------------------------------------------------- safe mode
def _payload_model(marker, kind="function"):
    """A model whose Lambda writes `marker` when its code runs (here: while traced)."""
    def writes(x):
        with open(marker, "w") as f:
            f.write("ran")
        return x
    fn = lambda x: (open(marker, "w").write("ran"), x)[1]  # noqa: E731
    if kind == "function":
        layer = layers.Lambda(fn, name="evil_lambda")
    else:                       # the lambda hidden in output_shape
        layer = layers.Lambda(ops.relu, output_shape=lambda s: (open(marker, "w").write("ran"),
                                                                s)[1], name="evil_lambda")
    del writes
    return models.Sequential([layers.Input((2,)), layers.Dense(2), layer])


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("kind", ["function", "output_shape"])
def test_crafted_file_with_lambda_is_refused_and_runs_nothing(tmp_path, ext, kind):
    marker = tmp_path / "pwned.txt"
    model = _payload_model(str(marker), kind)
    path = str(tmp_path / f"evil.{ext}")
    model.save(path)
    if marker.exists():
        marker.unlink()
    with pytest.raises(ValueError) as e:
        models.load_model(path)
    msg = str(e.value)
    assert "'evil_lambda'" in msg and "safe_mode=False" in msg \
        and "enable_unsafe_deserialization()" in msg and f"`{kind}`" in msg
    assert not marker.exists()
    with pytest.raises(ValueError, match="evil_lambda"):
        saving.load_model(path, safe_mode=True)
    assert not marker.exists()
    # The payload is real: allowed, loading runs it.
    loaded = models.load_model(path, safe_mode=False)
    if kind == "output_shape":
        loaded.layers[-1].compute_output_shape((None, 2))
    assert marker.read_text() == "ran"


def test_model_from_json_and_deserialize_refuse_lambdas(tmp_path):
    marker = tmp_path / "pwned.txt"
    model = _payload_model(str(marker))
    text = model.to_json()
    entry = layers.serialize(model.layers[-1])
    marker.unlink()
    with pytest.raises(ValueError, match="evil_lambda.*safe_mode=False"):
        models.model_from_json(text)
    with pytest.raises(ValueError, match="evil_lambda.*safe_mode=False"):
        layers.deserialize(entry)
    with pytest.raises(ValueError, match="safe_mode=False"):
        layers.Lambda.from_config(entry["config"])          # no loader around: refused
    with pytest.raises(ValueError, match="safe_mode=False"):
        saving.deserialize_keras_object(entry)
    assert not marker.exists()
    layer = layers.Lambda.from_config(entry["config"], safe_mode=False)
    assert isinstance(layer, layers.Lambda) and not marker.exists()    # decoded, not run
    with unsafe_enabled():
        models.model_from_json(text)
    assert marker.read_text() == "ran"


def test_enable_unsafe_deserialization_allows_loading(tmp_path):
    model = models.Sequential([layers.Input((3,)), layers.Lambda(lambda x: x * 3.0 - 1.0)])
    path = str(tmp_path / "m.h5")
    model.save(path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with pytest.raises(ValueError):
        models.load_model(path)
    with unsafe_enabled():
        loaded = models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), x * 3.0 - 1.0)
    assert not config.unsafe_deserialization_enabled()


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras_written_lambda_files_are_refused(ext):
    """Files real Keras wrote (make_small_fixtures.py): refused before any decoding."""
    with pytest.raises(ValueError, match="safe_mode=False"):
        models.load_model(os.path.join(FIXTURES, f"lambda.{ext}"))


# ------------------------------------------------- nothing else in a file runs code
def _rewrite_keras(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg)
            zout.writestr(name, data)


def _rewrite_h5(src, dst, edit):
    """The h5 file's model_config attribute edited, with its training_config as the
    .keras file's `compile_config` entry (so one edit serves both formats)."""
    import shutil
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["compile_config"] = json.loads(f.attrs["training_config"])
        edit(cfg)
        f.attrs["training_config"] = json.dumps(cfg.pop("compile_config")).encode()
        f.attrs["model_config"] = json.dumps(cfg).encode()


OS_SYSTEM = {"module": "os", "class_name": "function", "config": "system",
             "registered_name": "system"}
POPEN = {"module": "subprocess", "class_name": "Popen",
         "config": {"args": ["touch", "MARKER"]}, "registered_name": "subprocess>Popen"}


def _dense(cfg):
    return cfg["config"]["layers"][1]["config"]


def _set(path_fn, key, value):
    def edit(cfg):
        path_fn(cfg)[key] = value
    return edit


CRAFTED = {
    "layer-class": lambda cfg: cfg["config"]["layers"][1].update(
        {"module": "subprocess", "class_name": "Popen", "registered_name": "subprocess>Popen"}),
    "layer-registered-name": lambda cfg: cfg["config"]["layers"][1].update(
        {"module": "os", "registered_name": "os>system"}) or
        cfg["config"]["layers"][1].update({"class_name": "system"}),
    "activation": _set(_dense, "activation", OS_SYSTEM),
    "activation-lambda": _set(_dense, "activation", {"class_name": "__lambda__",
                                                     "config": {"code": "AAAA"}}),
    "initializer": _set(_dense, "kernel_initializer", POPEN),
    "regularizer": _set(_dense, "kernel_regularizer", POPEN),
    "lambda-named-function": lambda cfg: cfg["config"]["layers"].append(
        {"module": "keras.layers", "class_name": "Lambda",
         "config": {"name": "lam", "function": OS_SYSTEM, "arguments": {}}}),
    "loss": lambda cfg: cfg["compile_config"].update({"loss": OS_SYSTEM}),
    "loss-class": lambda cfg: cfg["compile_config"].update({"loss": POPEN}),
    "optimizer": lambda cfg: cfg["compile_config"].update({"optimizer": POPEN,
                                                            "optimizer_config": POPEN}),
    "metric": lambda cfg: cfg["compile_config"].update({"metrics": [OS_SYSTEM]}),
}


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_configs_name_only_known_objects(tmp_path, monkeypatch, ext, case):
    import os as os_mod
    import subprocess
    calls = []
    monkeypatch.setattr(os_mod, "system", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(a))
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile("sgd", "mse")
    clean = str(tmp_path / f"clean.{ext}")
    model.save(clean)
    evil = str(tmp_path / f"evil.{ext}")
    (_rewrite_keras if ext == "keras" else _rewrite_h5)(clean, evil, CRAFTED[case])
    with pytest.raises((ValueError, TypeError)) as e:
        models.load_model(evil, safe_mode=False)
    assert any(w in str(e.value) for w in ("Unknown", "unknown", "Not a")), str(e.value)
    assert calls == []


def _foreign_names():
    """(name, object) the config-visible kcompile modules hold that are not kcompile's
    own classes or functions (imported modules, numpy, names imported from elsewhere)."""
    out = []
    import functools
    from kcompile.saving.objects import _MODULES
    for mod in _MODULES:
        module = functools.reduce(getattr, mod.split("."), kcompile)
        for name, obj in vars(module).items():
            owner = getattr(obj, "__module__", None) or ""
            if not name.startswith("__") and (not owner.startswith("kcompile")
                                              or isinstance(obj, type(os))):
                out.append((name, obj))
    return out


def test_deserialize_keras_object_finds_no_imported_name():
    found = _foreign_names()
    assert {"np", "F"} & {n for n, _ in found}
    for name, obj in found:
        for entry in ({"class_name": name, "config": {}},
                      {"class_name": "function", "config": name}):
            try:
                got = saving.deserialize_keras_object(entry)
            except ValueError as e:
                assert "Unknown" in str(e)
                continue
            # Only a kcompile object registered under the same name (e.g. the "identity"
            # initializer, while kcompile.layers.identity is a module) may answer.
            assert got is not obj and (getattr(got, "__module__", "") or type(got).__module__
                                       ).startswith("kcompile."), (name, got)


def test_deserialize_keras_object_still_finds_kcompile_objects():
    reg = saving.deserialize_keras_object({"class_name": "L2", "config": {"l2": 0.5}})
    assert type(reg).__name__ == "L2"
    fn = saving.deserialize_keras_object({"class_name": "function", "config": "relu"})
    assert callable(fn)
