"""Custom layers as Keras 3 users write them (the guide "Making new layers and models via
subclassing", with synthetic data): weights made with add_weight, sublayers tracked
from attributes, add_loss, variables assigned in call() as state updates, masks,
several inputs, configs and saving with custom objects, and clear errors.

The guide writes layer math with `keras.ops`; here it is written with operators on
traced tensors and `kcompile.ir.builder` functions (F.relu, F.sum, ...).
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, models, optimizers, regularizers, saving
from kcompile.ir import builder as F

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


# ------------------------------------------------------------------ the guide's layers
class Linear(layers.Layer):
    """The guide's first layer: weights made in __init__."""

    def __init__(self, units=32, input_dim=32):
        super().__init__()
        self.w = self.add_weight(shape=(input_dim, units), initializer="random_normal",
                                 trainable=True)
        self.b = self.add_weight(shape=(units,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return inputs @ self.w + self.b


class LazyLinear(layers.Layer):
    """The guide's Linear with deferred weights (build) and a config."""

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="random_normal", trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal",
                                 trainable=True)

    def call(self, inputs):
        return inputs @ self.w + self.b

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


class ComputeSum(layers.Layer):
    def __init__(self, input_dim):
        super().__init__()
        self.total = self.add_weight(initializer="zeros", shape=(input_dim,), trainable=False)

    def call(self, inputs):
        self.total.assign_add(F.sum(inputs, axis=0))
        return self.total


class MLPBlock(layers.Layer):
    def __init__(self):
        super().__init__()
        self.linear_1 = LazyLinear(32)
        self.linear_2 = LazyLinear(32)
        self.linear_3 = LazyLinear(1)

    def call(self, inputs):
        x = F.relu(self.linear_1(inputs))
        x = F.relu(self.linear_2(x))
        return self.linear_3(x)


class ActivityRegularizationLayer(layers.Layer):
    def __init__(self, rate=1e-2):
        super().__init__()
        self.rate = rate

    def call(self, inputs):
        self.add_loss(self.rate * F.sum(inputs))
        return inputs


class OuterLayer(layers.Layer):
    def __init__(self):
        super().__init__()
        self.activity_reg = ActivityRegularizationLayer(1e-2)

    def call(self, inputs):
        return self.activity_reg(inputs)


class OuterLayerWithKernelRegularizer(layers.Layer):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(32, kernel_regularizer=regularizers.l2(1e-3))

    def call(self, inputs):
        return self.dense(inputs)


def test_linear_with_weights_made_in_init():
    x = np.ones((2, 2), np.float32)
    linear = Linear(4, 2)
    y = linear(x)
    assert isinstance(y, np.ndarray) and y.shape == (2, 4)
    np.testing.assert_allclose(y, x @ linear.w.numpy() + linear.b.numpy(), rtol=1e-6)
    assert linear.weights == [linear.w, linear.b]


def test_non_trainable_weight_assigned_in_call():
    x = np.ones((2, 2), np.float32)
    my_sum = ComputeSum(2)
    np.testing.assert_array_equal(my_sum(x), [2.0, 2.0])
    np.testing.assert_array_equal(my_sum(x), [4.0, 4.0])
    assert (len(my_sum.weights), len(my_sum.non_trainable_weights),
            len(my_sum.trainable_weights)) == (1, 1, 0)
    # In a model, predict() runs the update too (as Keras does): the sum of all rows.
    model = models.Sequential([layers.Input((3,)), ComputeSum(3)])
    data = rand(8, 3)
    model.predict(data, batch_size=4, verbose=0)
    np.testing.assert_allclose(model.layers[0].total.numpy(), data.sum(0), rtol=1e-5)


def test_sublayers_are_tracked_in_order():
    mlp = MLPBlock()
    x = np.ones((3, 64), np.float32)
    y = mlp(x)
    assert len(mlp.weights) == 6 and len(mlp.trainable_weights) == 6
    expected = [mlp.linear_1.w, mlp.linear_1.b, mlp.linear_2.w, mlp.linear_2.b,
                mlp.linear_3.w, mlp.linear_3.b]
    assert mlp.weights == expected
    w = [v.numpy() for v in expected]
    h = np.maximum(x @ w[0] + w[1], 0)
    h = np.maximum(h @ w[2] + w[3], 0)
    np.testing.assert_allclose(y, h @ w[4] + w[5], rtol=1e-5, atol=1e-5)


def test_lists_and_dicts_of_layers_are_tracked():
    class Stack(layers.Layer):
        def __init__(self):
            super().__init__()
            self.blocks = [layers.Dense(4), layers.Dense(3)]
            self.heads = {"a": layers.Dense(2)}

        def call(self, x):
            for b in self.blocks:
                x = b(x)
            return self.heads["a"](x)
    s = Stack()
    s(np.ones((1, 5), np.float32))
    assert [w.shape for w in s.weights] == [(5, 4), (4,), (4, 3), (3,), (3, 2), (2,)]
    s.blocks.append(layers.Dense(1))      # appended later: tracked too
    assert s._sublayers()[2] is s.blocks[2]


def test_losses_reset_at_each_call():
    layer = OuterLayer()
    assert len(layer.losses) == 0
    layer(np.zeros((1, 1), np.float32))
    assert layer.losses == [0.0]
    layer(np.full((2, 3), 1.0, np.float32))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0], 1e-2 * 6.0, rtol=1e-6)


