"""Files written by real Keras 3 (tests/fixtures/make_small_fixtures.py, JAX backend)
with the small layers: each loads with kcompile.models.load_model and predicts Keras'
outputs (compiled); for the model without weights, the gradient of sum_i <y_i, r_i>
with respect to the input equals Keras'; layer configs keep Keras' keys and values."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from kcompile import layers, models
from kcompile.ir import builder as F
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff
from kcompile.tracing import Trace, tracing

from fixtures.small_cases import FIXED_DRAWS

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "small")
FILES = [("weightless", "keras"), ("volumes", "keras"), ("images", "keras"), ("with_weights", "keras"), ("with_weights", "h5"),
         ("encodings", "keras"), ("encodings", "h5")]


def _data(name):
    with np.load(os.path.join(HERE, f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def _outputs(data, prefix):
    return [data[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) and k[len(prefix):]
                                                    .isdigit() for k in data))]


@pytest.mark.parametrize("name,ext", FILES, ids=[f"{n}.{e}" for n, e in FILES])
def test_keras_file_predicts_keras_outputs(name, ext):
    data = _data(name)
    model = models.load_model(os.path.join(HERE, f"{name}.{ext}"))
    xs = [data["x"]] + ([data["x1"]] if "x1" in data else [])
    got = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    got = got if isinstance(got, list) else [got]
    want = _outputs(data, "y")
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, (i, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6, err_msg=f"output {i}")


@pytest.mark.parametrize("name", ["weightless", "volumes", "images"])
def test_keras_file_input_gradient_matches_keras(name):
    data = _data(name)
    model = models.load_model(os.path.join(HERE, f"{name}.keras"))
    trace = Trace()
    with tracing(trace):
        x = trace.input("x", data["x"].shape)
        ys = model.forward([x])
        loss = None
        for y, r in zip(ys, _outputs(data, "r")):
            term = F.sum(y * r)
            loss = term if loss is None else loss + term
        trace.graph.outputs["loss"] = loss.id
    out = interpret(autodiff(trace.graph, wrt_role="input"), {"x": data["x"]})[0]
    np.testing.assert_allclose(out["grad/x"], data["grad"], rtol=1e-4, atol=1e-4)


def test_keras_weights_load_in_keras_order():
    """PReLU alphas and Normalization's mean / variance / count come from Keras' file."""
    model = models.load_model(os.path.join(HERE, "with_weights.keras"))
    norm = next(l for l in model.layers if isinstance(l, layers.Normalization))
    data = _data("with_weights")
    assert [w.name for w in norm.weights] == ["mean", "variance", "count"]
    assert not np.allclose(norm.get_weights()[0], 0.0)      # the adapted values, not init
    prelus = [l for l in model.layers if isinstance(l, layers.PReLU)]
    assert [p.alpha.shape for p in prelus] == [(4, 5), (1, 6)]
    assert data["y0"].shape == (3, 3)


def _plain(value):
    """A config value without the module / registered_name bookkeeping of nested entries."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("module", "registered_name")}
    return value


def test_config_keys_are_keras_keys():
    seen = set()
    for name in ("weightless", "with_weights", "encodings", "volumes", "images"):
        with zipfile.ZipFile(os.path.join(HERE, f"{name}.keras")) as z:
            config = json.loads(z.read("config.json"))
        for entry in config["config"]["layers"]:
            cls = getattr(layers, entry["class_name"], None)
            if entry["class_name"] in ("InputLayer", "Dense", "Flatten", "Reshape"):
                continue
            keras_cfg = entry["config"]
            ours = json.loads(json.dumps(cls.from_config(keras_cfg).get_config()))
            keras_keys = set(keras_cfg) - {"dtype"}
            assert keras_keys <= set(ours), (entry["class_name"], keras_keys - set(ours))
            # Nothing Keras' constructor would reject (ELU's alpha it takes, not writes).
            extra = set(ours) - set(keras_cfg) - ({"alpha"} if cls is layers.ELU else set())
            assert not extra, (entry["class_name"], extra)
            for key in keras_keys - {"name", "trainable"}:
                assert _plain(ours[key]) == _plain(keras_cfg[key]), \
                    (entry["class_name"], key, ours[key], keras_cfg[key])
            seen.add(entry["class_name"])
    assert seen == {"ELU", "Softmax", "Permute", "Dot", "Identity", "GaussianNoise",
                    "GaussianDropout", "SpatialDropout1D", "AlphaDropout",
                    "ActivityRegularization", "Rescaling", "Normalization", "PReLU",
                    "CategoryEncoding", "Discretization", "ZeroPadding3D", "Cropping3D",
                    "UpSampling3D", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation",
                    "RandomTranslation", "RandomZoom", "RandomContrast",
                    "RandomBrightness"}


def _affine_graph(make, shape):
    """A random image layer traced in training: y, loss = <y, r>, grad/x; its seed state."""
    trace = Trace()
    layer = make()
    with tracing(trace):
        x = trace.input("x", shape)
        r = trace.input("r", shape)
        y = layer(x, training=True)
        trace.graph.outputs["y"] = y.id
        trace.graph.outputs["loss"] = F.sum(y * r).id
    return autodiff(trace.graph, wrt_role="input"), trace


@pytest.mark.parametrize("i", range(len(FIXED_DRAWS)), ids=[f"{c}-{i}" for i, (c, _) in
                                                      enumerate(FIXED_DRAWS)])
def test_random_image_layers_in_training_match_keras(i):
    """One fixed draw (factors (a, a)): Keras' transform, fill mode and interpolation, on
    the reference interpreter and compiled, and Keras' input gradient."""
    from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
    from kcompile.runtime.state import State
    from kcompile.ir.graph import TensorType
    data = _data("fixed_draws")
    x = data["x"]
    cls, kwargs = FIXED_DRAWS[i]

    def make():
        return getattr(layers, cls)(**kwargs)
    g, trace = _affine_graph(make, x.shape)
    feeds = {"x": x, "r": data[f"r{i}"]}
    layout = [(v.path, TensorType(v.shape, str(v.dtype))) for v in trace.variables]
    outs = {}
    for name, exe_cls in (("reference", ReferenceExecutable), ("native", NativeExecutable)):
        state = State(layout)
        for v in trace.variables:
            state.assign(v.path, v.numpy())
        outs[name] = exe_cls({"e": g}, state).run("e", feeds)
    for name, got in outs.items():
        np.testing.assert_allclose(got["y"], data[f"y{i}"], rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(got["grad/x"], data[f"grad{i}"], rtol=1e-4, atol=1e-4,
                                   err_msg=name)
    np.testing.assert_allclose(np.asarray(make()(x, training=True)), data[f"y{i}"],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(make()(x)), x)
