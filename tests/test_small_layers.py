"""The small layers (activations with arguments, Permute, Dot, Identity, noise and
spatial dropout, ActivityRegularization, Normalization, Rescaling, CategoryEncoding,
Discretization) against numpy references of Keras' documented formulas:

* every deterministic case compiled (1 and 2 threads) equals the reference
  interpreter (output and input gradient), the reference equals numpy, and the input
  gradient equals central differences (float64 reference interpreter);
* PReLU's alpha gradient vs finite differences, and training compiled == reference;
* random layers: identity in inference; in training the noise has the documented
  mean / variance / sharing pattern, changes from step to step, and a seed repeats it;
* Normalization.adapt vs numpy (one array and a stream of batches), invert; Discretization
  and CategoryEncoding encodings; ActivityRegularization's loss term;
* compute_output_shape, config round trips, save/load in .keras and .h5, bad arguments.
"""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from kcompile import layers, models, optimizers
from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import TensorType
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State
from kcompile.tracing import Trace, tracing

try:
    from tests.model_checks import check_gradients_fd
except ImportError:
    from model_checks import check_gradients_fd

EPS = 1e-7          # Keras' epsilon()


# ------------------------------------------------------------ numpy references
def softmax_ref(x, axis=-1):
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def batch_dot_ref(x, y, ax, ay):
    out = np.stack([np.tensordot(x[b], y[b], axes=(ax - 1, ay - 1)) for b in range(len(x))])
    return out.reshape(len(x), 1) if out.ndim == 1 else out


def l2n(x, axis):
    return x / np.maximum(np.sqrt((x * x).sum(axis=axis, keepdims=True)), EPS)


def resize_ref(x, out_h, out_w, method="bilinear", axes=(1, 2)):
    """Half-pixel resizing, a loop per output pixel: bilinear samples input position
    (i + 0.5) * n / out - 0.5 (clamped), nearest takes floor((i + 0.5) * n / out)."""
    for axis, out in zip(axes, (out_h, out_w)):
        n = x.shape[axis]
        rows = []
        for i in range(out):
            if method == "nearest":
                rows.append(np.take(x, min(int((i + 0.5) * n / out), n - 1), axis))
                continue
            p = min(max((i + 0.5) * n / out - 0.5, 0.0), n - 1.0)
            lo = int(np.floor(p))
            hi = min(lo + 1, n - 1)
            rows.append(np.take(x, lo, axis) * (1 - (p - lo)) + np.take(x, hi, axis) * (p - lo))
        x = np.stack(rows, axis)
    return x


MEAN5 = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
VAR5 = np.array([1.0, 2.0, 0.5, 4.0, 1.5])
MEAN4 = np.array([1.0, -1.0, 0.0, 2.0])
VAR4 = np.array([2.0, 1.0, 0.25, 3.0])

