"""Subclassed models (`class M(Model)` with `__init__` and `call`, no Input): built from
the first data they see, the same numbers as the equivalent Sequential, summary, saving
as Keras 3 does (.keras via get_config + weights; .h5 refused), the functional API
inside a subclass, a VAE-style model with add_loss, and the errors Keras users meet.
"""
from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pytest

from kcompile import layers, models, optimizers, saving
from kcompile.ir import builder as F

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


class MLP(models.Model):
    def __init__(self, hidden=8, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.hidden_layer = layers.Dense(hidden, activation="relu")
        self.out = layers.Dense(classes)

    def call(self, inputs):
        return self.out(self.hidden_layer(inputs))


def _sequential_twin(model):
    seq = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                             layers.Dense(3)])
    seq.set_weights(model.get_weights())
    return seq


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_same_numbers_as_sequential(backend):
    x, y = rand(16, 6), rand(16, 3)
    model = MLP()
    model.build((None, 6))
    seq = _sequential_twin(model)
    for m in (model, seq):
        m.compile(optimizer=optimizers.SGD(0.05), loss="mse", backend=backend)
    np.testing.assert_allclose(model.predict(x, verbose=0), seq.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    hm = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    hs = seq.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(hm, hs, rtol=1e-5)
    for a, b in zip(model.get_weights(), seq.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first", ["fit", "predict", "evaluate", "train_on_batch", "call"])
def test_built_from_the_first_data(first):
    x, y = rand(8, 6), rand(8, 3)
    model = MLP()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="not yet been built"):
        model.summary()
    {"fit": lambda: model.fit(x, y, verbose=0),
     "predict": lambda: model.predict(x, verbose=0),
     "evaluate": lambda: model.evaluate(x, y, verbose=0),
     "train_on_batch": lambda: model.train_on_batch(x, y),
     "call": lambda: model(x)}[first]()
    assert [w.shape for w in model.weights] == [(6, 8), (8,), (8, 3), (3,)]
    seq = _sequential_twin(model)
    np.testing.assert_allclose(model(x), seq.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_summary_lists_the_layers(capsys):
    model = MLP()
    model.build((None, 6))
    model.summary()
    out = capsys.readouterr().out
    assert f'Model: "{model.name}"' in out
    assert f"{model.hidden_layer.name} (Dense)" in out and f"{model.out.name} (Dense)" in out
    assert "Total params: 83" in out          # 6*8+8 + 8*3+3


def test_other_feature_size_raises():
    model = MLP()
    model(rand(2, 6))
    with pytest.raises(ValueError, match=r"(?s)built for inputs of shape \(None, 6\).*"
                                         r"\(None, 5\)"):
        model(rand(2, 5))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"\(None, 7\)"):
        model.fit(rand(4, 7), rand(4, 3), verbose=0)


def test_dict_inputs_and_outputs():
    class TwoHeads(models.Model):
        def __init__(self):
            super().__init__()
            self.a = layers.Dense(2)
            self.b = layers.Dense(1)

        def call(self, inputs):
            h = layers.concatenate([inputs["left"], inputs["right"]])
            return {"first": self.a(h), "second": self.b(h)}
    model = TwoHeads()
    data = {"left": rand(5, 3), "right": rand(5, 2)}
    out = model(data)
    assert set(out) == {"first", "second"} and out["first"].shape == (5, 2)
    h = np.concatenate([data["left"], data["right"]], axis=1)
    k, b = model.a.get_weights()
    np.testing.assert_allclose(out["first"], h @ k + b, rtol=1e-5, atol=1e-6)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(data, {"first": rand(5, 2), "second": rand(5, 1)}, verbose=0)


# ------------------------------------------------------------------------ saving
@saving.register_keras_serializable(package="tests")
class Residual(models.Model):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [layers.Dense(units, activation="tanh"), layers.Dense(units)]
        self.drop = layers.Dropout(0.25, seed=3)
        self.proj = layers.Dense(units)

    def call(self, inputs, training=False):
        h = inputs
        for block in self.blocks:
            h = block(h)
        return self.drop(h, training=training) + self.proj(inputs)


def test_keras_save_and_load(tmp_path):
    x, y = rand(8, 3), rand(8, 4)
    model = Residual(4)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    path = tmp_path / "r.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        with h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as f:
            names = []
            f.visit(names.append)
    # Keras 3's layout for a subclassed model: the attributes' names
    for group in ("blocks/dense/vars/1", "blocks/dense_1/vars/0", "proj/vars/0", "drop/vars"):
        assert group in names, names
    loaded = models.load_model(path)
    assert type(loaded) is Residual and loaded.proj.units == 4
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(loaded.train_on_batch(x, y), model.train_on_batch(x, y),
                               rtol=1e-6)
    with pytest.raises(NotImplementedError, match="subclassed models"):
        model.save(tmp_path / "r.h5")
    model.save_weights(tmp_path / "r.weights.h5")
    fresh = Residual(4)
    fresh.build((None, 3))
    fresh.load_weights(tmp_path / "r.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_load_needs_the_custom_class(tmp_path):
    class Local(MLP):
        pass
    model = Local()
    model(rand(2, 6))
    model.save(tmp_path / "l.keras")
    with pytest.raises(ValueError, match="Local"):
        models.load_model(tmp_path / "l.keras")
    loaded = models.load_model(tmp_path / "l.keras", custom_objects={"Local": Local})
    x = rand(3, 6)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_config_needs_plain_arguments():
    class Holder(models.Model):
        def __init__(self, table):
            super().__init__()
            self.table = table
            self.d = layers.Dense(1)

        def call(self, x):
            return self.d(x)
    with pytest.raises(NotImplementedError, match="get_config"):
        Holder(np.zeros(2)).get_config()
    with pytest.raises(TypeError, match="Unable to revive model from config"):
        MLP.from_config({"hidden": 3, "colour": "red"})


class FunctionalInside(models.Model):
    """The functional API inside a subclass' constructor."""

    def __init__(self, units=3):
        inputs = layers.Input((5,))
        outputs = layers.Dense(units)(layers.Dense(4, activation="relu")(inputs))
        super().__init__(inputs, outputs)


def test_functional_model_built_in_a_subclass(tmp_path):
    model = FunctionalInside(2)
    x, y = rand(6, 5), rand(6, 2)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, verbose=0)
    assert model.get_config() == {"units": 2}
    model.save(tmp_path / "f.keras")
    loaded = models.load_model(tmp_path / "f.keras", custom_objects={"FunctionalInside":
                                                                     FunctionalInside})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_custom_train_step_is_refused():
    class Custom(MLP):
        def train_step(self, data):
            raise AssertionError("never called")
    model = Custom()
    model.compile(optimizer="sgd", loss="mse")
    x = rand(4, 6)
    assert model.predict(x, verbose=0).shape == (4, 3)
    with pytest.raises(NotImplementedError, match=r"overrides `train_step\(\)`"):
        model.fit(x, rand(4, 3), verbose=0)


# ------------------------------------------------------------- a VAE with add_loss
class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * eps; eps from the compiled uniform generator,
    standardized (the guide draws it from keras.random.normal)."""

    def build(self, input_shape):
        self.seed = self._add_state_variable("seed")

    def call(self, inputs):
        z_mean, z_log_var = inputs
        key = self.seed.__sym__(None)
        u = F.random_uniform(key, z_mean.shape, 17)
        self.seed.assign(key + 1)
        eps = (u - 0.5) * float(np.sqrt(12.0))
        return z_mean + F.exp(0.5 * z_log_var) * eps


class VAE(models.Model):
    def __init__(self, original_dim=8, latent_dim=2, **kwargs):
        super().__init__(**kwargs)
        self.dense_proj = layers.Dense(16, activation="relu")
        self.dense_mean = layers.Dense(latent_dim)
        self.dense_log_var = layers.Dense(latent_dim)
        self.sampling = Sampling()
        self.decoder_hidden = layers.Dense(16, activation="relu")
        self.decoder_out = layers.Dense(original_dim, activation="sigmoid")

    def call(self, inputs):
        h = self.dense_proj(inputs)
        z_mean, z_log_var = self.dense_mean(h), self.dense_log_var(h)
        z = self.sampling((z_mean, z_log_var))
        kl = -0.5 * F.mean(z_log_var - F.square(z_mean) - F.exp(z_log_var) + 1.0)
        self.add_loss(kl)
        return self.decoder_out(self.decoder_hidden(z))


def test_vae_with_add_loss_trains_and_matches_reference():
    x = RNG.uniform(size=(64, 8)).astype(np.float32)
    native, ref = VAE(), VAE()
    native.build((None, 8))
    ref.build((None, 8))
    ref.set_weights(native.get_weights())
    native.compile(optimizer=optimizers.Adam(1e-2), loss="mse")
    ref.compile(optimizer=optimizers.Adam(1e-2), loss="mse", backend="reference")
    for _ in range(3):
        np.testing.assert_allclose(native.train_on_batch(x, x), ref.train_on_batch(x, x),
                                   rtol=1e-4)
    h = native.fit(x, x, batch_size=16, epochs=8, verbose=0).history["loss"]
    assert h[-1] < h[0]
    # evaluate's loss = mse + the KL term the model added
    z_mean = native.dense_mean(native.dense_proj(x))
    z_log_var = native.dense_log_var(native.dense_proj(x))
    kl = -0.5 * np.mean(z_log_var - z_mean ** 2 - np.exp(z_log_var) + 1.0)
    assert native.evaluate(x, x, batch_size=64, verbose=0) > kl
