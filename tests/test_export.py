"""Native export: the library a model exports, called from C, predicts what
model.predict predicts.

Each model (the seed MLP, an LSTM, a convnet, an embedding model with integer ids, a
two-input two-output functional model) is exported, examples/export/predict.c is
compiled against its model.h with the system C compiler and run in a subprocess on
random inputs, and its printed outputs are compared with model.predict (1e-6). Damaged
export directories (truncated library, corrupt/truncated/foreign weights) must end
with a clear error and exit status 1, never a signal. Models that cannot be exported
are refused naming the layer.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kcompile import layers, models
import kcompile

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "export" / "predict.c"
CC = next((shutil.which(c) for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH: "
                                                 "the export links with it")


def mlp():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from quickstart import build
    finally:
        sys.path.pop(0)
    return build()


def lstm_model():
    m = models.Sequential([kcompile.Input((7, 5)), layers.LSTM(12), layers.Dense(3)])
    m.compile(optimizer="adam", loss="mse")
    return m


def convnet():
    m = models.Sequential([kcompile.Input((10, 10, 2)),
                           layers.Conv2D(6, 3, activation="relu", padding="same"),
                           layers.MaxPooling2D(2), layers.Conv2D(4, 3, activation="relu"),
                           layers.Flatten(), layers.Dense(5, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m


def two_heads():
    a, b = kcompile.Input((6,), name="left"), kcompile.Input((3,), name="right")
    h = layers.Dense(8, activation="tanh")(layers.Concatenate()([a, b]))
    return models.Model([a, b], [layers.Dense(2, name="first")(h),
                                 layers.Dense(4, activation="sigmoid", name="second")(h)])


def embedding_model():
    return models.Sequential([kcompile.Input((9,), dtype="int32"), layers.Embedding(20, 4),
                              layers.LSTM(6), layers.Dense(2)])


def example_binary(export_dir: pathlib.Path) -> pathlib.Path:
    exe = export_dir.parent / f"predict-{export_dir.name}"
    res = subprocess.run([CC, "-O1", "-Wall", str(EXAMPLE), f"-I{export_dir}", "-ldl", "-lm",
                          "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return exe


def run_example(export_dir, xs, batch, exe=None):
    exe = exe or example_binary(export_dir)
    data = export_dir.parent / f"inputs-{export_dir.name}.f32"
    np.concatenate([np.asarray(x, np.float32).ravel() for x in xs]).astype("<f4").tofile(data)
    return subprocess.run([str(exe), str(export_dir), str(data), str(batch)],
                          capture_output=True, text=True, timeout=120)


def predictions(stdout: str, n_outputs: int, batch: int) -> list[np.ndarray]:
    rows = [[] for _ in range(n_outputs)]
    for line in stdout.splitlines():
        head, values = line.split(":")
        rows[int(head.split()[3])].append([float(v) for v in values.split()])
    assert all(len(r) == batch for r in rows), stdout
    return [np.array(r) for r in rows]


def check_against_predict(model, export_dir, xs, batch):
    res = run_example(export_dir, xs, batch)
    assert res.returncode == 0, res.stderr
    expected = model.predict(xs if len(xs) > 1 else xs[0], batch_size=batch, verbose=0)
    expected = expected if isinstance(expected, list) else [expected]
    got = predictions(res.stdout, len(expected), batch)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e.reshape(batch, -1), rtol=1e-6, atol=1e-6)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- models, called from C, predict what model.predict predicts ------------------------

@needs_cc
def test_seed_mlp_any_batch_up_to_the_maximum(tmp_path):
    model = mlp()
    out = model.export(tmp_path / "mlp", max_batch_size=8, verbose=False)
    assert {p.name for p in out.iterdir()} == {"libmodel.so", "libmodel.a", "model.h",
                                               "README.md"}
    header = (out / "model.h").read_text()
    assert "#define MODEL_INPUT0_SIZE 784" in header and "#define MODEL_MAX_BATCH 8" in header
    for batch in (1, 3, 8):      # 3 runs padded to the compiled batch of 4
        check_against_predict(model, out, [randn(batch, 784, seed=batch)], batch)
    res = run_example(out, [randn(9, 784)], 9)
    assert res.returncode == 1 and "batch 9" in res.stderr and "1 to 8" in res.stderr


def needed_libraries(lib: pathlib.Path) -> set[str]:
    """The DT_NEEDED entries of an ELF shared library (as `readelf -d` lists them)."""
    import struct
    data = lib.read_bytes()
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    dynamic = next(s for s in sections if s[1] == 6)            # SHT_DYNAMIC
    strtab = sections[dynamic[6]]                                # its sh_link
    names = set()
    for off in range(dynamic[4], dynamic[4] + dynamic[5], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 1:                                             # DT_NEEDED
            start = strtab[4] + val
            names.add(data[start:data.index(b"\0", start)].decode())
    return names


@needs_cc
@pytest.mark.parametrize("threads", [1, 2])
def test_the_library_needs_libc_only(tmp_path, threads):
    out = lstm_model().export(tmp_path / "lstm", threads=threads, verbose=False)
    needed = needed_libraries(out / "libmodel.so")
    # glibc's own parts: libc, its dynamic loader (thread-local error text), libm, pthread
    allowed = ("libc", "ld-linux-x86-64", "libm", "libpthread")
    assert "libc.so.6" in needed and all(n.split(".so")[0] in allowed for n in needed), needed


@needs_cc
def test_lstm(tmp_path):
    model = lstm_model()
    out = model.export(tmp_path / "lstm", batch_size=3, verbose=False)
    check_against_predict(model, out, [randn(3, 7, 5)], 3)


@needs_cc
def test_convnet_for_a_generic_cpu(tmp_path):
    model = convnet()
    out = model.export(tmp_path / "conv", batch_size=2, cpu="generic", verbose=False)
    assert '#define MODEL_CPU "x86-64-v2"' in (out / "model.h").read_text()
    check_against_predict(model, out, [randn(2, 10, 10, 2)], 2)
    objdump = shutil.which("objdump")
    if objdump:     # binutils, beside the linker: no AVX register anywhere, no libm FMA call
        asm = subprocess.run([objdump, "-d", str(out / "libmodel.so")], capture_output=True,
                             text=True, check=True).stdout
        assert "%xmm" in asm and "%ymm" not in asm and "%zmm" not in asm
        assert "fmaf" not in asm


@needs_cc
def test_an_export_for_another_cpu_leaves_this_machines_code_alone(tmp_path):
    """A recurrent body's plan is cached: the generic export's (narrow vectors, less
    scratch) must not be reused when this machine's predict is compiled after it."""
    model = models.Sequential([kcompile.Input((5, 3)), layers.LSTM(13, return_sequences=True),
                               layers.LSTM(11), layers.Dense(2)])
    out = model.export(tmp_path / "generic", batch_size=2, cpu="generic", verbose=False)
    check_against_predict(model, out, [randn(2, 5, 3)], 2)     # host predict after it