# (id, layer factory, input shapes, numpy reference of the inputs)
CASES = [
    ("ELU", lambda: layers.ELU(), [(2, 4, 5)], lambda x: np.where(x > 0, x, np.expm1(x))),
    ("ELU-0.5", lambda: layers.ELU(alpha=0.5), [(2, 4, 5)],
     lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    ("PReLU-alpha0.25", lambda: layers.PReLU(alpha_initializer="ones"), [(2, 4, 5)],
     lambda x: np.where(x >= 0, x, x)),
    ("Softmax", lambda: layers.Softmax(), [(2, 4, 5)], softmax_ref),
    ("Softmax-axis1", lambda: layers.Softmax(axis=1), [(2, 4, 5)],
     lambda x: softmax_ref(x, 1)),
    ("Softmax-axes12", lambda: layers.Softmax(axis=(1, 2)), [(2, 4, 5)],
     lambda x: softmax_ref(x, (1, 2))),
    ("Permute-21", lambda: layers.Permute((2, 1)), [(2, 4, 5)],
     lambda x: x.transpose(0, 2, 1)),
    ("Permute-312", lambda: layers.Permute((3, 1, 2)), [(2, 3, 4, 5)],
     lambda x: x.transpose(0, 3, 1, 2)),
    ("Dot-2-2", lambda: layers.Dot(axes=(2, 2)), [(2, 4, 5), (2, 3, 5)],
     lambda x, y: batch_dot_ref(x, y, 2, 2)),
    ("Dot-1-2", lambda: layers.Dot(axes=[1, 2]), [(2, 4, 5), (2, 3, 4)],
     lambda x, y: batch_dot_ref(x, y, 1, 2)),
    ("Dot-vectors", lambda: layers.Dot(axes=-1), [(3, 6), (3, 6)],
     lambda x, y: batch_dot_ref(x, y, 1, 1)),
    ("Dot-normalize", lambda: layers.Dot(axes=1, normalize=True), [(3, 6), (3, 6)],
     lambda x, y: batch_dot_ref(l2n(x, 1), l2n(y, 1), 1, 1)),
    ("Identity", lambda: layers.Identity(), [(2, 4, 5)], lambda x: x),
    ("GaussianNoise-inference", lambda: layers.GaussianNoise(0.5, seed=1), [(2, 4, 5)],
     lambda x: x),
    ("SpatialDropout2D-inference", lambda: layers.SpatialDropout2D(0.5), [(2, 3, 4, 5)],
     lambda x: x),
    ("ActivityRegularization", lambda: layers.ActivityRegularization(0.1, 0.2), [(2, 4, 5)],
     lambda x: x),
    ("Rescaling", lambda: layers.Rescaling(1 / 255, offset=-1.0), [(2, 4, 5)],
     lambda x: x / 255 - 1.0),
    ("Rescaling-channels", lambda: layers.Rescaling([0.5, 2.0, 1.0, -1.0, 3.0], 0.5),
     [(2, 4, 5)], lambda x: x * np.array([0.5, 2.0, 1.0, -1.0, 3.0]) + 0.5),
    ("Normalization-given", lambda: layers.Normalization(mean=MEAN5, variance=VAR5),
     [(2, 4, 5)], lambda x: (x - MEAN5) / np.sqrt(VAR5)),
    ("Normalization-axis1-invert",
     lambda: layers.Normalization(axis=1, mean=MEAN4, variance=VAR4, invert=True),
     [(2, 4, 5)], lambda x: x * np.sqrt(VAR4)[:, None] + MEAN4[:, None]),
    ("Normalization-axis-none", lambda: layers.Normalization(axis=None, mean=2.0, variance=4.0),
     [(2, 4, 5)], lambda x: (x - 2.0) / 2.0),
    ("ZeroPadding3D-pairs", lambda: layers.ZeroPadding3D(((1, 0), (0, 2), (1, 1))),
     [(2, 3, 2, 4, 2)], lambda x: np.pad(x, [(0, 0), (1, 0), (0, 2), (1, 1), (0, 0)])),
    ("ZeroPadding3D-first", lambda: layers.ZeroPadding3D(1, "channels_first"),
     [(2, 2, 3, 2, 4)], lambda x: np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1), (1, 1)])),
    ("Cropping3D-pairs", lambda: layers.Cropping3D(((1, 0), (0, 2), (1, 1))),
     [(2, 3, 4, 5, 2)], lambda x: x[:, 1:, :-2, 1:-1]),
    ("Cropping3D-first", lambda: layers.Cropping3D((1, 0, 1), "channels_first"),
     [(2, 2, 4, 3, 5)], lambda x: x[:, :, 1:-1, :, 1:-1]),
    ("UpSampling3D", lambda: layers.UpSampling3D((2, 1, 3)), [(2, 2, 3, 2, 2)],
     lambda x: np.repeat(np.repeat(x, 2, axis=1), 3, axis=3)),
    ("Resizing-bilinear-down", lambda: layers.Resizing(3, 4), [(2, 5, 7, 2)],
     lambda x: resize_ref(x, 3, 4)),
    ("Resizing-bilinear-up", lambda: layers.Resizing(7, 9), [(2, 3, 4, 2)],
     lambda x: resize_ref(x, 7, 9)),
    ("Resizing-nearest", lambda: layers.Resizing(4, 3, "nearest"), [(2, 6, 5, 2)],
     lambda x: resize_ref(x, 4, 3, "nearest")),
    ("Resizing-crop-aspect", lambda: layers.Resizing(4, 4, crop_to_aspect_ratio=True),
     [(2, 6, 9, 2)], lambda x: resize_ref(x[:, :, 1:7], 4, 4)),
    ("Resizing-first", lambda: layers.Resizing(3, 5, data_format="channels_first"),
     [(2, 2, 4, 4)], lambda x: resize_ref(x, 3, 5, axes=(2, 3))),
    ("CenterCrop", lambda: layers.CenterCrop(3, 4), [(2, 6, 7, 2)], lambda x: x[:, 1:4, 1:5]),
    ("CenterCrop-smaller", lambda: layers.CenterCrop(6, 4), [(2, 4, 5, 2)],
     lambda x: resize_ref(x[:, :, 1:3], 6, 4)),        # the 4x2 crop of aspect 6:4
    ("RandomFlip-inference", lambda: layers.RandomFlip(), [(2, 3, 4, 2)], lambda x: x),
    ("RandomRotation-inference", lambda: layers.RandomRotation(0.2), [(2, 3, 4, 2)],
     lambda x: x),
    ("RandomTranslation-inference", lambda: layers.RandomTranslation(0.2, 0.1), [(2, 3, 4, 2)],
     lambda x: x),
    ("RandomZoom-inference", lambda: layers.RandomZoom(0.2), [(2, 3, 4, 2)], lambda x: x),
    ("RandomContrast-inference", lambda: layers.RandomContrast(0.2), [(2, 3, 4, 2)],
     lambda x: x),
    ("RandomBrightness-inference", lambda: layers.RandomBrightness(0.2), [(2, 3, 4, 2)],
     lambda x: x),
    ("UpSampling3D-first", lambda: layers.UpSampling3D(2, "channels_first"), [(2, 2, 2, 1, 2)],
     lambda x: np.repeat(np.repeat(np.repeat(x, 2, axis=2), 2, axis=3), 2, axis=4)),
]
IDS = [c[0] for c in CASES]
BY_ID = {c[0]: c for c in CASES}


