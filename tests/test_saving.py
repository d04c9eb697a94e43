"""Saving and loading: round trips of every layer type (same predictions, training
resumes exactly), configs, custom objects, files in Keras' own layouts written here
with h5py/zipfile (compared with a numpy forward pass), atomic saves, bad files.
"""
from __future__ import annotations

import io
import json
import os
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import kcompile
from kcompile import layers, losses, models, optimizers, saving
from kcompile.ir import builder as F

RNG = np.random.default_rng(7)


def same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert [w.shape for w in wa] == [w.shape for w in wb]
    for i, (x, y) in enumerate(zip(wa, wb)):
        np.testing.assert_array_equal(x, y, err_msg=f"weight {i}")


def same_predictions(a, b, x, atol=0.0):
    pa, pb = a.predict(x, verbose=0), b.predict(x, verbose=0)
    for p, q in zip(pa if isinstance(pa, list) else [pa], pb if isinstance(pb, list) else [pb]):
        np.testing.assert_allclose(p, q, rtol=0, atol=atol)


def optimizer_state(model):
    return {v.path: v.numpy() for v in model.optimizer.variables}


# ------------------------------------------------------------------ models covering every layer
def build_recurrent():
    """Embedding (mask_zero), LSTM, GRU, SimpleRNN, BatchNormalization, Dropout, Dense."""
    return models.Sequential([
        layers.Input((7,), dtype="int32"),
        layers.Embedding(30, 6, mask_zero=True),
        layers.LSTM(5, return_sequences=True),
        layers.GRU(4, return_sequences=True, go_backwards=True),
        layers.SimpleRNN(4),
        layers.BatchNormalization(),
        layers.Dropout(0.25),                  # no seed: its salt must be saved too
        layers.Dense(3, activation="softmax")])


def data_recurrent(n=12):
    x = RNG.integers(1, 30, (n, 7)).astype(np.int32)
    x[:3, :2] = 0                              # masked steps
    return x, RNG.integers(0, 3, n).astype(np.int32)


def build_functional():
    """Two inputs, two outputs: Dense, Activation, Reshape, Flatten and every merge layer."""
    a = layers.Input((4,), name="a")
    b = layers.Input((6,), name="b")
    ha = layers.Dense(6, activation="relu", name="ha")(a)
    hb = layers.Activation("tanh", name="act")(b)
    s = layers.Add(name="add")([ha, hb])
    d = layers.Subtract(name="sub")([ha, hb])
    m = layers.Multiply(name="mul")([s, d])
    av = layers.Average(name="avg")([s, d, m])
    mx = layers.Maximum(name="max")([s, av])
    mn = layers.Minimum(name="min")([d, av])
    c = layers.Concatenate(name="cat")([mx, mn])
    r = layers.Flatten(name="flat")(layers.Reshape((3, 4), name="resh")(c))
    shared = layers.Dense(5, activation="sigmoid", name="shared")
    o1 = layers.Dense(2, name="o1")(shared(r))
    o2 = layers.Dense(1, activation="sigmoid", name="o2")(shared(layers.Dense(12)(c)))
    return models.Model([a, b], [o1, o2], name="two_heads")


def data_functional(n=10):
    return ([RNG.normal(size=(n, 4)).astype(np.float32), RNG.normal(size=(n, 6)).astype(np.float32)],
            [RNG.normal(size=(n, 2)).astype(np.float32), RNG.integers(0, 2, (n, 1)).astype(np.float32)])


def build_dense():
    return models.Sequential([
        layers.Dense(8, activation="relu", input_shape=(5,), kernel_regularizer="l2",
                     kernel_constraint=kcompile.constraints.MaxNorm(2.0)),
        layers.Dense(3, activation="softmax", bias_initializer="ones")])


def data_dense(n=12):
    return RNG.normal(size=(n, 5)).astype(np.float32), \
        np.eye(3, dtype=np.float32)[RNG.integers(0, 3, n)]


CASES = {
    "recurrent": (build_recurrent, data_recurrent,
                  lambda: dict(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])),
    "functional": (build_functional, data_functional,
                   lambda: dict(optimizer=optimizers.RMSprop(0.01, momentum=0.5, centered=True),
                        loss=["mse", losses.BinaryCrossentropy(label_smoothing=0.1)],
                        loss_weights=[1.0, 0.5], metrics=[["mae"], ["accuracy"]])),
    "dense": (build_dense, data_dense,
              lambda: dict(optimizer=optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                   loss="categorical_crossentropy", metrics=["accuracy"])),
}


