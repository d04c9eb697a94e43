"""Pooling, reshaping and activation layers against direct-loop numpy references of
Keras' documented formulas (odd sizes, both paddings, strides, channels_first):

* every case compiled on 1 and 2 threads equals the reference interpreter, forward
  and input gradient, and the reference equals the numpy loop;
* input gradients against central differences (float64 reference interpreter);
* max pooling's gradient goes to the first maximum of each window in window order
  (a loop over windows), not shared among ties;
* output shapes (compute_output_shape), configs (round trip, Keras' keys), saving in
  .keras and .h5, masked GlobalAveragePooling1D, argument errors in Keras' wording.
"""
from __future__ import annotations

import itertools
import json
import os
import zipfile
import zlib

import numpy as np
import pytest

from kcompile import layers, models
from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State
from kcompile.tracing import Trace, tracing


# ------------------------------------------------------------ numpy references
def _to_last(x, fmt):
    return x if fmt == "channels_last" else np.moveaxis(x, 1, -1)


def _from_last(y, fmt):
    return y if fmt == "channels_last" else np.moveaxis(y, -1, 1)


def _window_starts(n, p, s, padding):
    """Keras' documented output length (valid: floor((n - p) / s) + 1, same:
    floor((n - 1) / s) + 1) and where each window starts, in unpadded coordinates
    (same: the total padding max((out - 1) * s + p - n, 0), its smaller half before)."""
    if padding == "valid":
        return [o * s for o in range((n - p) // s + 1)]
    out = (n - 1) // s + 1
    before = max((out - 1) * s + p - n, 0) // 2
    return [o * s - before for o in range(out)]


def _windows(spatial, pool, strides, padding):
    """(output index, the real input indices of its window in row-major window order)."""
    starts = [_window_starts(n, p, s, padding) for n, p, s in zip(spatial, pool, strides)]
    for out in itertools.product(*(range(len(st)) for st in starts)):
        ranges = [range(starts[d][o], starts[d][o] + pool[d]) for d, o in enumerate(out)]
        cells = [c for c in itertools.product(*ranges)
                 if all(0 <= i < n for i, n in zip(c, spatial))]
        yield out, cells, [len(st) for st in starts]


def pool_ref(x, pool, strides, padding, fmt, mode):
    x = _to_last(x, fmt)
    spatial = x.shape[1:-1]
    y = None
    for out, cells, out_shape in _windows(spatial, pool, strides, padding):
        if y is None:
            y = np.zeros((x.shape[0], *out_shape, x.shape[-1]))
        vals = np.stack([x[(slice(None), *c)] for c in cells])      # (cells, N, C)
        y[(slice(None), *out)] = vals.max(0) if mode == "max" else vals.mean(0)
    return _from_last(y, fmt)


def max_pool_grad_ref(x, g, pool, strides, padding, fmt):
    """Each window's cotangent added at its FIRST maximum in row-major window order."""
    x, g = _to_last(x, fmt), _to_last(g, fmt)
    dx = np.zeros(x.shape)
    for out, cells, _ in _windows(x.shape[1:-1], pool, strides, padding):
        for b in range(x.shape[0]):
            for c in range(x.shape[-1]):
                vals = [x[(b, *cell, c)] for cell in cells]
                first = cells[int(np.argmax(vals))]       # np.argmax: the first maximum
                dx[(b, *first, c)] += g[(b, *out, c)]
    return _from_last(dx, fmt)


def bilinear_ref(x, factors, fmt):
    """Keras' image.resize (JAX: triangle kernel at half-pixel centres, weights
    normalized over the image), one axis after the other, by loops."""
    x = _to_last(x, fmt).astype(np.float64)
    for axis, f in zip((1, 2), factors):
        n = x.shape[axis]
        w = np.zeros((n * f, n))
        for i in range(n * f):
            centre = (i + 0.5) / f - 0.5
            for j in range(n):
                w[i, j] = max(0.0, 1.0 - abs(centre - j))
            w[i] /= w[i].sum()
        x = np.moveaxis(np.tensordot(w, np.moveaxis(x, axis, 0), axes=1), 0, axis)
    return _from_last(x, fmt)


def relu_ref(x, max_value=None, negative_slope=0.0, threshold=0.0):
    """Keras' ReLU: max_value for x >= max_value, x for threshold <= x < max_value,
    negative_slope * (x - threshold) otherwise."""
    y = np.where(x >= threshold, x, negative_slope * (x - threshold))
    return np.where(x >= max_value, max_value, y) if max_value is not None else y


def _spatial(fmt, ndim):
    return tuple(range(1, ndim - 1)) if fmt == "channels_last" else tuple(range(2, ndim))


def _pad_ref(x, pads, fmt):
    widths = [(0, 0)] * x.ndim
    for a, p in zip(_spatial(fmt, x.ndim), pads):
        widths[a] = p
    return np.pad(x, widths)


def _crop_ref(x, crops, fmt):
    idx = [slice(None)] * x.ndim
    for a, (lo, hi) in zip(_spatial(fmt, x.ndim), crops):
        idx[a] = slice(lo, x.shape[a] - hi)
    return x[tuple(idx)]


def _repeat_ref(x, sizes, fmt):
    for a, s in zip(_spatial(fmt, x.ndim), sizes):
        x = np.repeat(x, s, axis=a)
    return x


# ----------------------------------------------------------------------- cases
CL, CF = "channels_last", "channels_first"


def _pool_case(cls, mode, dims, shape, pool, strides=None, padding="valid", fmt=CL):
    pool_t = (pool,) * dims if isinstance(pool, int) else pool
    strides_t = pool_t if strides is None else ((strides,) * dims if isinstance(strides, int)
                                                else strides)
    name = f"{cls.__name__}-{pool}-{strides}-{padding}-{fmt[9:]}-{'x'.join(map(str, shape))}"
    return (name, lambda: cls(pool, strides, padding, data_format=fmt), shape,
            lambda x: pool_ref(x, pool_t, strides_t, padding, fmt, mode))


def _global_case(cls, dims, reduce, shape, keepdims=False, fmt=CL):
    axes = _spatial(fmt, dims + 2)
    return (f"{cls.__name__}-keepdims{keepdims}-{fmt[9:]}",
            lambda: cls(data_format=fmt, keepdims=keepdims), shape,
            lambda x: reduce(x, axis=axes, keepdims=keepdims))


P1, P2 = layers.MaxPooling1D, layers.MaxPooling2D
A1, A2 = layers.AveragePooling1D, layers.AveragePooling2D
CASES = [
    _pool_case(P1, "max", 1, (2, 9, 3), 2),
    _pool_case(P1, "max", 1, (2, 10, 3), 3, 2, "same"),
    _pool_case(P1, "max", 1, (2, 9, 2), 4, 1),
    _pool_case(P1, "max", 1, (2, 11, 2), 2, 3, "same"),
    _pool_case(P1, "max", 1, (2, 3, 10), 3, 2, "same", CF),
    _pool_case(P1, "max", 1, (2, 2, 7), 2, None, "valid", CF),
    _pool_case(A1, "average", 1, (2, 9, 3), 3),
    _pool_case(A1, "average", 1, (2, 10, 3), 3, 2, "same"),
    _pool_case(A1, "average", 1, (2, 11, 2), 4, 3, "same"),
    _pool_case(A1, "average", 1, (2, 3, 8), 2, 1, "valid", CF),
    _pool_case(P2, "max", 2, (2, 7, 9, 3), 2),
    _pool_case(P2, "max", 2, (2, 7, 8, 2), 3, 2, "same"),
    _pool_case(P2, "max", 2, (2, 6, 9, 2), (2, 3), (1, 2)),
    _pool_case(P2, "max", 2, (2, 7, 7, 2), 2, 3, "same"),
    _pool_case(P2, "max", 2, (2, 5, 6, 1), 3, 1, "same"),
    _pool_case(P2, "max", 2, (2, 2, 7, 8), 3, 2, "same", CF),
    _pool_case(P2, "max", 2, (2, 3, 5, 7), 2, None, "valid", CF),
    _pool_case(A2, "average", 2, (2, 7, 9, 3), 2),
    _pool_case(A2, "average", 2, (2, 7, 8, 2), 3, 2, "same"),
    _pool_case(A2, "average", 2, (2, 7, 6, 2), (3, 2), (2, 1), "same"),
    _pool_case(A2, "average", 2, (2, 8, 7, 2), 2, 3),
    _pool_case(A2, "average", 2, (2, 2, 7, 8), 3, 2, "same", CF),
    _global_case(layers.GlobalMaxPooling1D, 1, np.max, (2, 7, 3)),
    _global_case(layers.GlobalMaxPooling1D, 1, np.max, (2, 3, 7), True, CF),
    _global_case(layers.GlobalAveragePooling1D, 1, np.mean, (2, 7, 3), True),
    _global_case(layers.GlobalAveragePooling1D, 1, np.mean, (2, 3, 7), False, CF),
    _global_case(layers.GlobalMaxPooling2D, 2, np.max, (2, 5, 7, 3)),
    _global_case(layers.GlobalMaxPooling2D, 2, np.max, (2, 3, 5, 7), True, CF),
    _global_case(layers.GlobalAveragePooling2D, 2, np.mean, (2, 5, 7, 3), True),
    _global_case(layers.GlobalAveragePooling2D, 2, np.mean, (2, 3, 5, 7), False, CF),
    ("UpSampling1D-3", lambda: layers.UpSampling1D(3), (2, 5, 2),
     lambda x: np.repeat(x, 3, axis=1)),
    ("UpSampling2D-2x3", lambda: layers.UpSampling2D((2, 3)), (2, 3, 4, 2),
     lambda x: _repeat_ref(x, (2, 3), CL)),
    ("UpSampling2D-3x2-first", lambda: layers.UpSampling2D((3, 2), CF), (2, 2, 3, 4),
     lambda x: _repeat_ref(x, (3, 2), CF)),
    ("UpSampling2D-bilinear-2", lambda: layers.UpSampling2D(2, interpolation="bilinear"),
     (2, 3, 5, 2), lambda x: bilinear_ref(x, (2, 2), CL)),
    ("UpSampling2D-bilinear-3x2-first",
     lambda: layers.UpSampling2D((3, 2), CF, interpolation="bilinear"), (2, 2, 4, 3),
     lambda x: bilinear_ref(x, (3, 2), CF)),
    ("ZeroPadding1D-2-1", lambda: layers.ZeroPadding1D((2, 1)), (2, 5, 3),
     lambda x: _pad_ref(x, [(2, 1)], CL)),
    ("ZeroPadding1D-1-first", lambda: layers.ZeroPadding1D(1, CF), (2, 3, 5),
     lambda x: _pad_ref(x, [(1, 1)], CF)),
    ("ZeroPadding2D-pairs", lambda: layers.ZeroPadding2D(((1, 2), (0, 1))), (2, 3, 4, 2),
     lambda x: _pad_ref(x, [(1, 2), (0, 1)], CL)),
    ("ZeroPadding2D-sym-first", lambda: layers.ZeroPadding2D((2, 1), CF), (2, 2, 3, 4),
     lambda x: _pad_ref(x, [(2, 2), (1, 1)], CF)),
    ("Cropping1D-1-2", lambda: layers.Cropping1D((1, 2)), (2, 7, 3),
     lambda x: x[:, 1:-2]),
    ("Cropping2D-pairs", lambda: layers.Cropping2D(((1, 0), (2, 1))), (2, 5, 6, 2),
     lambda x: _crop_ref(x, [(1, 0), (2, 1)], CL)),
    ("Cropping2D-1-first", lambda: layers.Cropping2D(1, CF), (2, 2, 5, 4),
     lambda x: _crop_ref(x, [(1, 1), (1, 1)], CF)),
    ("ReLU", lambda: layers.ReLU(), (2, 3, 10), relu_ref),
    ("ReLU-6-0.1-0.5", lambda: layers.ReLU(6.0, 0.1, 0.5), (2, 3, 10),
     lambda x: relu_ref(x, 6.0, 0.1, 0.5)),
    ("ReLU-max1", lambda: layers.ReLU(max_value=1.0), (2, 3, 10),
     lambda x: relu_ref(x, 1.0)),
    ("ReLU-threshold1", lambda: layers.ReLU(threshold=1.0), (2, 3, 10),
     lambda x: relu_ref(x, threshold=1.0)),
    ("LeakyReLU", lambda: layers.LeakyReLU(), (2, 3, 10),
     lambda x: np.where(x >= 0, x, 0.3 * x)),
    ("LeakyReLU-0.05", lambda: layers.LeakyReLU(negative_slope=0.05), (2, 3, 10),
     lambda x: np.where(x >= 0, x, 0.05 * x)),
]
IDS = [c[0] for c in CASES]
BY_ID = {c[0]: c for c in CASES}


def _input(case_id, shape):
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    # Values spread over [-3, 3] reach the activations' max_value/thresholds.
    return (rng.normal(size=shape) * 1.5).astype(np.float32)


def _graph(case_id):
    """The layer traced on the case's input: outputs y, loss = <y, R>, grad/x."""
    _, make, shape, _ = BY_ID[case_id]
    trace = Trace()
    with tracing(trace):
        x = trace.input("x", shape)
        y = make()(x)
    g = trace.graph
    g.outputs["y"] = y.id
    R = Sym(g, g.leaf("input", TensorType(y.shape), "R"))
    g.outputs["loss"] = F.sum(y * R).id
    rng = np.random.default_rng(1)
    feeds = {"x": _input(case_id, shape), "R": rng.normal(size=y.shape).astype(np.float32)}
    return autodiff(g, wrt_role="input"), feeds


@pytest.fixture(scope="module")
def programs():
    return {i: _graph(i) for i in IDS}


@pytest.fixture(scope="module", params=[1, 2], ids=["1thread", "2threads"])
def compiled(request, programs):
    """Every case in one native module (one LLVM compile per thread count)."""
    graphs = {f"e{k}": programs[i][0] for k, i in enumerate(IDS)}
    exe = NativeExecutable(graphs, State([]), nthreads=request.param)
    return {i: exe.run(f"e{k}", programs[i][1]) for k, i in enumerate(IDS)}


@pytest.fixture(scope="module")
def reference(programs):
    graphs = {f"e{k}": programs[i][0] for k, i in enumerate(IDS)}
    ref = ReferenceExecutable(graphs, State([]))
    return {i: ref.run(f"e{k}", programs[i][1]) for k, i in enumerate(IDS)}


@pytest.mark.parametrize("case_id", IDS)
def test_reference_matches_numpy_loop(case_id, programs, reference):
    want = BY_ID[case_id][3](programs[case_id][1]["x"].astype(np.float64))
    got = reference[case_id]["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case_id", IDS)
def test_compiled_matches_reference(case_id, compiled, reference):
    for key in ("y", "grad/x"):
        np.testing.assert_allclose(compiled[case_id][key], reference[case_id][key],
                                   rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("case_id", IDS)
def test_input_gradient_vs_finite_differences(case_id, programs):
    g, feeds = programs[case_id]
    feeds = {k: v.astype(np.float64) for k, v in feeds.items()}
    grad = interpret(g, feeds, float64=True)[0]["grad/x"]
    rng = np.random.default_rng(3)
    x = feeds["x"]
    eps = 1e-6
    for flat in rng.choice(x.size, size=min(12, x.size), replace=False):
        idx = np.unravel_index(flat, x.shape)
        vals = []
        for sign in (1, -1):
            xp = x.copy()
            xp[idx] += sign * eps
            vals.append(interpret(g, {**feeds, "x": xp}, float64=True)[0]["loss"])
        fd = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(grad[idx], fd, rtol=1e-5, atol=1e-6, err_msg=str(idx))


MAX_CASES = [c for c in IDS if c.startswith("MaxPooling")]


@pytest.mark.parametrize("case_id", MAX_CASES)
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_max_pool_ties_route_to_first_maximum(case_id, backend, programs):
    """Inputs on a coarse grid (most windows hold their maximum several times)."""
    g, feeds = programs[case_id]
    x = np.round(feeds["x"]).astype(np.float32)
    x.flat[::5] = x.max()           # plateaus of the global maximum as well
    layer = BY_ID[case_id][1]()
    feeds = {**feeds, "x": x}
    exe = (NativeExecutable if backend == "native" else ReferenceExecutable)({"e": g}, State([]))
    got = exe.run("e", feeds)["grad/x"]
    want = max_pool_grad_ref(x, feeds["R"], layer.pool_size, layer.strides, layer.padding,
                             layer.data_format)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_max_pool_all_equal_window_gradient_goes_to_its_first_cell():
    """A constant image: every window's gradient lands on its top-left real cell."""
    trace = Trace()
    with tracing(trace):
        x = trace.input("x", (1, 4, 4, 1))
        y = layers.MaxPooling2D(3, 1, "same")(x)
        trace.graph.outputs["loss"] = F.sum(y).id
    out, _ = interpret(autodiff(trace.graph, wrt_role="input"),
                       {"x": np.ones((1, 4, 4, 1), np.float32)})
    # window (i, j) covers rows max(i-1, 0).., cols max(j-1, 0)..: its first real cell
    want = np.zeros((4, 4))
    for i, j in itertools.product(range(4), range(4)):
        want[max(i - 1, 0), max(j - 1, 0)] += 1
    np.testing.assert_array_equal(out["grad/x"][0, :, :, 0], want)


# ------------------------------------------------------------------ shapes and configs
@pytest.mark.parametrize("case_id", IDS)
def test_compute_output_shape_matches_the_traced_shape(case_id, programs):
    _, make, shape, _ = BY_ID[case_id]
    g = programs[case_id][0]
    traced = g.type(g.outputs["y"]).shape
    assert tuple(make().compute_output_shape((None, *shape[1:]))) == (None, *traced[1:])


@pytest.mark.parametrize("case_id", IDS)
def test_config_round_trip(case_id):
    layer = BY_ID[case_id][1]()
    cfg = layer.get_config()
    again = type(layer).from_config(json.loads(json.dumps(cfg)))
    assert json.loads(json.dumps(again.get_config())) == json.loads(json.dumps(cfg))


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "pooling")


def test_config_keys_are_keras_keys():
    """Each layer's config has the keys Keras 3 writes for it (read from Keras' files)."""
    seen = set()
    for name in ("pool1d", "pool2d", "reshaping1d", "reshaping2d", "activations"):
        with zipfile.ZipFile(os.path.join(FIXTURES, f"{name}.keras")) as z:
            config = json.loads(z.read("config.json"))
        for entry in config["config"]["layers"][1:]:
            keras_cfg = entry["config"]
            ours = getattr(layers, entry["class_name"]).from_config(keras_cfg).get_config()
            keras_keys = set(keras_cfg) - {"dtype"}
            assert keras_keys <= set(ours), (entry["class_name"], keras_keys - set(ours))
            for key in keras_keys - {"name", "trainable"}:
                want = keras_cfg[key]
                got = json.loads(json.dumps(ours[key]))
                assert got == want, (entry["class_name"], key, got, want)
            seen.add(entry["class_name"])
    assert len(seen) >= 16, seen


def _image_model():
    return models.Sequential([
        layers.Input((9, 7, 2)),
        layers.ZeroPadding2D(((1, 0), (0, 2))),
        layers.MaxPooling2D(3, 2, "same"),
        layers.Dense(3),
        layers.LeakyReLU(negative_slope=0.2),
        layers.UpSampling2D(2, interpolation="bilinear"),
        layers.Cropping2D(((1, 1), (0, 1))),
        layers.AveragePooling2D(2, padding="same"),
        layers.ReLU(max_value=1.5),
        layers.GlobalMaxPooling2D(),
        layers.Dense(2)])


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_save_and_load_keep_predictions(tmp_path, ext):
    model = _image_model()
    x = np.random.default_rng(5).normal(size=(3, 9, 7, 2)).astype(np.float32)
    want = model.predict(x, verbose=0)
    path = str(tmp_path / f"m.{ext}")
    model.save(path)
    loaded = models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)


def test_masked_global_average_pooling_averages_kept_steps():
    x = np.random.default_rng(2).normal(size=(3, 6, 4)).astype(np.float32)
    x[0, 4:] = 0.0
    x[1, ::2] = 0.0
    model = models.Sequential([layers.Input((6, 4)), layers.Masking(),
                               layers.GlobalAveragePooling1D()])
    kept = np.any(x != 0.0, axis=-1)
    want = np.stack([x[b][kept[b]].mean(0) for b in range(3)])
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)