def _graph(case_id):
    _, make, shapes, _ = BY_ID[case_id]
    trace = Trace()
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    with tracing(trace):
        xs = [trace.input(f"x{i}", s) for i, s in enumerate(shapes)]
        y = make()(xs if len(xs) > 1 else xs[0])
    g = trace.graph
    g.outputs["y"] = y.id
    R = Sym(g, g.leaf("input", TensorType(y.shape), "R"))
    g.outputs["loss"] = F.sum(y * R).id
    feeds = {f"x{i}": (rng.normal(size=s) * 1.5).astype(np.float32)
             for i, s in enumerate(shapes)}
    feeds["R"] = rng.normal(size=y.shape).astype(np.float32)
    # The PReLU case runs with alpha = 1 (its initializer) -> the identity; no kink at 0.
    return autodiff(g, wrt_role="input"), feeds, trace


@pytest.fixture(scope="module")
def programs():
    return {i: _graph(i) for i in IDS}


def _state_for(programs):
    layout = []
    values = {}
    for i in IDS:
        for v in programs[i][2].variables:
            layout.append((v.path, TensorType(v.shape, str(v.dtype))))
            values[v.path] = v.numpy()
    st = State(layout)
    for k, v in values.items():
        st.assign(k, v)
    return st


@pytest.fixture(scope="module", params=[1, 2], ids=["1thread", "2threads"])
def compiled(request, programs):
    graphs = {f"e{k}": programs[i][0] for k, i in enumerate(IDS)}
    exe = NativeExecutable(graphs, _state_for(programs), nthreads=request.param)
    return {i: exe.run(f"e{k}", programs[i][1]) for k, i in enumerate(IDS)}


@pytest.fixture(scope="module")
def reference(programs):
    graphs = {f"e{k}": programs[i][0] for k, i in enumerate(IDS)}
    ref = ReferenceExecutable(graphs, _state_for(programs))
    return {i: ref.run(f"e{k}", programs[i][1]) for k, i in enumerate(IDS)}


@pytest.mark.parametrize("case_id", IDS)
def test_reference_matches_numpy(case_id, programs, reference):
    feeds = programs[case_id][1]
    xs = [feeds[f"x{i}"].astype(np.float64) for i in range(len(BY_ID[case_id][2]))]
    want = BY_ID[case_id][3](*xs)
    got = reference[case_id]["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case_id", IDS)