@pytest.mark.parametrize("ext", [".h5", ".keras"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_predicts_and_trains_identically(tmp_path, case, ext):
    build, data, compile_kw = CASES[case]
    model = build()
    model.compile(backend="reference", **compile_kw())
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    path = tmp_path / f"m{ext}"
    model.save(path)
    loaded = models.load_model(path)
    assert type(loaded) is type(model)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    same_weights(model, loaded)
    same_predictions(model, loaded, x)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded._loss_weights == model._loss_weights
    a, b = optimizer_state(model), optimizer_state(loaded)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # training goes on as if it had never stopped
    ha = model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0).history
    hb = loaded.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0).history
    assert ha == hb
    same_weights(model, loaded)


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_round_trip_native_backend(tmp_path, ext):
    model = build_dense()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = data_dense(16)
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    model.save(tmp_path / f"m{ext}")
    loaded = models.load_model(tmp_path / f"m{ext}")
    assert loaded._backend == "native"
    same_predictions(model, loaded, x)
    for _ in range(2):
        assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    same_weights(model, loaded)


@pytest.mark.parametrize("opt", [
    lambda: optimizers.SGD(0.1), lambda: optimizers.RMSprop(momentum=0.3),
    lambda: optimizers.Adam(amsgrad=True), lambda: optimizers.AdamW(weight_decay=0.01),
    lambda: optimizers.Adagrad(0.05), lambda: optimizers.Adamax(clipnorm=1.0)])
def test_every_optimizer_state_survives(tmp_path, opt):
    model = build_dense()
    model.compile(optimizer=opt(), loss="categorical_crossentropy", backend="reference")
    x, y = data_dense()
    model.train_on_batch(x, y)
    model.optimizer.learning_rate = 0.0123            # a callback may have changed it
    model.save(tmp_path / "m.h5")
    loaded = models.load_model(tmp_path / "m.h5")
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.0123)
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    same_weights(model, loaded)


def test_uncompiled_and_include_optimizer_false(tmp_path):
    model = build_dense()
    model.save(tmp_path / "u.keras")
    loaded = models.load_model(tmp_path / "u.keras")
    assert not loaded.compiled
    same_weights(model, loaded)
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "n.h5", include_optimizer=False)
    assert not models.load_model(tmp_path / "n.h5").compiled
    model.save(tmp_path / "c.h5")
    assert models.load_model(tmp_path / "c.h5").compiled
    assert not models.load_model(tmp_path / "c.h5", compile=False).compiled


def test_entry_points():
    assert kcompile.models.load_model is not None and saving.load_model is not None
    assert kcompile.saving.save_model is not None
    for name in ("save", "save_weights", "load_weights", "get_config", "to_json"):
        assert callable(getattr(models.Sequential, name))
    assert callable(models.Model.from_config) and callable(models.Sequential.from_config)


# ----------------------------------------------------------------------------- weights only
@pytest.mark.parametrize("fname", ["w.weights.h5", "w.h5"])
def test_save_and_load_weights(tmp_path, fname):
    model = build_recurrent()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="reference")
    x, y = data_recurrent()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save_weights(tmp_path / fname)
    other = build_recurrent()
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="reference")
    other.load_weights(tmp_path / fname)
    same_weights(model, other)
    same_predictions(model, other, x)
    if fname.endswith(".weights.h5"):          # Keras 3 weights files carry the optimizer too
        assert float(other.optimizer.iterations) == float(model.optimizer.iterations)


def test_load_weights_from_full_model_file_and_by_name(tmp_path):
    model = build_dense()
    model.save(tmp_path / "full.h5")
    other = build_dense()
    other.load_weights(tmp_path / "full.h5")
    same_weights(model, other)
    # by_name: only layers whose names match are loaded
    renamed = models.Sequential([layers.Dense(8, input_shape=(5,), name=model.layers[0].name),
                                 layers.Dense(3, name="something_else")])
    before = renamed.layers[1].get_weights()
    renamed.load_weights(tmp_path / "full.h5", by_name=True)
    np.testing.assert_array_equal(renamed.layers[0].get_weights()[0], model.layers[0].get_weights()[0])
    np.testing.assert_array_equal(renamed.layers[1].get_weights()[0], before[0])