@needs_cc
def test_two_threads_per_handle(tmp_path):
    model = convnet()
    out = model.export(tmp_path / "conv2t", batch_size=4, threads=2, verbose=False)
    check_against_predict(model, out, [randn(4, 10, 10, 2, seed=3)], 4)


@needs_cc
def test_several_inputs_and_outputs(tmp_path):
    model = two_heads()
    out = model.export(tmp_path / "heads", max_batch_size=2, verbose=False)
    header = (out / "model.h").read_text()
    assert '#define MODEL_INPUT1_NAME "right"' in header
    assert '#define MODEL_OUTPUT1_NAME "second"' in header
    check_against_predict(model, out, [randn(2, 6), randn(2, 3, seed=1)], 2)


@needs_cc
def test_integer_ids_are_checked(tmp_path):
    model = embedding_model()
    out = model.export(tmp_path / "emb", batch_size=2, verbose=False)
    ids = np.random.default_rng(0).integers(0, 20, (2, 9)).astype(np.int32)
    check_against_predict(model, out, [ids], 2)
    ids[1, 4] = 20
    res = run_example(out, [ids], 2)
    assert res.returncode == 1 and "value 20 at index 13" in res.stderr, res.stderr


@needs_cc
def test_weights_file_and_static_archive(tmp_path):
    model = lstm_model()
    out = model.export(tmp_path / "wf", batch_size=2, weights_file=True, verbose=False)
    assert (out / "model.weights").exists()
    check_against_predict(model, out, [randn(2, 7, 5)], 2)
    # The static archive links into a program needing no libmodel.so.
    app = tmp_path / "app.c"
    app.write_text('#include <stdio.h>\n#include "model.h"\nint main(int c, char **v) {\n'
                   '  model_t *m; float x[2 * MODEL_INPUT_SIZE] = {0}, y[2 * MODEL_OUTPUT_SIZE];\n'
                   '  if (model_create(&m, v[1])) { puts(model_last_error()); return 1; }\n'
                   '  int rc = model_predict(m, 2, x, 2 * MODEL_INPUT_SIZE,\n'
                   '                         y, 2 * MODEL_OUTPUT_SIZE);\n'
                   '  for (int i = 0; i < 2 * MODEL_OUTPUT_SIZE; i++) printf("%.9g ", y[i]);\n'
                   '  model_destroy(m); return rc; }\n')
    exe = tmp_path / "app"
    subprocess.run([CC, str(app), f"-I{out}", str(out / "libmodel.a"), "-lm", "-o", str(exe)],
                   check=True)
    res = subprocess.run([str(exe), str(out / "model.weights")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    expected = model.predict(np.zeros((2, 7, 5), np.float32), verbose=0)
    np.testing.assert_allclose(np.array(res.stdout.split(), float), expected.ravel(),
                               rtol=1e-6, atol=1e-6)


# -- damaged export directories: a clear error, not a crash ----------------------------

@pytest.fixture(scope="module")
def weights_export(tmp_path_factory):
    base = tmp_path_factory.mktemp("damaged")
    model = two_heads()
    out = model.export(base / "wf", batch_size=1, weights_file=True, verbose=False)
    return out, example_binary(out)


def _fails_clearly(out, exe, message):
    res = run_example(out, [randn(1, 6), randn(1, 3)], 1, exe)
    assert res.returncode == 1, (res.returncode, res.stderr)      # not killed by a signal
    assert message in res.stderr, res.stderr


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-50], "bytes of weights"),
    (lambda b: b[:40], "truncated: 40 bytes, shorter than the 64-byte header"),
    (lambda b: b[:200] + bytes([b[200] ^ 1]) + b[201:], "checksum mismatch"),
    (lambda b: b"XX" + b[2:], "bad magic"),
    (lambda b: b + b"\0", "longer than its header declares"),
])
@needs_cc
def test_damaged_weights_file(weights_export, damage, message):
    out, exe = weights_export
    path = out / "model.weights"
    good = path.read_bytes()
    try:
        path.write_bytes(damage(good))
        _fails_clearly(out, exe, message)
    finally:
        path.write_bytes(good)