def test_compiled_matches_reference(case_id, compiled, reference):
    for key in reference[case_id]:
        if key == "y" or key.startswith("grad/x"):
            np.testing.assert_allclose(compiled[case_id][key], reference[case_id][key],
                                       rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("case_id", IDS)
def test_input_gradient_vs_finite_differences(case_id, programs):
    g, feeds, trace = programs[case_id]
    feeds = {k: v.astype(np.float64) for k, v in feeds.items()}
    feeds.update({v.path: v.numpy().astype(np.float64) for v in trace.variables})
    outs = interpret(g, feeds, float64=True)[0]
    rng = np.random.default_rng(3)
    for i in range(len(BY_ID[case_id][2])):
        name = f"x{i}"
        x = feeds[name]
        for flat in rng.choice(x.size, size=min(8, x.size), replace=False):
            idx = np.unravel_index(flat, x.shape)
            vals = []
            for sign in (1, -1):
                xp = x.copy()
                xp[idx] += sign * 1e-6
                vals.append(interpret(g, {**feeds, name: xp}, float64=True)[0]["loss"])
            np.testing.assert_allclose(outs[f"grad/{name}"][idx], (vals[0] - vals[1]) / 2e-6,
                                       rtol=1e-5, atol=1e-6, err_msg=f"{name}{idx}")


@pytest.mark.parametrize("case_id", IDS)
def test_compute_output_shape_matches_the_traced_shape(case_id, programs):
    _, make, shapes, _ = BY_ID[case_id]
    g = programs[case_id][0]
    traced = g.type(g.outputs["y"]).shape
    arg = [(None, *s[1:]) for s in shapes]
    got = make().compute_output_shape(arg if len(arg) > 1 else arg[0])
    assert tuple(got) == (None, *traced[1:])


@pytest.mark.parametrize("case_id", IDS)
def test_config_round_trip(case_id):
    layer = BY_ID[case_id][1]()
    cfg = json.loads(json.dumps(layer.get_config()))
    again = type(layer).from_config(cfg)
    assert json.loads(json.dumps(again.get_config())) == cfg
    assert layers.deserialize(json.loads(json.dumps(layers.serialize(layer)))).get_config() \
        == again.get_config()


# --------------------------------------------------------------------- PReLU
def _prelu_net():
    return models.Sequential([layers.Input((4, 3)), layers.Dense(5),
                              layers.PReLU(alpha_initializer="random_uniform"),
                              layers.Dense(6), layers.PReLU(shared_axes=[1]), layers.Flatten(),
                              layers.Dense(2)])


def test_prelu_weights_follow_keras_and_match_numpy():
    model = _prelu_net()
    alphas = [w for w in model.weights if w.name == "alpha"]
    assert [a.shape for a in alphas] == [(4, 5), (1, 6)]
    rng = np.random.default_rng(4)
    layer = layers.PReLU()
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    layer.build((None, 4, 5))
    alpha = rng.normal(size=(4, 5)).astype(np.float32)
    layer.set_weights([alpha])
    np.testing.assert_allclose(np.asarray(layer(x)), np.where(x >= 0, x, alpha * x),
                               rtol=1e-6, atol=1e-7)


def test_prelu_alpha_gradient_vs_finite_differences():
    model = _prelu_net()
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.weights])
    check_gradients_fd(model, [rng.normal(size=(3, 4, 3))], per_weight=6)


def test_prelu_training_compiled_matches_reference():
    rng = np.random.default_rng(1)
    nat, ref = _prelu_net(), _prelu_net()
    w0 = [rng.normal(0, 0.4, w.shape).astype(np.float32) for w in nat.weights]
    nat.set_weights(w0)
    ref.set_weights(w0)
    nat.compile(optimizer=optimizers.Adam(0.01), loss="mse", backend="native")
    ref.compile(optimizer=optimizers.Adam(0.01), loss="mse", backend="reference")
    x = rng.normal(size=(8, 4, 3)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(nat.train_on_batch(x, y), ref.train_on_batch(x, y),
                                   rtol=1e-4, atol=1e-5)
    for a, b in zip(nat.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ Softmax mask
def test_softmax_mask_zeroes_masked_positions():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 6)).astype(np.float32)
    keep = rng.random((3, 6)) > 0.4
    keep[:, 0] = True
    trace = Trace()
    with tracing(trace):
        xs = trace.input("x", x.shape)
        m = trace.input("m", x.shape, "int32")
        trace.graph.outputs["y"] = layers.Softmax()(xs, mask=m).id
    got = interpret(trace.graph, {"x": x, "m": keep.astype(np.int32)})[0]["y"]
    e = np.where(keep, np.exp(x - x.max(-1, keepdims=True)), 0.0)
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- random layers
def test_gaussian_noise_statistics_and_seed():
    x = np.full((64, 512), 2.0, np.float32)
    a, b = layers.GaussianNoise(0.3, seed=3), layers.GaussianNoise(0.3, seed=3)
    ya, yb = np.asarray(a(x, training=True)), np.asarray(b(x, training=True))
    np.testing.assert_array_equal(ya, yb)
    noise = ya - 2.0
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.3) < 0.01
    np.testing.assert_array_equal(np.asarray(a(x, training=False)), x)
    assert not np.array_equal(np.asarray(a(x, training=True)), ya)     # next step, new noise