def test_training_through_pooling_matches_reference():
    """Five SGD steps of a small model with these layers: compiled == reference."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(8, 9, 7, 2)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    losses = {}
    for backend in ("native", "reference"):
        from kcompile import backend as kbackend
        kbackend.clear_session()
        model = _image_model()
        model.set_weights([np.full(w.shape, 0.1, np.float32) * (1 + np.arange(w.size).reshape(
            w.shape) % 3) for w in model.get_weights()])
        model.compile(optimizer="sgd", loss="mse", backend=backend)
        losses[backend] = [float(model.train_on_batch(x, y)) for _ in range(5)]
    np.testing.assert_allclose(losses["native"], losses["reference"], rtol=1e-5)
    assert losses["native"][-1] < losses["native"][0]


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make,match", [
    (lambda: layers.MaxPooling2D(0), "pool_size"),
    (lambda: layers.MaxPooling2D((2, 2, 2)), "must be a tuple of 2 integers"),
    (lambda: layers.AveragePooling1D(2, padding="full"), "padding"),
    (lambda: layers.MaxPooling1D(data_format="nhwc"), "data_format"),
    (lambda: layers.UpSampling1D(0), "size"),
    (lambda: layers.UpSampling2D(interpolation="lanczos3"), "interpolation"),
    (lambda: layers.ZeroPadding2D((1, 2, 3)), "two elements"),
    (lambda: layers.Cropping2D(-1), "cannot be negative"),
    (lambda: layers.ReLU(max_value=-1.0), "max_value"),
    (lambda: layers.ReLU(threshold=-1.0), "threshold"),
    (lambda: layers.LeakyReLU(negative_slope=-0.1), "negative_slope"),
])
def test_bad_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("make,shape,match", [
    (lambda: layers.MaxPooling2D(), (5, 3), "expected ndim=4, found ndim=3"),
    (lambda: layers.MaxPooling1D(6), (5, 3), "Computed output size would be zero"),
    (lambda: layers.Cropping1D((3, 2)), (5, 3), "must be smaller than the input length"),
    (lambda: layers.Cropping2D(((2, 3), (0, 0))), (5, 4, 1), "should be smaller"),
])
def test_bad_inputs(make, shape, match):
    with pytest.raises(ValueError, match=match):
        make()(layers.Input(shape))


def test_leaky_relu_alpha_is_the_deprecated_slope():
    with pytest.warns(UserWarning, match="alpha"):
        layer = layers.LeakyReLU(alpha=0.1)
    assert layer.negative_slope == 0.1
    assert layers.LeakyReLU.from_config({"name": "l", "alpha": 0.25}).negative_slope == 0.25