@needs_cc
def test_missing_or_foreign_weights(weights_export, tmp_path):
    out, exe = weights_export
    path = out / "model.weights"
    good = path.read_bytes()
    other = lstm_model().export(tmp_path / "other", weights_file=True, verbose=False)
    try:
        path.unlink()
        _fails_clearly(out, exe, "cannot open weights file")
        shutil.copy(other / "model.weights", path)
        _fails_clearly(out, exe, "weights of another model")
    finally:
        path.write_bytes(good)


@needs_cc
def test_truncated_library_and_corrupt_embedded_weights(tmp_path):
    model = two_heads()
    out = model.export(tmp_path / "emb", batch_size=1, verbose=False)
    exe = example_binary(out)
    lib = out / "libmodel.so"
    good = lib.read_bytes()
    lib.write_bytes(good[:len(good) // 3])
    _fails_clearly(out, exe, "cannot load")
    at = good.index(b"KCWEIGHT\x01\0\0\0\x40\0\0\0") + 64 + 17    # a weight byte
    lib.write_bytes(good[:at] + bytes([good[at] ^ 0x10]) + good[at + 1:])
    _fails_clearly(out, exe, "embedded weights: checksum mismatch")


# -- refusals ------------------------------------------------------------------------------

class _CountCalls(layers.Layer):
    """Counts its calls in a variable: state changed by predict."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="calls")

    def call(self, x):
        self.calls.assign(self.calls + 1.0)
        return x


def test_a_layer_updating_state_is_refused_by_name(tmp_path):
    model = models.Sequential([kcompile.Input((3,)), layers.Dense(2),
                               _CountCalls(name="call_counter")])
    with pytest.raises(ValueError, match="layer 'call_counter' updates the variable"):
        model.export(tmp_path / "x", verbose=False)
    assert not (tmp_path / "x").exists()


def test_bad_arguments(tmp_path):
    model = two_heads()
    with pytest.raises(ValueError, match="format='onnx' is not available"):
        model.export(tmp_path / "x", format="onnx")
    with pytest.raises(ValueError, match=r"Unrecognized format=pickle"):
        model.export(tmp_path / "x", format="pickle")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.export(tmp_path / "x", batch_size=0)
    with pytest.raises(ValueError, match="not both"):
        model.export(tmp_path / "x", batch_size=2, max_batch_size=4)
    with pytest.raises(ValueError, match="unknown cpu 'pentium'"):
        model.export(tmp_path / "x", cpu="pentium")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        model.export(tmp_path / "x", batchsize=3)
    unknown_length = models.Sequential([kcompile.Input((None, 4)), layers.LSTM(3)])
    with pytest.raises(ValueError, match=r"input 0 .* has unknown axes \(None, None, 4\)"):
        unknown_length.export(tmp_path / "x")


@needs_cc
def test_a_file_keras_wrote_exports_and_predicts_as_keras_did(tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "conv"
    res = subprocess.run([sys.executable, "-m", "kcompile", "export", str(fixture / "conv2d.keras"),
                          "-o", str(tmp_path / "keras"), "--max-batch", "2"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    data = np.load(fixture / "conv2d.npz")          # inputs and Keras' own outputs
    res = run_example(tmp_path / "keras", [data["x"]], len(data["x"]))
    assert res.returncode == 0, res.stderr
    got, = predictions(res.stdout, 1, len(data["x"]))
    np.testing.assert_allclose(got, data["y"].reshape(len(got), -1), rtol=1e-5, atol=1e-6)


@needs_cc
def test_command_line_export_of_a_saved_model(tmp_path):
    model = lstm_model()
    model.save(tmp_path / "model.h5")
    res = subprocess.run([sys.executable, "-m", "kcompile", "export", str(tmp_path / "model.h5"),
                          "-o", str(tmp_path / "cli"), "--max-batch", "3", "--cpu", "generic"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    check_against_predict(model, tmp_path / "cli", [randn(3, 7, 5)], 3)
    res = subprocess.run([sys.executable, "-m", "kcompile", "export", str(tmp_path / "model.h5"),
                          "-o", str(tmp_path / "bad"), "--cpu", "pentium"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "unknown cpu 'pentium'" in res.stderr, res.stderr


# -- handles are independent -----------------------------------------------------------------

CONCURRENT_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"
#define CALLS 60
enum { IN = MODEL_INPUT_SIZE, OUT = MODEL_OUTPUT_SIZE };
static float x[2][IN], want[2][OUT];
static void *work(void *arg) {
    int which = (int)(size_t)arg, bad = 0;
    model_t *m;
    if (model_create(&m, NULL)) return (void *)1;
    float y[OUT];
    for (int i = 0; i < CALLS; i++) {
        if (model_predict(m, 1, x[which], IN, y, OUT) || memcmp(y, want[which], sizeof y)) bad++;
    }
    model_destroy(m);
    return (void *)(size_t)bad;
}
int main(void) {
    for (int k = 0; k < IN; k++) { x[0][k] = (k % 5) * 0.25f; x[1][k] = (k % 3) * -0.5f; }
    model_t *m;
    if (model_create(&m, NULL)) { puts(model_last_error()); return 2; }
    for (int w = 0; w < 2; w++)
        if (model_predict(m, 1, x[w], IN, want[w], OUT)) { puts(model_last_error()); return 2; }
    model_destroy(m);
    if (!memcmp(want[0], want[1], sizeof want[0])) { puts("same outputs"); return 2; }
    pthread_t t[2];
    for (int w = 0; w < 2; w++) pthread_create(&t[w], NULL, work, (void *)(size_t)w);
    size_t bad = 0;
    for (int w = 0; w < 2; w++) { void *r; pthread_join(t[w], &r); bad += (size_t)r; }
    printf("%zu mismatches\n", bad);
    return bad != 0;
}
"""


@needs_cc
@pytest.mark.parametrize("threads", [1, 2])
def test_two_handles_predict_concurrently(tmp_path, threads):
    out = convnet().export(tmp_path / "conv", batch_size=1, threads=threads, verbose=False)
    src, exe = tmp_path / "concurrent.c", tmp_path / "concurrent"
    src.write_text(CONCURRENT_C)
    subprocess.run([CC, str(src), f"-I{out}", str(out / "libmodel.a"), "-lm", "-pthread",
                    "-o", str(exe)], check=True)
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "0 mismatches", res.stdout


@needs_cc
def test_retrained_weights_load_into_the_same_library(tmp_path):
    """The model id names the code and weight layout, not the values: an export of the
    same model with new weights ships as a new model.weights only."""
    model = lstm_model()
    out = model.export(tmp_path / "v1", batch_size=2, weights_file=True, verbose=False)
    model.set_weights([w + 0.05 for w in model.get_weights()])
    v2 = model.export(tmp_path / "v2", batch_size=2, weights_file=True, verbose=False)
    shutil.copy(v2 / "model.weights", out / "model.weights")
    check_against_predict(model, out, [randn(2, 7, 5)], 2)


def test_the_c_layer_is_installed_with_the_package(monkeypatch):
    import runpy
    import setuptools
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    patterns = seen["package_data"]["kcompile.runtime.export"]
    assert any((ROOT / "runtime" / "export").glob(p) for p in patterns)
    assert "kcompile.runtime.export" in seen["packages"]


def test_no_c_compiler_is_a_clear_error(tmp_path, monkeypatch):
    from kcompile.runtime.export import writer
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(writer.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs a C compiler and linker"):
        two_heads().export(tmp_path / "x", verbose=False)