def test_gaussian_dropout_statistics():
    x = np.full((64, 512), 3.0, np.float32)
    y = np.asarray(layers.GaussianDropout(0.2, seed=1)(x, training=True)) / 3.0
    assert abs(y.mean() - 1.0) < 0.01 and abs(y.std() - np.sqrt(0.2 / 0.8)) < 0.01
    np.testing.assert_array_equal(np.asarray(layers.GaussianDropout(0.2)(x)), x)


def test_alpha_dropout_keeps_mean_and_variance():
    x = np.random.default_rng(0).normal(size=(128, 512)).astype(np.float32)
    y = np.asarray(layers.AlphaDropout(0.2, seed=2)(x, training=True))
    assert abs(y.mean()) < 0.02 and abs(y.std() - 1.0) < 0.02
    dropped_value = -0.2 * 0 + (
        ((1 - 0.2) * (1 + 0.2 * (1.6732632423543772 * 1.0507009873554805) ** 2)) ** -0.5
        * -1.6732632423543772 * 1.0507009873554805 * (1 - 0.2))
    assert np.isclose(y, dropped_value, atol=1e-5).mean() == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("cls,shape,fmt", [
    (layers.SpatialDropout1D, (8, 6, 16), None),
    (layers.SpatialDropout2D, (8, 3, 4, 16), "channels_last"),
    (layers.SpatialDropout2D, (8, 16, 3, 4), "channels_first"),
    (layers.SpatialDropout3D, (4, 2, 3, 2, 16), "channels_last")])
