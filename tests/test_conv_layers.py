"""The convolution layers: Conv1D, Conv2D, Conv1DTranspose, Conv2DTranspose,
DepthwiseConv2D, SeparableConv2D.

* each layer's output equals a direct-loop numpy reference written from Keras'
  definitions (tests/conv_reference.py, not kcompile) over odd sizes, every padding,
  strides, dilations, groups, depth multipliers and both data formats; compiled on 1
  and 2 threads and on the reference interpreter;
* compute_output_shape agrees with the traced output and the reference's shape;
* training steps of the compiled models equal the reference interpreter's, and the
  interpreter's gradients equal finite differences;
* configs round-trip; models save and load in `.keras` and `.h5`;
* files written by real Keras 3 (tests/fixtures/conv/, made by
  tests/fixtures/make_conv_fixtures.py) load and compute what Keras computed;
* bad arguments and inputs raise errors naming the problem, in Keras' wording.
"""
from __future__ import annotations

import pathlib
import zlib

import numpy as np
import pytest

from kcompile import config, layers, models, optimizers

try:
    from tests import conv_reference as R
    from tests.model_checks import check_gradients_fd
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    import conv_reference as R
    from model_checks import check_gradients_fd

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "conv"
ATOL, RTOL = 2e-5, 2e-5

# (layer class, constructor arguments, input shape without the batch)
C1, C2 = "Conv1D", "Conv2D"
T1, T2 = "Conv1DTranspose", "Conv2DTranspose"
DW, SEP = "DepthwiseConv2D", "SeparableConv2D"
CASES = [
    (C1, dict(filters=3, kernel_size=3), (9, 2)),
    (C1, dict(filters=4, kernel_size=2, strides=3, padding="same"), (11, 3)),
    (C1, dict(filters=4, kernel_size=4, padding="same", dilation_rate=2), (7, 2)),
    (C1, dict(filters=3, kernel_size=3, padding="causal", dilation_rate=3,
              activation="relu"), (10, 2)),
    (C1, dict(filters=2, kernel_size=2, strides=2, padding="causal"), (9, 3)),
    (C1, dict(filters=6, kernel_size=3, groups=3, padding="same"), (7, 3)),
    (C1, dict(filters=4, kernel_size=3, strides=2, data_format="channels_first",
              use_bias=False), (3, 9)),
    (C2, dict(filters=3, kernel_size=3), (7, 9, 2)),
    (C2, dict(filters=4, kernel_size=(2, 3), strides=(2, 3), padding="same"), (9, 11, 3)),
    (C2, dict(filters=2, kernel_size=3, dilation_rate=(2, 3), padding="same",
              activation="tanh"), (9, 10, 3)),
    (C2, dict(filters=4, kernel_size=(3, 1), dilation_rate=2), (11, 5, 1)),
    (C2, dict(filters=6, kernel_size=3, groups=2, strides=2), (9, 7, 4)),
    (C2, dict(filters=5, kernel_size=1, strides=(1, 2)), (5, 7, 3)),
    (C2, dict(filters=3, kernel_size=(3, 2), strides=(2, 1), padding="same",
              data_format="channels_first", activation="sigmoid"), (2, 7, 9)),
    (T1, dict(filters=3, kernel_size=3), (5, 2)),
    (T1, dict(filters=2, kernel_size=4, strides=3, padding="same"), (5, 3)),
    (T1, dict(filters=2, kernel_size=3, strides=3, padding="valid", output_padding=2), (4, 2)),
    (T1, dict(filters=3, kernel_size=2, strides=2, padding="same", output_padding=1), (5, 2)),
    (T1, dict(filters=2, kernel_size=3, dilation_rate=2, padding="same"), (6, 3)),
    (T1, dict(filters=3, kernel_size=3, strides=2, data_format="channels_first"), (2, 5)),
    (T2, dict(filters=3, kernel_size=3, strides=2, padding="same"), (4, 5, 2)),
    (T2, dict(filters=2, kernel_size=(2, 3), strides=(3, 2), padding="valid",
              output_padding=(2, 1)), (3, 4, 3)),
    (T2, dict(filters=2, kernel_size=(3, 4), strides=(1, 2), padding="same",
              output_padding=(0, 1), activation="relu"), (5, 3, 2)),
    (T2, dict(filters=3, kernel_size=2, dilation_rate=(2, 1)), (4, 5, 2)),
    (T2, dict(filters=2, kernel_size=3, strides=2, padding="same",
              data_format="channels_first"), (3, 4, 5)),
    (DW, dict(kernel_size=3), (7, 6, 3)),
    (DW, dict(kernel_size=(2, 3), strides=2, padding="same", depth_multiplier=2), (9, 7, 3)),
    (DW, dict(kernel_size=3, dilation_rate=2, padding="same", use_bias=False), (7, 8, 2)),
    (DW, dict(kernel_size=3, strides=(1, 2), depth_multiplier=3,
              data_format="channels_first"), (2, 7, 9)),
    (SEP, dict(filters=4, kernel_size=3), (7, 9, 3)),
    (SEP, dict(filters=3, kernel_size=(3, 2), strides=2, padding="same", depth_multiplier=2,
               activation="relu"), (9, 8, 2)),
    (SEP, dict(filters=2, kernel_size=2, dilation_rate=2, padding="same",
               data_format="channels_first"), (3, 7, 6)),
]