def test_kernel_regularizer_penalty_in_losses():
    layer = OuterLayerWithKernelRegularizer()
    layer(np.zeros((1, 1), np.float32))
    (penalty,) = layer.losses
    np.testing.assert_allclose(penalty, 1e-3 * np.sum(layer.dense.kernel.numpy() ** 2),
                               rtol=1e-5)


def test_add_loss_joins_the_training_loss():
    inputs = layers.Input(shape=(3,))
    x = ActivityRegularizationLayer(0.5)(inputs)
    outputs = layers.Dense(1, kernel_initializer="ones")(x)
    model = models.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x, y = rand(4, 3), rand(4, 1)
    pred = x.sum(1, keepdims=True)
    expected = np.mean((pred - y) ** 2) + 0.5 * x.sum()
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=4, verbose=0), expected,
                               rtol=1e-5)
    # Without a compiled loss, the added losses are the loss (as Keras).
    model.compile(optimizer="sgd")
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=4, verbose=0), 0.5 * x.sum(),
                               rtol=1e-5)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)


def test_layer_config_round_trip():
    layer = LazyLinear(64)
    config = layer.get_config()
    assert config["units"] == 64 and config["name"] == layer.name
    new = LazyLinear.from_config(config)
    assert new.units == 64 and new.name == layer.name

    class AutoConfig(layers.Layer):            # no get_config: Keras' automatic config
        def __init__(self, units=3, activation="relu", **kwargs):
            super().__init__(**kwargs)
            self.units, self.activation = units, activation
    auto = AutoConfig(units=5)
    cfg = auto.get_config()
    assert cfg["units"] == 5 and cfg["activation"] == "relu"
    assert AutoConfig.from_config(cfg).units == 5

    class NotPlain(layers.Layer):
        def __init__(self, table):
            super().__init__()
            self.table = table
    with pytest.raises(NotImplementedError, match="get_config"):
        NotPlain(np.zeros(3)).get_config()


# ----------------------------------------------- custom layers give the built-in numbers
class MyDense(layers.Layer):
    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = activation

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs):
        y = inputs @ self.kernel + self.bias
        return F.relu(y) if self.activation == "relu" else y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation}