def test_load_weights_mismatch(tmp_path):
    model = build_dense()
    model.save_weights(tmp_path / "w.weights.h5")
    wrong = models.Sequential([layers.Dense(7, input_shape=(5,)), layers.Dense(3)])
    with pytest.raises(ValueError, match="shape"):
        wrong.load_weights(tmp_path / "w.weights.h5")
    with pytest.warns(UserWarning, match="skipped"):
        wrong.load_weights(tmp_path / "w.weights.h5", skip_mismatch=True)
    fewer = models.Sequential([layers.Dense(8, input_shape=(5,))])
    model.save_weights(tmp_path / "w.h5")
    with pytest.raises(ValueError, match="Layer count mismatch"):
        fewer.load_weights(tmp_path / "w.h5")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "w.bin")


# ---------------------------------------------------------------------------------- configs
def layer_instances():
    rnn_kw = dict(kernel_regularizer=kcompile.regularizers.L1L2(0.01, 0.02),
                  recurrent_constraint=kcompile.constraints.UnitNorm(), return_sequences=True)
    return [
        layers.Dense(4, activation="tanh", use_bias=False, kernel_initializer="he_normal",
                     bias_regularizer=kcompile.regularizers.L1(0.1), name="d",
                     activity_regularizer=kcompile.regularizers.L2(0.01)),
        layers.Activation("softmax"), layers.Dropout(0.3, noise_shape=(None, 1), seed=4),
        layers.Embedding(10, 3, mask_zero=True, embeddings_initializer="uniform"),
        layers.LSTM(3, unit_forget_bias=False, go_backwards=True, **rnn_kw),
        layers.GRU(3, reset_after=False, recurrent_activation="hard_sigmoid"),
        layers.SimpleRNN(2, activation="relu", return_state=True),
        layers.BatchNormalization(momentum=0.9, epsilon=1e-2, center=False,
                                  gamma_regularizer="l2"),
        layers.Flatten(), layers.Reshape((2, -1)), layers.Concatenate(axis=1), layers.Add(),
        layers.Subtract(), layers.Multiply(), layers.Average(), layers.Maximum(),
        layers.Minimum(), layers.InputLayer(shape=(3, 2), dtype="int32")]


@pytest.mark.parametrize("layer", layer_instances(), ids=lambda l: type(l).__name__)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    json.dumps(config)                                   # serializable as it is
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    assert clone.name == layer.name


def test_model_config_round_trip():
    for build in (build_dense, build_functional, build_recurrent):
        model = build()
        config = model.get_config()
        clone = type(model).from_config(json.loads(json.dumps(config)))
        assert clone.get_config() == config
        again = models.model_from_json(model.to_json())
        assert [l.name for l in again.layers] == [l.name for l in model.layers]
        assert [w.shape for w in again.weights] == [w.shape for w in model.weights]


def test_sequential_config_is_keras_layout():
    config = build_dense().get_config()
    first = config["layers"][0]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [None, 5]
    assert config["build_input_shape"] == [None, 5]
    dense = config["layers"][1]
    assert dense["module"] == "keras.layers" and dense["class_name"] == "Dense"
    assert "batch_input_shape" not in dense["config"]


# --------------------------------------------------------------------------- custom objects
class Scale(layers.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight((input_shape[-1],), "ones", name="w")

    def call(self, x):
        return x * self.w * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def scaled_mse(y_true, y_pred):
    return F.mean(F.square(y_true - y_pred), axis=-1) * 2.0


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_custom_layer_and_loss(tmp_path, ext):
    model = models.Sequential([layers.Dense(4, input_shape=(3,)), Scale(0.5, name="scale"),
                               layers.Dense(1)])
    model.compile(optimizer="adam", loss=scaled_mse, backend="reference")
    x, y = RNG.normal(size=(8, 3)).astype(np.float32), RNG.normal(size=(8, 1)).astype(np.float32)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / f"c{ext}")
    with pytest.raises(ValueError, match="Scale"):
        models.load_model(tmp_path / f"c{ext}")
    with pytest.raises(ValueError, match="scaled_mse"):
        models.load_model(tmp_path / f"c{ext}", custom_objects={"Scale": Scale})
    loaded = models.load_model(tmp_path / f"c{ext}",
                               custom_objects={"Scale": Scale, "scaled_mse": scaled_mse})
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].factor == 0.5
    assert loaded._loss_spec is scaled_mse
    same_predictions(model, loaded, x)
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    # uncompiled loading needs only the layer
    assert not models.load_model(tmp_path / f"c{ext}", custom_objects={"Scale": Scale},
                                 compile=False).compiled


def test_registered_custom_layer(tmp_path):
    @saving.register_keras_serializable(package="test")
    class Doubler(layers.Layer):
        def call(self, x):
            return x * 2.0
    model = models.Sequential([layers.Dense(2, input_shape=(3,)), Doubler()])
    model.save(tmp_path / "r.keras")
    loaded = models.load_model(tmp_path / "r.keras")
    assert type(loaded.layers[1]) is Doubler
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    same_predictions(model, loaded, x)