def _id(case):
    cls, kw, shape = case
    return f"{cls}-" + "-".join(f"{k}={v}" for k, v in kw.items()) + f"-in{shape}"


def _rng(*what):
    return np.random.default_rng(zlib.crc32(repr(what).encode()))


def _model(cls, kw, shape):
    return models.Sequential([layers.Input(shape), getattr(layers, cls)(**kw)])


def _seeded(model, rng):
    """Random weights, biases included (Keras initializes them to zeros)."""
    return [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]


def _reference(layer, weights, x):
    return R.layer_output({**layer.get_config(), "class_name": type(layer).__name__}, weights,
                          x)


# -- forward ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_layer_matches_direct_loops(case):
    cls, kw, shape = case
    rng = _rng(case)
    x = rng.normal(size=(3, *shape)).astype(np.float32)
    weights = None
    for backend, nthreads in (("reference", None), ("native", 1), ("native", 2)):
        model = _model(cls, kw, shape)
        weights = weights or _seeded(model, rng)
        model.set_weights(weights)
        model.compile(loss="mse", backend=backend, nthreads=nthreads)
        want = _reference(model.layers[0], weights, x)
        got = model.predict(x, batch_size=3, verbose=0)
        assert got.shape == want.shape, (backend, nthreads)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL,
                                   err_msg=f"{backend}, nthreads={nthreads}")
        assert model.layers[0].compute_output_shape((None, *shape)) == (None, *want.shape[1:])


