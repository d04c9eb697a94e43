"""`weights`, `get_weights()`, `trainable_weights` list what Keras 3 lists, in its order.

The expected lists are Keras 3.15's (jax backend) for the same models: random-number
state (Dropout's seed) is state, not a weight; a layer's own trainable weights come
first, then its own non-trainable ones, then its sublayers' in tracking order; a frozen
nested model's weights are all non-trainable.
"""
from __future__ import annotations

import numpy as np

from kcompile import layers, models


def names_shapes(ws):
    return [(w.name, tuple(w.shape)) for w in ws]


def test_dropout_seed_is_not_a_weight():
    model = models.Sequential([layers.Input((8,)), layers.Dense(16), layers.Dropout(0.5),
                               layers.Dense(3)])
    ws = model.get_weights()
    assert [w.shape for w in ws] == [(8, 16), (16,), (16, 3), (3,)]
    assert model.layers[1].get_weights() == [] and model.layers[1].weights == []
    # Keras' weight lists load as they are.
    new = [np.full(w.shape, i, np.float32) for i, w in enumerate(ws)]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    # The seed is still model state (saved by kcompile, advanced by training).
    assert any("seed_generator_state" in v.path for v in model.variables)
    assert model.count_params() == 8 * 16 + 16 + 16 * 3 + 3


def test_nested_model_with_embedding_lstm_batch_norm():
    inner = models.Sequential([layers.Input((6,)), layers.Dense(4),
                               layers.BatchNormalization()], name="inner_parity")
    i = layers.Input((5,), dtype="int32")
    h = layers.LSTM(3)(layers.Embedding(10, 6)(i))
    model = models.Model(i, inner(layers.Dense(6)(h)))
    assert names_shapes(model.weights) == [
        ("embeddings", (10, 6)), ("kernel", (6, 12)), ("recurrent_kernel", (3, 12)),
        ("bias", (12,)), ("kernel", (3, 6)), ("bias", (6,)), ("kernel", (6, 4)),
        ("bias", (4,)), ("gamma", (4,)), ("beta", (4,)), ("moving_mean", (4,)),
        ("moving_variance", (4,))]
    inner.trainable = False
    assert names_shapes(model.trainable_weights) == [
        ("embeddings", (10, 6)), ("kernel", (6, 12)), ("recurrent_kernel", (3, 12)),
        ("bias", (12,)), ("kernel", (3, 6)), ("bias", (6,))]
    assert [n for n, _ in names_shapes(model.non_trainable_weights)] == [
        "kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance"]


class OwnAndSublayers(layers.Layer):
    def __init__(self):
        super().__init__()
        self.a = self.add_weight(shape=(2,), trainable=False, name="a")
        self.b = self.add_weight(shape=(3,), name="b")
        self.d = layers.Dense(2)
        self.lst = [layers.Dense(3), layers.Dense(4)]
        self.c = self.add_weight(shape=(1,), name="c")

    def build(self, input_shape):
        self.e = self.add_weight(shape=(5,), name="e")

    def call(self, x):
        return self.lst[1](self.lst[0](self.d(x)))


def test_custom_layer_with_sublayers():
    layer = OwnAndSublayers()
    layer(np.ones((1, 2), np.float32))
    assert names_shapes(layer.weights) == [
        ("b", (3,)), ("c", (1,)), ("e", (5,)), ("a", (2,)), ("kernel", (2, 2)), ("bias", (2,)),
        ("kernel", (2, 3)), ("bias", (3,)), ("kernel", (3, 4)), ("bias", (4,))]
    assert [n for n, _ in names_shapes(layer.trainable_weights)] == [
        "b", "c", "e", "kernel", "bias", "kernel", "bias", "kernel", "bias"]
    assert [n for n, _ in names_shapes(layer.non_trainable_weights)] == ["a"]
    assert layer.count_params() == 3 + 1 + 5 + 2 + 6 + 9 + 16