# ------------------------------------------------------------ files in Keras' own layouts
def np_dense(x, k, b, act):
    y = x @ k + b
    return {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "linear": lambda v: v,
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
            "softmax": lambda v: np.exp(v - v.max(-1, keepdims=True))
            / np.exp(v - v.max(-1, keepdims=True)).sum(-1, keepdims=True)}[act](y)


def np_lstm(x, k, u, b):
    n = u.shape[0]
    h = np.zeros((x.shape[0], n))
    c = np.zeros_like(h)
    sig = lambda v: 1 / (1 + np.exp(-v))
    for t in range(x.shape[1]):
        z = x[:, t] @ k + h @ u + b
        i, f, g, o = sig(z[:, :n]), sig(z[:, n:2 * n]), np.tanh(z[:, 2 * n:3 * n]), sig(z[:, 3 * n:])
        c = f * c + i * g
        h = o * np.tanh(c)
    return h


POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
          "registered_name": None}


def k3_init(name, **config):
    return {"module": "keras.initializers", "class_name": name, "config": config,
            "registered_name": None}


def k3_dense(name, units, activation):
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "config": {"name": name, "trainable": True, "dtype": POLICY, "units": units,
                       "activation": activation, "use_bias": True,
                       "kernel_initializer": k3_init("GlorotUniform", seed=None, input_axes=None,
                                                     output_axes=None),
                       "bias_initializer": k3_init("Zeros"), "kernel_regularizer": None,
                       "bias_regularizer": None, "kernel_constraint": None,
                       "bias_constraint": None, "quantization_config": None, "lora_rank": None}}


def k3_input(name, shape, dtype="float32"):
    return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
            "config": {"batch_shape": [None, *shape], "dtype": dtype, "sparse": False,
                       "ragged": False, "name": name, "optional": False}}


def k3_node(*history):
    args = [{"class_name": "__keras_tensor__",
             "config": {"shape": [None, 0], "dtype": "float32", "keras_history": list(h)}}
            for h in history]
    return {"args": [args[0] if len(args) == 1 else args], "kwargs": {}}


def h5_names(names):
    return np.array([n.encode() for n in names]) if names else np.array([])