def test_weight_layouts_are_keras():
    x2, x1 = (None, 7, 9, 3), (None, 9, 3)

    def shapes(layer, input_shape):
        layer.build(input_shape)
        return [tuple(w.shape) for w in layer.weights]

    assert shapes(layers.Conv2D(6, (3, 2), groups=3), x2) == [(3, 2, 1, 6), (6,)]
    assert shapes(layers.Conv1D(4, 5, use_bias=False), x1) == [(5, 3, 4)]
    assert shapes(layers.Conv2DTranspose(5, (3, 2)), x2) == [(3, 2, 5, 3), (5,)]
    assert shapes(layers.Conv1DTranspose(5, 2), x1) == [(2, 5, 3), (5,)]
    assert shapes(layers.DepthwiseConv2D(3, depth_multiplier=2), x2) == [(3, 3, 3, 2), (6,)]
    sep = layers.SeparableConv2D(4, 3, depth_multiplier=2)
    assert shapes(sep, x2) == [(3, 3, 3, 2), (1, 1, 6, 4), (4,)]
    assert [w.name for w in sep.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    cf = layers.Conv2D(4, 3, data_format="channels_first")
    assert shapes(cf, (None, 3, 7, 9)) == [(3, 3, 3, 4), (4,)]


def test_data_format_defaults_to_image_data_format():
    assert layers.Conv2D(2, 3).data_format == "channels_last"
    config.set_image_data_format("channels_first")
    try:
        assert layers.Conv2D(2, 3).data_format == "channels_first"
        assert layers.Conv1DTranspose(2, 3).data_format == "channels_first"
        assert layers.DepthwiseConv2D(3).data_format == "channels_first"
        assert layers.SeparableConv2D(2, 3).data_format == "channels_first"
        assert layers.Conv2D(2, 3, data_format="channels_last").data_format == "channels_last"
    finally:
        config.set_image_data_format("channels_last")


def test_variable_length_conv1d():
    """A None time axis: the same layer on two lengths, each as the reference says."""
    inp = layers.Input((None, 2))
    model = models.Model(inp, layers.Conv1D(3, 3, padding="causal", dilation_rate=2)(inp))
    rng = _rng("variable")
    weights = _seeded(model, rng)
    model.set_weights(weights)
    assert model.layers[1].compute_output_shape((None, None, 2)) == (None, None, 3)
    for n in (5, 9):
        x = rng.normal(size=(2, n, 2)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x, verbose=0),
                                   _reference(model.layers[1], weights, x), atol=ATOL, rtol=RTOL)


# -- training --------------------------------------------------------------------------------
def _stack(kind):
    """Small models mixing the layers, ending in Dense so the loss sees every output."""
    if kind == "conv1d":
        body = [layers.Input((13, 3)),
                layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
                layers.Conv1D(6, 2, strides=2, padding="same", groups=2),
                layers.Conv1DTranspose(3, 3, strides=2, padding="same", activation="tanh")]
    elif kind == "conv2d":
        body = [layers.Input((9, 8, 2)),
                layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                layers.Conv2D(3, (2, 3), data_format="channels_first", activation="tanh"),
                layers.Conv2DTranspose(2, 3, strides=(2, 1), output_padding=(1, 0))]
    else:
        body = [layers.Input((9, 7, 3)),
                layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", strides=2,
                                       activation="relu"),
                layers.SeparableConv2D(4, 2, depth_multiplier=2, dilation_rate=2,
                                       padding="same", activation="tanh")]
    return models.Sequential(body + [layers.Flatten(), layers.Dense(3)])


@pytest.mark.parametrize("kind,optimizer,nthreads", [("conv1d", "sgd", 1), ("conv2d", "adam", 2),
                                                     ("separable", "adam", 1),
                                                     ("conv1d", "adam", 2)])
def test_training_matches_reference_interpreter(kind, optimizer, nthreads):
    rng = _rng(kind, optimizer)
    native, ref = _stack(kind), _stack(kind)
    weights = _seeded(native, rng)
    make = {"sgd": lambda: optimizers.SGD(0.05), "adam": lambda: optimizers.Adam(0.01)}
    for m in (native, ref):
        m.set_weights(weights)
    native.compile(optimizer=make[optimizer](), loss="mse", backend="native", nthreads=nthreads)
    ref.compile(optimizer=make[optimizer](), loss="mse", backend="reference")
    x = rng.normal(size=(4, *native.layers[0].input_shape[1:])).astype(np.float32)
    y = rng.normal(size=(4, 3)).astype(np.float32)
    losses = []
    for step in range(4):
        got, want = native.train_on_batch(x, y), ref.train_on_batch(x, y)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"step {step}")
        losses.append(float(got))
    assert losses[-1] < losses[0]
    for a, b, w0, v in zip(native.get_weights(), ref.get_weights(), weights, native.weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=v.path)
        assert not np.array_equal(a, w0), f"{v.path} did not train"