def test_spatial_dropout_drops_whole_feature_maps(cls, shape, fmt):
    x = np.ones(shape, np.float32)
    layer = cls(0.5, seed=4) if fmt is None else cls(0.5, data_format=fmt, seed=4)
    y = np.asarray(layer(x, training=True))
    assert set(np.unique(y)) <= {0.0, 2.0}
    ch_axis = 1 if fmt == "channels_first" else len(shape) - 1
    spatial = tuple(a for a in range(1, len(shape)) if a != ch_axis)
    assert (y.min(axis=spatial) == y.max(axis=spatial)).all()     # one draw per map
    assert 0.25 < (y.max(axis=spatial) == 0).mean() < 0.75
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_noise_layers_in_fit_change_every_step():
    """In a compiled training step the noise is drawn anew each step (state advances)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    for noise in (layers.GaussianNoise(0.5), layers.GaussianDropout(0.4),
                  layers.AlphaDropout(0.3)):
        model = models.Sequential([layers.Input((8,)), noise, layers.Dense(1)])
        model.compile(optimizer=optimizers.SGD(0.0), loss="mse")
        losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
        assert len(set(losses)) == 3, (type(noise).__name__, losses)
        clean = float(model.evaluate(x, y, verbose=0))
        assert clean == pytest.approx(float(model.evaluate(x, y, verbose=0)))


@pytest.mark.parametrize("mode,flip", [("horizontal", lambda x: x[:, ::-1]),
                                       ("vertical", lambda x: x[::-1]),
                                       ("horizontal_and_vertical", lambda x: x[::-1, ::-1])])
def test_random_flip_flips_whole_images_half_the_time(mode, flip):
    x = np.random.default_rng(1).normal(size=(64, 3, 4, 2)).astype(np.float32)
    y = np.asarray(layers.RandomFlip(mode, seed=2)(x, training=True))
    flipped = [np.array_equal(y[i], flip(x[i])) for i in range(64)]
    kept = [np.array_equal(y[i], x[i]) for i in range(64)]
    assert all(a != b for a, b in zip(flipped, kept))
    assert 16 < sum(flipped) < 48
    with pytest.raises(ValueError, match="unknown mode"):
        layers.RandomFlip("diagonal")


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_random_contrast_scales_each_image_about_its_channel_means(fmt):
    """y = clip((x - mean_hw) * c + mean_hw, 0, 255) with one c per image in Keras'
    range for factor (0.2, 0.4): [0.8, 1.4]."""
    rng = np.random.default_rng(6)
    x = rng.uniform(60, 190, size=(16, 4, 5, 3)).astype(np.float32)
    axes = (1, 2)
    if fmt == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        axes = (2, 3)
    y = np.asarray(layers.RandomContrast((0.2, 0.4), seed=3, data_format=fmt)(x, training=True))
    mean = x.mean(axis=axes, keepdims=True)
    c = ((y - mean) * (x - mean)).sum(axis=(1, 2, 3)) / ((x - mean) ** 2).sum(axis=(1, 2, 3))
    assert (c >= 0.8 - 1e-5).all() and (c <= 1.4 + 1e-5).all() and c.std() > 0.05
    want = np.clip((x - mean) * c[:, None, None, None] + mean, 0, 255)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)
    assert layers.RandomContrast(0.5).factor == (0, 0.5)       # Keras: (0, f) for a number


# ------------------------------------------------------------ ActivityRegularization
def test_activity_regularization_adds_keras_loss_term():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    model = models.Sequential([layers.Input((3,)), layers.ActivityRegularization(0.1, 0.2)])
    model.compile(optimizer="sgd", loss="mse")
    y = np.zeros((4, 3), np.float32)
    loss = float(model.evaluate(x, y, verbose=0))
    # mse + (l1 sum|x| + l2 sum x^2) / batch size (Keras 3 scales by the batch)
    want = (x ** 2).mean() + (0.1 * np.abs(x).sum() + 0.2 * (x ** 2).sum()) / 4
    assert loss == pytest.approx(want, rel=1e-5)
    cfg = model.layers[0].get_config()
    assert cfg["l1"] == 0.1 and cfg["l2"] == 0.2 and "activity_regularizer" not in cfg


# ----------------------------------------------------------------- Normalization
def test_normalization_adapt_matches_numpy_for_arrays_and_batches():
    rng = np.random.default_rng(8)
    data = (rng.normal(size=(50, 4, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.0]).astype(np.float32)
    whole = layers.Normalization()
    whole.adapt(data)
    batched = layers.Normalization()
    batched.adapt([data[i:i + 7] for i in range(0, 50, 7)])
    mean, var = data.reshape(-1, 3).mean(0), data.reshape(-1, 3).var(0)
    for layer in (whole, batched):
        np.testing.assert_allclose(layer.get_weights()[0], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.get_weights()[1], var, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(layer(data)), (data - mean) / np.sqrt(var),
                                   rtol=1e-4, atol=1e-5)
    per_pos = layers.Normalization(axis=(1, 2))
    per_pos.adapt(data)
    np.testing.assert_allclose(per_pos.get_weights()[0], data.mean(0), rtol=1e-5, atol=1e-6)
    assert [w.name for w in whole.weights] == ["mean", "variance", "count"]
    assert all(not w.trainable for w in whole.weights)


def test_normalization_invert_undoes_normalization():
    rng = np.random.default_rng(9)
    data = rng.normal(size=(30, 5)).astype(np.float32) * 4 + 1
    norm = layers.Normalization()
    norm.adapt(data)
    inv = layers.Normalization(invert=True)
    inv.adapt(data)
    np.testing.assert_allclose(np.asarray(inv(np.asarray(norm(data)))), data, rtol=1e-4,
                               atol=1e-4)


def test_normalization_adapted_model_saves_and_loads(tmp_path):
    rng = np.random.default_rng(10)
    data = rng.normal(size=(40, 3)).astype(np.float32) * 5
    norm = layers.Normalization()
    norm.adapt(data)
    model = models.Sequential([layers.Input((3,)), norm, layers.Dense(2)])
    for ext in ("keras", "h5"):
        path = str(tmp_path / f"n.{ext}")
        model.save(path)
        loaded = models.load_model(path)
        np.testing.assert_allclose(loaded.predict(data, verbose=0),
                                   model.predict(data, verbose=0), rtol=1e-6, atol=1e-6)


def test_normalization_bad_arguments():
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        layers.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="same shape"):
        layers.Normalization(mean=[1.0, 2.0], variance=[1.0])
    with pytest.raises(ValueError, match="incompatible shape"):
        n = layers.Normalization()
        n.adapt(np.ones((4, 3)))
        n.adapt(np.ones((4, 5)))
    with pytest.raises(ValueError, match="empty iterable"):
        layers.Normalization().adapt([])


# ------------------------------------------------------- encodings and binning
def test_category_encoding_modes_match_numpy():
    ids = np.array([[1, 2, 2], [0, 3, 3], [4, 4, 4]], np.int32)
    eye = np.eye(5)
    np.testing.assert_array_equal(np.asarray(layers.CategoryEncoding(5, "one_hot")(ids)),
                                  eye[ids])
    np.testing.assert_array_equal(np.asarray(layers.CategoryEncoding(5)(ids)),
                                  eye[ids].max(1))
    np.testing.assert_array_equal(np.asarray(layers.CategoryEncoding(5, "count")(ids)),
                                  eye[ids].sum(1))
    w = np.array([[0.5, 1.0, 2.0], [1.0, 1.0, 1.0], [3.0, 0.0, 1.0]], np.float32)
    ins = [layers.Input((3,), dtype="int32"), layers.Input((3,))]
    weighted = models.Model(ins, layers.CategoryEncoding(5, "count")(ins[0],
                                                                     count_weights=ins[1]))
    got = weighted.predict([ids, w], verbose=0)
    np.testing.assert_allclose(got, (eye[ids] * w[..., None]).sum(1))
    with pytest.raises(ValueError, match="num_tokens must be set"):
        layers.CategoryEncoding()
    with pytest.raises(ValueError, match="Unknown arg for output_mode"):
        layers.CategoryEncoding(3, "tf_idf")


def test_discretization_bins_and_adapt():
    x = np.array([[-1.0, -0.5, 0.0, 0.3], [0.7, 0.69, 2.0, -0.6]], np.float32)
    b = [-0.5, 0.0, 0.7]
    got = np.asarray(layers.Discretization(bin_boundaries=b)(x))
    # Boundaries compared in float32, as Keras on JAX does (0.7 in float32 is in bin 3)
    np.testing.assert_array_equal(got, np.digitize(x, np.float32(b)))
    oh = np.asarray(layers.Discretization(bin_boundaries=b, output_mode="one_hot")(x))
    np.testing.assert_array_equal(oh, np.eye(4)[np.digitize(x, np.float32(b))])
    data = np.random.default_rng(3).normal(size=(1000,)).astype(np.float32)
    d = layers.Discretization(num_bins=4)
    d.adapt(data)
    np.testing.assert_allclose(d.bin_boundaries, np.quantile(data, [0.25, 0.5, 0.75]),
                               rtol=1e-5)
    counts = np.bincount(np.asarray(d(data[:, None]))[:, 0], minlength=4)
    assert counts.min() >= 240
    with pytest.raises(ValueError, match="bin_boundaries"):
        layers.Discretization(num_bins=3)(x)


# ------------------------------------------------------------------ saving
def _model_of_everything():
    a = layers.Input((4, 5))
    b = layers.Input((3, 5))
    h = layers.Normalization(mean=MEAN5, variance=VAR5)(a)
    h = layers.PReLU(shared_axes=[1])(layers.Dense(5)(h))
    h = layers.GaussianNoise(0.1)(layers.ELU(0.7)(h))
    h = layers.SpatialDropout1D(0.2)(layers.Rescaling(0.5, 0.1)(h))
    h = layers.ActivityRegularization(l2=0.01)(layers.Identity()(h))
    d = layers.dot([h, b], axes=2)                                       # (None, 4, 3)
    d = layers.Softmax(axis=1)(layers.Permute((2, 1))(d))
    d = layers.AlphaDropout(0.1)(layers.GaussianDropout(0.1)(d))
    return models.Model([a, b], layers.Dense(2)(layers.Flatten()(d)))


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_model_with_every_layer_saves_and_loads(tmp_path, ext):
    model = _model_of_everything()
    rng = np.random.default_rng(11)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.weights])
    xs = [rng.normal(size=(3, 4, 5)).astype(np.float32),
          rng.normal(size=(3, 3, 5)).astype(np.float32)]
    want = model.predict(xs, verbose=0)
    path = str(tmp_path / f"m.{ext}")
    model.save(path)
    loaded = models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), want, rtol=1e-5, atol=1e-6)
    again = models.model_from_json(model.to_json())
    assert [l.get_config() for l in again.layers[2:]] == [l.get_config() for l in
                                                          model.layers[2:]]


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_image_and_volume_layers_save_and_load(tmp_path, ext):
    model = models.Sequential([
        layers.Input((6, 7, 2)), layers.RandomFlip("horizontal", seed=1),
        layers.RandomRotation((-0.1, 0.2), fill_mode="wrap", seed=3),
        layers.RandomTranslation(0.1, [-0.2, 0.1], seed=4), layers.RandomZoom(0.1, seed=5),
        layers.RandomContrast(0.1), layers.RandomBrightness(0.1, (-5, 5)),
        layers.Resizing(5, 5, crop_to_aspect_ratio=True), layers.CenterCrop(4, 3),
        layers.Reshape((4, 3, 2, 1)), layers.ZeroPadding3D(((1, 0), (0, 1), (1, 1))),
        layers.Cropping3D(((0, 1), (1, 0), (1, 0))), layers.UpSampling3D((1, 2, 1)),
        layers.Flatten(), layers.Discretization([-0.5, 0.5], output_mode="int")])
    x = np.random.default_rng(3).normal(size=(2, 6, 7, 2)).astype(np.float32)
    path = str(tmp_path / f"m.{ext}")
    model.save(path)
    loaded = models.load_model(path)
    def configs(m):
        return json.loads(json.dumps([l.get_config() for l in m.layers]))
    assert configs(loaded) == configs(model)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_encoding_model_saves_and_loads(tmp_path):
    ids = layers.Input((3,), dtype="int32")
    out = layers.CategoryEncoding(6, "count")(ids)
    model = models.Model(ids, out)
    x = np.array([[1, 1, 5], [0, 2, 3]], np.int32)
    for ext in ("keras", "h5"):
        path = str(tmp_path / f"e.{ext}")
        model.save(path)
        np.testing.assert_array_equal(models.load_model(path).predict(x, verbose=0),
                                      np.eye(6)[x].sum(1))


# --------------------------------------------------------------- bad arguments
def test_bad_arguments_raise_keras_errors():
    with pytest.raises(ValueError, match="must be `{1, 2, ..., n}`"):
        layers.Permute((1, 3))
    with pytest.raises(ValueError, match="Permute"):
        layers.Permute((2, 1))(np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="Invalid type for argument `axes`"):
        layers.Dot(axes="1")
    with pytest.raises(ValueError, match="two elements"):
        layers.Dot(axes=(1, 2, 3))
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        layers.Dot(axes=1)([np.zeros((2, 3), np.float32)] * 3)
    with pytest.raises(ValueError, match="Incompatible input shapes"):
        layers.Dot(axes=1)([np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match="stddev"):
        layers.GaussianNoise(1.5)
    with pytest.raises(ValueError, match="rate"):
        layers.GaussianDropout(-0.1)
    with pytest.raises(ValueError, match="expected ndim=3"):
        layers.SpatialDropout1D(0.5)(np.zeros((2, 3), np.float32), training=True)
    with pytest.raises(ValueError, match="broadcastable"):
        layers.Softmax()(np.zeros((2, 3), np.float32), mask=np.ones((2, 4), np.int32))
    with pytest.raises(ValueError, match="tuple of 3 tuples"):
        layers.ZeroPadding3D((1, 2))
    with pytest.raises(ValueError, match="smaller than the corresponding"):
        layers.Cropping3D(2)(np.zeros((1, 4, 4, 3, 1), np.float32))
    with pytest.raises(ValueError, match="size"):
        layers.UpSampling3D((2, 2))
    with pytest.raises(ValueError, match="`factor` argument should be a number"):
        layers.RandomRotation(1.5)
    with pytest.raises(NotImplementedError, match="Unknown `fill_mode`"):
        layers.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match=r"in the range \(-1.0, 1.0\]"):
        layers.RandomZoom(-1.0)
    with pytest.raises(ValueError, match=r"in the range \[-1.0, 1.0\]"):
        layers.RandomTranslation(0.1, 1.5)
    with pytest.raises(ValueError, match="kcompile implements interpolation"):
        layers.Resizing(3, 3, "bicubic")
    with pytest.raises(ValueError, match="shared_axes"):
        layers.PReLU(shared_axes=[0]).build((None, 3))