def write_legacy_h5(path, model_config, weights, layer_names, training_config=None,
                    optimizer_weights=None, keras_version="3.3.3"):
    """A model file laid out as keras/src/legacy/saving/legacy_h5_format.py writes it."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = keras_version
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(model_config).encode("utf8")
        if training_config is not None:
            f.attrs["training_config"] = json.dumps(training_config).encode("utf8")
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = h5_names(layer_names)
        g.attrs["backend"] = "tensorflow"
        g.attrs["keras_version"] = keras_version
        for name in sorted(layer_names):
            lg = g.create_group(name)
            pairs = weights.get(name, [])
            lg.attrs["weight_names"] = h5_names([n for n, _ in pairs])
            for n, v in pairs:
                lg.create_dataset(n, data=v)
        g.create_group("top_level_model_weights").attrs["weight_names"] = h5_names([])
        if optimizer_weights is not None:
            og = f.create_group("optimizer_weights")
            og.attrs["weight_names"] = h5_names([n for n, _ in optimizer_weights])
            for n, v in optimizer_weights:
                og.create_dataset(n, data=v)


def write_keras_zip(path, config, weights_by_path, optimizer_vars=None):
    """A .keras archive laid out as keras/src/saving/saving_lib.py writes it."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("vars")
        for group, values in weights_by_path.items():
            g = f.create_group(group).create_group("vars")
            for i, v in enumerate(values):
                g.create_dataset(str(i), data=v)
        if optimizer_vars is not None:
            g = f.create_group("optimizer").create_group("vars")
            for i, v in enumerate(optimizer_vars):
                g.create_dataset(str(i), data=v)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.3.3",
                                                 "date_saved": "2024-05-01@10:00:00"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", buf.getvalue())


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def test_keras3_legacy_h5_sequential_with_optimizer_state(tmp_path):
    k1, b1, k2, b2 = rand(4, 3), rand(3), rand(3, 2), rand(2)
    config = {"class_name": "Sequential", "config": {
        "name": "sequential", "trainable": True, "dtype": POLICY,
        "layers": [{"class_name": "InputLayer", "config": k3_input("input_layer", [4])["config"]},
                   {"class_name": "Dense", "config": k3_dense("d1", 3, "relu")["config"]},
                   {"class_name": "Activation", "config": {"name": "activation", "trainable": True,
                                                           "dtype": POLICY, "activation": "tanh"}},
                   {"class_name": "Dense", "config": k3_dense("dense", 2, "softmax")["config"]}],
        "build_input_shape": [None, 4]}}
    training = {"loss": "categorical_crossentropy", "loss_weights": None, "metrics": ["accuracy"],
                "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
                "jit_compile": True, "optimizer_config": {"class_name": "Adam", "config": {
                    "name": "adam", "learning_rate": 0.01, "weight_decay": None,
                    "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                    "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                    "loss_scale_factor": None, "gradient_accumulation_steps": None,
                    "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}}}
    slots = {f"{v}_{s}": rand(*shape) for v, shape in
             [("sequential_d1_kernel", (4, 3)), ("sequential_d1_bias", (3,)),
              ("sequential_dense_kernel", (3, 2)), ("sequential_dense_bias", (2,))]
             for s in ("momentum", "velocity")}
    opt = [("adam/iteration", np.array(7, np.int64)), ("adam/learning_rate", np.float32(0.01))]
    opt += [(f"adam/{k}", v) for k, v in slots.items()]
    write_legacy_h5(tmp_path / "k.h5", config,
                    {"d1": [("sequential/d1/kernel", k1), ("sequential/d1/bias", b1)],
                     "dense": [("sequential/dense/kernel", k2), ("sequential/dense/bias", b2)]},
                    ["d1", "activation", "dense"], training, opt)
    model = models.load_model(tmp_path / "k.h5")
    x = rand(6, 4)
    expected = np_dense(np.tanh(np_dense(x, k1, b1, "relu")), k2, b2, "softmax")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)
    assert isinstance(model.optimizer, optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert float(model.optimizer.iterations) == 7
    kernel = model.layers[0].kernel
    np.testing.assert_array_equal(model.optimizer.slot(kernel, "velocity").numpy(),
                                  slots["sequential_d1_kernel_velocity"])
    np.testing.assert_array_equal(model.optimizer.slot(model.layers[2].bias, "momentum").numpy(),
                                  slots["sequential_dense_bias_momentum"])
    model.fit(x, np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1]], epochs=1, verbose=0)


def keras2_dense(name, units, activation, **extra):
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": units,
        "activation": activation, "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
        "bias_constraint": None, **extra}}


def test_keras2_legacy_h5_sequential(tmp_path):
    k1, b1, k2, b2 = rand(4, 5), rand(5), rand(5, 1), rand(1)
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        keras2_dense("dense", 5, "relu", batch_input_shape=[None, 4]),
        keras2_dense("dense_1", 1, "sigmoid")]}}
    training = {"loss": "binary_crossentropy", "metrics": ["accuracy"], "weighted_metrics": None,
                "loss_weights": None, "optimizer_config": {"class_name": "Adam", "config": {
                    "name": "Adam", "learning_rate": 0.001, "decay": 0.0, "beta_1": 0.9,
                    "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}}}
    opt = [("Adam/iter:0", np.array(3, np.int64))] + [
        (f"Adam/{p}/{s}:0", np.zeros(v.shape, np.float32))
        for s in "mv" for p, v in [("dense/kernel", k1), ("dense/bias", b1),
                                   ("dense_1/kernel", k2), ("dense_1/bias", b2)]]
    write_legacy_h5(tmp_path / "k2.h5", config,
                    {"dense": [("dense/kernel:0", k1), ("dense/bias:0", b1)],
                     "dense_1": [("dense_1/kernel:0", k2), ("dense_1/bias:0", b2)]},
                    ["dense", "dense_1"], training, opt, keras_version="2.4.0")
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        model = models.load_model(tmp_path / "k2.h5")       # tf.keras' optimizer layout differs
    x = rand(7, 4)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               np_dense(np_dense(x, k1, b1, "relu"), k2, b2, "sigmoid"), atol=1e-5)
    assert model.compiled and isinstance(model.optimizer, optimizers.Adam)


def test_keras2_legacy_h5_functional_and_load_weights(tmp_path):
    ka, ba, kb, bb, ko, bo = rand(4, 3), rand(3), rand(4, 2), rand(2), rand(5, 2), rand(2)
    config = {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "input_1"},
         "name": "input_1", "inbound_nodes": []},
        {**keras2_dense("da", 3, "relu"), "name": "da", "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        {**keras2_dense("db", 2, "tanh"), "name": "db", "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        {"class_name": "Concatenate", "config": {"name": "concatenate", "trainable": True,
                                                 "dtype": "float32", "axis": -1},
         "name": "concatenate", "inbound_nodes": [[["da", 0, 0, {}], ["db", 0, 0, {}]]]},
        {**keras2_dense("out", 2, "softmax"), "name": "out",
         "inbound_nodes": [[["concatenate", 0, 0, {}]]]}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["out", 0, 0]]}}
    names = ["input_1", "da", "db", "concatenate", "out"]
    weights = {"da": [("da/kernel:0", ka), ("da/bias:0", ba)],
               "db": [("db/kernel:0", kb), ("db/bias:0", bb)],
               "out": [("out/kernel:0", ko), ("out/bias:0", bo)]}
    write_legacy_h5(tmp_path / "f.h5", config, weights, names, keras_version="2.9.0")
    model = models.load_model(tmp_path / "f.h5")
    assert not model.compiled
    x = rand(5, 4)
    h = np.concatenate([np_dense(x, ka, ba, "relu"), np_dense(x, kb, bb, "tanh")], axis=1)
    np.testing.assert_allclose(model.predict(x, verbose=0), np_dense(h, ko, bo, "softmax"),
                               atol=1e-5)
    # the same file's weights into a model built in kcompile (by layer order, as Keras)
    i = layers.Input((4,))
    c = layers.Concatenate()([layers.Dense(3, activation="relu")(i),
                              layers.Dense(2, activation="tanh")(i)])
    twin = models.Model(i, layers.Dense(2, activation="softmax")(c))
    twin.load_weights(tmp_path / "f.h5")
    np.testing.assert_allclose(twin.predict(x, verbose=0), np_dense(h, ko, bo, "softmax"),
                               atol=1e-5)