@pytest.mark.parametrize("kind", ["conv1d", "conv2d", "separable"])
def test_gradients_match_finite_differences(kind):
    model = _stack(kind)
    rng = _rng("fd", kind)
    model.set_weights(_seeded(model, rng))
    x = rng.normal(size=(2, *model.layers[0].input_shape[1:]))
    check_gradients_fd(model, [x], per_weight=3)


# -- configs and saving ----------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES[::3], ids=[_id(c) for c in CASES[::3]])
def test_config_round_trips(case):
    cls, kw, shape = case
    layer = getattr(layers, cls)(**kw, name="x")
    cfg = layer.get_config()
    for key, value in kw.items():
        want = value
        if key in ("kernel_size", "strides", "dilation_rate", "output_padding") \
                and isinstance(value, int):
            want = (value,) * (1 if "1D" in cls else 2)
        assert cfg[key] == want, key
    again = getattr(layers, cls).from_config(cfg)
    assert again.get_config() == cfg
    back = layers.deserialize(layers.serialize(layer))
    assert type(back) is type(layer) and back.get_config() == cfg


def test_keras_defaults_in_config():
    cfg = layers.Conv2D(8, 3).get_config()
    assert {k: cfg[k] for k in ("strides", "padding", "data_format", "dilation_rate", "groups",
                                "activation", "use_bias")} == \
        {"strides": (1, 1), "padding": "valid", "data_format": "channels_last",
         "dilation_rate": (1, 1), "groups": 1, "activation": "linear", "use_bias": True}
    assert cfg["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert layers.Conv1DTranspose(2, 3).get_config()["output_padding"] is None
    assert layers.DepthwiseConv2D(3).get_config()["depth_multiplier"] == 1
    assert layers.SeparableConv2D(2, 3).get_config()["pointwise_initializer"]["class_name"] \
        == "GlorotUniform"
    assert layers.Convolution2D is layers.Conv2D
    assert layers.SeparableConvolution2D is layers.SeparableConv2D


def _all_layers_model():
    inp = layers.Input((9, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu",
                      kernel_regularizer="l2")(inp)
    a = layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2)(a)
    a = layers.SeparableConv2D(3, 2, padding="same")(a)
    a = layers.Conv2DTranspose(2, 3, strides=2, data_format="channels_first")(a)
    b = layers.Reshape((-1, 3))(inp)
    b = layers.Conv1D(4, 3, padding="causal")(b)
    b = layers.Conv1DTranspose(2, 2, strides=2)(b)
    return models.Model(inp, [a, b])


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_save_and_load(ext, tmp_path):
    model = _all_layers_model()
    rng = _rng("save", ext)
    model.set_weights(_seeded(model, rng))
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    path = tmp_path / f"m.{ext}"
    model.save(path)
    loaded = models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for g, w in zip(loaded.predict(x, verbose=0), want):
        np.testing.assert_allclose(g, w, atol=1e-6)


# -- Keras parity ----------------------------------------------------------------------------
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.npz"))


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_keras_written_files_compute_what_keras_computed(name, ext):
    data = np.load(FIXTURES / f"{name}.npz")
    model = models.load_model(FIXTURES / f"{name}.{ext}")
    got = model.predict(data["x"], verbose=0)
    assert got.shape == data["y"].shape
    np.testing.assert_allclose(got, data["y"], atol=2e-5, rtol=2e-5)


def test_every_fixture_model_is_present():
    stems = {p.stem for p in FIXTURES.iterdir() if p.suffix in (".keras", ".h5", ".npz")}
    assert len(FIXTURE_NAMES) >= 8
    assert stems == set(FIXTURE_NAMES)


# -- bad arguments and inputs ----------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: layers.Conv2D(0, 3), r"Invalid value for argument `filters`.*filters=0"),
    (lambda: layers.Conv2D(4, (3, 3, 3)), r"`kernel_size` argument must be a tuple of 2"),
    (lambda: layers.Conv2D(4, 0), r"kernel_size=0.*`value > 0`"),
    (lambda: layers.Conv2D(4, 3, padding="causal"), r"`padding` argument must be"),
    (lambda: layers.Conv1D(4, 3, padding="full"), r"`padding` argument must be"),
    (lambda: layers.Conv2D(5, 3, groups=2), r"filters must be evenly divisible.*groups=2"),
    (lambda: layers.Conv2D(4, 3, groups=0), r"groups must be a positive integer"),
    (lambda: layers.Conv2D(4, 3, strides=2, dilation_rate=2), r"`strides > 1` not supported"),
    (lambda: layers.Conv2D(4, 3, data_format="NHWC"), r"`data_format` argument must be one"),
    (lambda: layers.Conv2DTranspose(4, 3, strides=2, output_padding=2),
     r"`output_padding` must be strictly less than `strides`"),
    (lambda: layers.Conv1DTranspose(4, 3, padding="causal"), r"`padding` argument must be"),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), r"depth_multiplier=0"),
    (lambda: layers.SeparableConv2D(0, 3), r"filters=0"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,shape,match", [
    (lambda: layers.Conv2D(4, 3, groups=2), (8, 8, 3),
     r"input channels must be evenly divisible.*groups=2"),
    (lambda: layers.Conv2D(4, 5), (4, 9, 2), r"output size would be zero or negative"),
    (lambda: layers.Conv1D(4, 3), (8, 8, 2), r"expected ndim=3, found ndim=4"),
    (lambda: layers.Conv2D(4, 3), (8, None), r"expected ndim=4, found ndim=3"),
    (lambda: layers.DepthwiseConv2D(3, dilation_rate=3), (6, 9, 2),
     r"output size would be zero or negative"),
    (lambda: layers.SeparableConv2D(2, 3, data_format="channels_first"), (None, 8, 8),
     r"channel dimension of the inputs.*must be known"),
])
def test_bad_inputs_raise(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        models.Sequential([layers.Input(shape), layer()])


def test_input_with_other_channel_count_raises():
    conv = layers.Conv2D(4, 3)
    models.Sequential([layers.Input((8, 8, 3)), conv])
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 3"):
        models.Sequential([layers.Input((8, 8, 5)), conv])


# -- the W7 model ----------------------------------------------------------------------
def _mnist_convnet():
    return models.Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dropout(0.5, seed=7),
        layers.Dense(10, activation="softmax"),
    ])


def test_mnist_convnet_trains_as_the_reference_interpreter():
    """W7 (keras.io's MNIST convnet), Adam, categorical crossentropy: 5 steps of the
    compiled model give the reference interpreter's losses and weights."""
    rng = _rng("w7")
    native, ref = _mnist_convnet(), _mnist_convnet()
    weights = [rng.normal(0, 0.1, w.shape).astype(np.float32) for w in native.weights]
    native.set_weights(weights)
    ref.set_weights(weights)
    native.compile(optimizer=optimizers.Adam(), loss="categorical_crossentropy",
                   metrics=["accuracy"], nthreads=2)
    ref.compile(optimizer=optimizers.Adam(), loss="categorical_crossentropy",
                metrics=["accuracy"], backend="reference")
    x = rng.random((16, 28, 28, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    losses = []
    for step in range(5):
        got, want = native.train_on_batch(x, y), ref.train_on_batch(x, y)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"step {step}")
        losses.append(got[0])
    assert losses[-1] < losses[0]
    # Adam moves every weight by about its learning rate (1e-3) per step, whatever the
    # gradient's size: float32 rounding of near-zero gradients shows at 1e-5.
    for a, b, v in zip(native.get_weights(), ref.get_weights(), native.weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4, err_msg=v.path)