def _pair(backend="native"):
    builtin = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                                 layers.Dense(3)])
    custom = models.Sequential([layers.Input((6,)), MyDense(8, activation="relu"),
                                MyDense(3)])
    custom.set_weights(builtin.get_weights())
    for m in (builtin, custom):
        m.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=backend)
    return builtin, custom


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_custom_dense_matches_builtin(backend):
    builtin, custom = _pair(backend)
    x, y = rand(16, 6), rand(16, 3)
    np.testing.assert_allclose(custom.predict(x, verbose=0), builtin.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    hb = builtin.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    hc = custom.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(hc, hb, rtol=1e-5)
    for a, b in zip(custom.get_weights(), builtin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_custom_layer_compiled_equals_reference():
    _, native = _pair("native")
    _, ref = _pair("reference")
    ref.set_weights(native.get_weights())
    x, y = rand(8, 6), rand(8, 3)
    for _ in range(3):
        np.testing.assert_allclose(native.train_on_batch(x, y), ref.train_on_batch(x, y),
                                   rtol=1e-5)
    for a, b in zip(native.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class MovingMean(layers.Layer):
    """A BatchNormalization-style state update written by a user: assign in call()."""

    def __init__(self, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def build(self, input_shape):
        self.moving_mean = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                           trainable=False, name="moving_mean")
        self.steps = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="steps")

    def call(self, inputs, training=None):
        if training:
            mean = F.mean(inputs, axis=0)
            self.moving_mean.assign(self.moving_mean * self.momentum
                                    + mean * (1.0 - self.momentum))
            self.steps.assign_add(1.0)
            return inputs - mean
        return inputs - self.moving_mean


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_assign_in_call_is_a_state_update(backend):
    model = models.Sequential([layers.Input((3,)), MovingMean(0.9), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    x, y = rand(8, 3), rand(8, 1)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    layer = model.layers[0]
    expected = np.zeros(3)
    for batch in (x[:4], x[4:]):
        expected = expected * 0.9 + batch.mean(0) * 0.1
    np.testing.assert_allclose(layer.moving_mean.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert float(layer.steps.numpy()) == 2.0
    # inference uses the moving mean and leaves it alone
    k, b = model.layers[1].get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), (x - expected) @ k + b,
                               rtol=1e-4, atol=1e-5)
    assert float(layer.steps.numpy()) == 2.0


# ------------------------------------------------------------- masks and several inputs
class MaskedMean(layers.Layer):
    """Mean over the time steps a mask keeps (receives the mask via `mask=`)."""

    def call(self, inputs, mask=None):
        if mask is None:
            return F.mean(inputs, axis=1)
        m = F.reshape(F.cast(mask, "float32"), mask.shape + (1,))
        return F.sum(inputs * m, axis=1) / F.maximum(F.sum(m, axis=1), 1.0)


class ZeroMask(layers.Layer):
    """Makes a mask with compute_mask: steps whose first feature is 0 are padding."""
    supports_masking = True

    def call(self, inputs):
        return inputs * 2.0

    def compute_mask(self, inputs, mask=None):
        return F.not_equal(F.reshape(F.slice_axis(inputs, 2, 0, 1), inputs.shape[:2]),
                           F.lift(inputs.g, 0.0))


def test_mask_from_embedding_reaches_call():
    ids = np.array([[3, 1, 0, 0], [2, 2, 2, 0]], np.int32)
    model = models.Sequential([layers.Input((4,), dtype="int32"),
                               layers.Embedding(5, 3, mask_zero=True), MaskedMean()])
    table = model.layers[0].get_weights()[0]
    keep = (ids != 0)[..., None]
    expected = (table[ids] * keep).sum(1) / keep.sum(1)
    np.testing.assert_allclose(model.predict(ids, verbose=0), expected, rtol=1e-5)


def test_compute_mask_is_passed_on():
    x = rand(2, 5, 3)
    x[0, 3:, 0] = 0.0
    model = models.Sequential([layers.Input((5, 3)), ZeroMask(), MaskedMean()])
    keep = (x[..., :1] != 0)
    expected = (2 * x * keep).sum(1) / keep.sum(1)
    np.testing.assert_allclose(model(x), expected, rtol=1e-5)


class ScaleShift(layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[0][-1],), initializer="ones",
                                     name="scale")

    def call(self, inputs):
        a, b = inputs
        return a * self.scale + b


def test_list_of_inputs():
    a_in, b_in = layers.Input((4,)), layers.Input((4,))
    layer = ScaleShift()
    model = models.Model([a_in, b_in], layer([a_in, b_in]))
    layer.scale.assign(np.arange(4, dtype=np.float32))
    a, b = rand(3, 4), rand(3, 4)
    np.testing.assert_allclose(model.predict([a, b], verbose=0), a * np.arange(4) + b,
                               rtol=1e-6)
    np.testing.assert_allclose(layer([a, b]), a * np.arange(4) + b, rtol=1e-6)


def test_training_flag_reaches_sublayers():
    class Noisy(layers.Layer):
        def __init__(self):
            super().__init__()
            self.drop = layers.Dropout(0.5, seed=1)

        def call(self, inputs):               # no training argument: inherited, as Keras
            return self.drop(inputs)
    layer = Noisy()
    x = np.ones((4, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    out = layer(x, training=True)
    assert set(np.unique(out)) == {0.0, 2.0}


# ------------------------------------------------------------------------ saving
@saving.register_keras_serializable(package="tests")
class Block(layers.Layer):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = layers.Dense(units, activation="tanh")
        self.extra = [LazyLinear(units)]

    def call(self, inputs):
        return self.extra[0](self.inner(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_save_and_load_with_sublayers(tmp_path, ext):
    model = models.Sequential([layers.Input((3,)), Block(4), MyDense(2)])
    model.compile(optimizer="adam", loss="mse")
    x, y = rand(8, 3), rand(8, 2)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / f"m{ext}"
    model.save(path)
    with pytest.raises(ValueError, match="MyDense"):
        models.load_model(path, custom_objects={"LazyLinear": LazyLinear})
    loaded = models.load_model(path, custom_objects={"LazyLinear": LazyLinear,
                                                     "MyDense": MyDense})
    assert isinstance(loaded.layers[0], Block) and loaded.layers[0].units == 4
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(loaded.train_on_batch(x, y), model.train_on_batch(x, y),
                               rtol=1e-6)
    again = models.model_from_json(model.to_json(), custom_objects={"LazyLinear": LazyLinear,
                                                                    "MyDense": MyDense})
    assert [w.shape for w in again.weights] == [w.shape for w in model.weights]


# ------------------------------------------------------------------------ bad input
def test_shape_error_in_call_names_layer_and_shapes():
    layer = LazyLinear(3)
    layer(np.ones((2, 4), np.float32))           # built for 4 features
    with pytest.raises(ValueError) as e:
        layer(np.ones((2, 5), np.float32))
    msg = str(e.value)
    assert layer.name in msg and "LazyLinear" in msg and "(2, 5)" in msg and "(4, 3)" in msg


def test_shape_error_in_functional_model_names_layer():
    class Bad(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(7, 2))

        def call(self, x):
            return x @ self.w
    with pytest.raises(ValueError, match=r"(?s)'bad.*\(type Bad\).*matmul.*\(1, 3\).*\(7, 2\)"):
        Bad(name="bad")(layers.Input((3,)))


def test_build_error_names_layer_and_input_shape():
    class NeedsRank3(layers.Layer):
        def build(self, input_shape):
            if len(input_shape) != 3:
                raise ValueError(f"expected a rank-3 input, received {input_shape}")
    with pytest.raises(ValueError, match=r"(?s)building layer 'r3' \(type NeedsRank3\) for "
                                         r"input_shape=\(None, 4\).*rank-3"):
        NeedsRank3(name="r3")(np.ones((2, 4), np.float32))


def test_add_weight_and_add_loss_misuse():
    with pytest.raises(TypeError, match="name='kernel'"):
        layers.Layer().add_weight("kernel", (2, 2))
    with pytest.raises(ValueError, match="add_loss"):
        layers.Layer().add_loss(1.0)