def test_keras3_archive_functional(tmp_path):
    ka, ba, kb, bb, ko, bo = rand(4, 3), rand(3), rand(2, 3), rand(3), rand(3, 1), rand(1)
    layers_cfg = [
        {**k3_input("a", [4]), "name": "a", "inbound_nodes": []},
        {**k3_input("b", [2]), "name": "b", "inbound_nodes": []},
        {**k3_dense("da", 3, "relu"), "name": "da", "inbound_nodes": [k3_node(("a", 0, 0))],
         "build_config": {"input_shape": [None, 4]}},
        {**k3_dense("db", 3, "linear"), "name": "db", "inbound_nodes": [k3_node(("b", 0, 0))]},
        {"module": "keras.layers", "class_name": "Add", "registered_name": None,
         "config": {"name": "add", "trainable": True, "dtype": POLICY}, "name": "add",
         "inbound_nodes": [k3_node(("da", 0, 0), ("db", 0, 0))]},
        {**k3_dense("out", 1, "sigmoid"), "name": "out", "inbound_nodes": [k3_node(("add", 0, 0))]}]
    config = {"module": "keras.src.models.functional", "class_name": "Functional",
              "registered_name": "Functional",
              "config": {"name": "functional", "trainable": True, "layers": layers_cfg,
                         "input_layers": [["a", 0, 0], ["b", 0, 0]],
                         "output_layers": [["out", 0, 0]]},
              "compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "SGD",
                                               "config": {"name": "SGD", "learning_rate": 0.1,
                                                          "momentum": 0.5, "nesterov": False},
                                               "registered_name": None},
                                 "loss": {"module": "keras.losses", "class_name": "MeanSquaredError",
                                          "config": {"name": "mean_squared_error",
                                                     "reduction": "sum_over_batch_size"},
                                          "registered_name": None},
                                 "loss_weights": None, "metrics": ["mae"],
                                 "weighted_metrics": None, "run_eagerly": False,
                                 "steps_per_execution": 1, "jit_compile": True}}
    mom = [rand(4, 3), rand(3), rand(2, 3), rand(3), rand(3, 1), rand(1)]
    # Keras' model.layers order: a, b, da, db, add, out -> snake-case class names
    write_keras_zip(tmp_path / "f.keras", config,
                    {"layers/input_layer": [], "layers/input_layer_1": [],
                     "layers/dense": [ka, ba], "layers/dense_1": [kb, bb], "layers/add": [],
                     "layers/dense_2": [ko, bo]},
                    [np.array(4, np.int64), np.float32(0.1), *mom])
    model = models.load_model(tmp_path / "f.keras")
    xa, xb = rand(5, 4), rand(5, 2)
    expected = np_dense(np_dense(xa, ka, ba, "relu") + np_dense(xb, kb, bb, "linear"), ko, bo,
                        "sigmoid")
    np.testing.assert_allclose(model.predict([xa, xb], verbose=0), expected, atol=1e-5)
    assert isinstance(model.optimizer, optimizers.SGD) and model.optimizer.momentum == 0.5
    assert isinstance(model._loss_spec, losses.MeanSquaredError)
    assert float(model.optimizer.iterations) == 4
    np.testing.assert_array_equal(
        model.optimizer.slot(model.get_layer("db").kernel, "momentum").numpy(), mom[2])


def test_keras3_archive_lstm_embedding(tmp_path):
    emb, k, u, b, kd, bd = rand(10, 3), rand(3, 16), rand(4, 16), rand(16), rand(4, 2), rand(2)
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "sequential", "trainable": True, "dtype": POLICY, "layers": [
                  k3_input("input_layer", [5], "int32"),
                  {"module": "keras.layers", "class_name": "Embedding", "registered_name": None,
                   "config": {"name": "embedding", "trainable": True, "dtype": POLICY,
                              "input_dim": 10, "output_dim": 3,
                              "embeddings_initializer": k3_init("RandomUniform", minval=-0.05,
                                                                maxval=0.05, seed=None),
                              "embeddings_regularizer": None, "activity_regularizer": None,
                              "embeddings_constraint": None, "mask_zero": False,
                              "lora_rank": None}},
                  {"module": "keras.layers", "class_name": "LSTM", "registered_name": None,
                   "config": {"name": "lstm", "trainable": True, "dtype": POLICY,
                              "return_sequences": False, "return_state": False,
                              "go_backwards": False, "stateful": False, "unroll": False,
                              "zero_output_for_mask": False, "units": 4, "activation": "tanh",
                              "recurrent_activation": "sigmoid", "use_bias": True,
                              "kernel_initializer": k3_init("GlorotUniform", seed=None),
                              "recurrent_initializer": k3_init("Orthogonal", seed=None, gain=1.0),
                              "bias_initializer": k3_init("Zeros"), "unit_forget_bias": True,
                              "kernel_regularizer": None, "recurrent_regularizer": None,
                              "bias_regularizer": None, "activity_regularizer": None,
                              "kernel_constraint": None, "recurrent_constraint": None,
                              "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0,
                              "seed": None}},
                  k3_dense("dense", 2, "softmax")], "build_input_shape": [None, 5]}}
    write_keras_zip(tmp_path / "l.keras", config,
                    {"layers/embedding": [emb], "layers/lstm": [], "layers/lstm/cell": [k, u, b],
                     "layers/dense": [kd, bd]})
    model = models.load_model(tmp_path / "l.keras")
    x = RNG.integers(0, 10, (4, 5)).astype(np.int32)
    expected = np_dense(np_lstm(emb[x], k, u, b), kd, bd, "softmax")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)


def test_unsupported_keras_layer_is_named(tmp_path):
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "s", "layers": [
                  k3_input("input_layer", [8, 8, 8, 1]),
                  {"module": "keras.layers", "class_name": "Conv3D", "registered_name": None,
                   "config": {"name": "conv3d", "filters": 4, "kernel_size": [3, 3, 3]}}]}}
    write_keras_zip(tmp_path / "c.keras", config,
                    {"layers/conv3d": [rand(3, 3, 3, 1, 4), rand(4)]})
    with pytest.raises(ValueError, match="Conv3D"):
        models.load_model(tmp_path / "c.keras")
    write_legacy_h5(tmp_path / "c.h5", {"class_name": config["class_name"],
                                        "config": config["config"]}, {}, ["conv3d"])
    with pytest.raises(ValueError, match="Conv3D"):
        models.load_model(tmp_path / "c.h5")


def test_files_we_write_follow_keras_layout(tmp_path):
    model = build_dense()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        assert {"model_config", "training_config", "keras_version", "backend"} <= set(f.attrs)
        assert json.loads(f.attrs["model_config"])["class_name"] == "Sequential"
        g = f["model_weights"]
        names = [n.decode() for n in g.attrs["layer_names"]]
        assert names == [l.name for l in model.layers]
        wn = [n.decode() for n in g[names[0]].attrs["weight_names"]]
        np.testing.assert_array_equal(np.asarray(g[names[0]][wn[0]]), model.layers[0].kernel.numpy())
        onames = [n.decode() for n in f["optimizer_weights"].attrs["weight_names"]]
        assert onames[:2] == ["adam/iteration", "adam/learning_rate"] and len(onames) == 10
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert {"config.json", "metadata.json", "model.weights.h5"} <= set(zf.namelist())
        config = json.loads(zf.read("config.json"))
        assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
        with h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as f:
            np.testing.assert_array_equal(np.asarray(f["layers/dense_1/vars/0"]),
                                          model.layers[1].kernel.numpy())
            assert len(f["optimizer/vars"]) == 10


# ------------------------------------------------------------------------------ atomic saves
@pytest.mark.parametrize("fname", ["m.h5", "m.keras", "w.weights.h5", "w.h5"])
def test_interrupted_save_keeps_previous_file(tmp_path, fname):
    model = build_dense()
    model.compile(optimizer="adam", loss="categorical_crossentropy", backend="reference")
    path = tmp_path / fname
    save = model.save_weights if fname.startswith("w") else model.save
    save(path)
    good = path.read_bytes()
    x, y = data_dense()
    model.fit(x, y, epochs=1, verbose=0)             # the model changes, then a save fails

    def broken():
        raise RuntimeError("disk unplugged")
    model.layers[1].bias.numpy = broken
    with pytest.raises(RuntimeError, match="disk unplugged"):
        save(path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == [fname]   # no temporary left behind
    if fname.startswith("m"):
        models.load_model(path)
    else:
        build_dense().load_weights(path)


# ------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(OSError, match="nope.h5"):
        models.load_model(tmp_path / "nope.h5")
    with pytest.raises(OSError, match="nope.weights.h5"):
        build_dense().load_weights(tmp_path / "nope.weights.h5")


def test_truncated_hdf5(tmp_path):
    model = build_dense()
    model.save(tmp_path / "m.h5")
    data = (tmp_path / "m.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(data[:len(data) // 3])
    with pytest.raises(OSError, match=r"t\.h5.*truncated"):
        models.load_model(tmp_path / "t.h5")
    with pytest.raises(OSError, match=r"t\.h5"):
        build_dense().load_weights(tmp_path / "t.h5")


def test_truncated_archive(tmp_path):
    build_dense().save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "t.keras").write_bytes(data[:len(data) // 2])
    with pytest.raises((OSError, ValueError), match=r"t\.keras"):
        models.load_model(tmp_path / "t.keras")


def test_not_hdf5_empty_directory_and_weights_only(tmp_path):
    (tmp_path / "notes.h5").write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.h5.*not an HDF5"):
        models.load_model(tmp_path / "notes.h5")
    (tmp_path / "empty.keras").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.keras.*empty"):
        models.load_model(tmp_path / "empty.keras")
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(ValueError, match="directory"):
        models.load_model(tmp_path / "dir.keras")
    build_dense().save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match="No model config"):
        models.load_model(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.h5"):
        models.load_model(tmp_path / "other.h5")
    with pytest.raises(ValueError, match=r"other\.h5"):
        build_dense().load_weights(tmp_path / "other.h5")
    with zipfile.ZipFile(tmp_path / "nocfg.keras", "w") as zf:
        zf.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="config.json"):
        models.load_model(tmp_path / "nocfg.keras")


def test_bad_save_arguments(tmp_path):
    model = build_dense()
    with pytest.raises(ValueError, match="extension"):
        model.save(tmp_path / "m.bin")
    model.save(tmp_path / "m.h5")
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m.h5", overwrite=False)


def test_unknown_keras_settings_warn_but_load(tmp_path):
    k, b = rand(3, 2), rand(2)
    dense = k3_dense("d", 2, "linear")
    dense["config"]["some_future_option"] = 3
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": k3_input("i", [3])["config"]},
        {"class_name": "Dense", "config": dense["config"]}]}}
    write_legacy_h5(tmp_path / "u.h5", config, {"d": [("d/kernel", k), ("d/bias", b)]}, ["d"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = models.load_model(tmp_path / "u.h5")
    assert any("some_future_option" in str(w.message) for w in caught)
    x = rand(2, 3)
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ k + b, atol=1e-5)


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_nested_models(tmp_path, ext):
    inner = models.Sequential([layers.Dense(3, activation="tanh", input_shape=(4,))], name="inner")
    i = layers.Input((4,))
    outer = models.Model(i, layers.Dense(2)(inner(i)), name="outer")
    outer.compile(optimizer="adam", loss="mse", backend="reference")
    x, y = rand(6, 4), rand(6, 2)
    outer.fit(x, y, epochs=1, verbose=0)
    assert outer.predict(x, verbose=0).shape == (6, 2)
    outer.save(tmp_path / f"n{ext}")
    loaded = models.load_model(tmp_path / f"n{ext}")
    assert isinstance(loaded.get_layer("inner"), models.Sequential)
    same_predictions(outer, loaded, x)
    assert outer.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    same_weights(outer, loaded)
