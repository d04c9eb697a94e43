"""Eager calls: `model(x)`, `model(x, training=...)` and `layer(x)` on arrays return
arrays, compiled once per input signature; training=True runs the training-mode
forward (dropout on, moving statistics updated as Keras does) and takes no
optimizer step; a layer shared with a model sees the model's trained weights.
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import eager_calls, layers, models

RNG = np.random.default_rng(5)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


@pytest.fixture
def compile_count(monkeypatch):
    calls = []
    real = eager_calls.Pipeline

    def counting(*args, **kwargs):         # an eager call compiles through one pipeline
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(eager_calls, "Pipeline", counting)
    return calls


def test_model_call_equals_predict_and_is_cached(compile_count):
    model = models.Sequential([layers.Input((4,)), layers.Dense(5, activation="tanh"),
                               layers.Dense(2)])
    x = rand(3, 4)
    y = model(x)
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y.numpy(), y)       # guides call .numpy() on results
    np.testing.assert_allclose(y, model.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_array_equal(model(x, training=False), y)
    assert len(compile_count) == 1                 # same signature: compiled once
    model(rand(7, 4))
    assert len(compile_count) == 2                 # another batch shape
    model(rand(3, 4))
    assert len(compile_count) == 2


def test_functional_output_structure():
    inp = layers.Input((3,), name="features")
    h = layers.Dense(4)(inp)
    model = models.Model(inp, {"a": layers.Dense(2)(h), "b": layers.Dense(1)(h)})
    x = rand(2, 3)
    out = model(x)
    assert set(out) == {"a", "b"} and out["a"].shape == (2, 2) and out["b"].shape == (2, 1)
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(out["a"], pred["a"] if isinstance(pred, dict) else pred[0],
                               rtol=1e-6)


def test_training_true_runs_dropout_without_an_optimizer_step():
    model = models.Sequential([layers.Input((64,)), layers.Dropout(0.5, seed=2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 64), np.float32)
    np.testing.assert_array_equal(model(x), x)
    a, b = model(x, training=True), model(x, training=True)
    assert set(np.unique(a)) == {0.0, 2.0}
    assert not np.array_equal(a, b), "the seed counter must advance between calls"


def test_training_true_updates_batch_norm_statistics():
    bn = layers.BatchNormalization(momentum=0.5)
    model = models.Sequential([layers.Input((3,)), bn, layers.Dense(1)])
    dense_before = model.layers[1].get_weights()
    x = rand(16, 3) + 2.0
    out = model(x, training=True)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.5 + 0.5 * x.var(0), rtol=1e-4)
    normed = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    k, b = dense_before
    np.testing.assert_allclose(out, normed @ k + b, rtol=1e-4, atol=1e-5)
    for a, w in zip(model.layers[1].get_weights(), dense_before):
        np.testing.assert_array_equal(a, w)


def test_layer_calls_on_arrays_lists_and_dicts():
    a, b = rand(2, 3), rand(2, 3)
    np.testing.assert_allclose(layers.Add()([a, b]), a + b, rtol=1e-6)
    np.testing.assert_allclose(layers.Concatenate()([a, b]), np.concatenate([a, b], 1))
    np.testing.assert_allclose(layers.Activation("relu")(a), np.maximum(a, 0))
    dense = layers.Dense(2)
    y = dense(a)
    k, bias = dense.get_weights()
    np.testing.assert_allclose(y, a @ k + bias, rtol=1e-6)


def test_layer_shared_with_a_trained_model():
    dense = layers.Dense(2)
    x = rand(8, 3)
    before = dense(x)
    model = models.Sequential([layers.Input((3,)), dense])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, rand(8, 2), epochs=3, verbose=0)
    after = dense(x)                       # the layer's own State takes the trained values
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, model.predict(x, verbose=0), rtol=1e-6)
    dense.kernel.assign(np.zeros((3, 2), np.float32))
    np.testing.assert_allclose(model.predict(x, verbose=0), np.broadcast_to(
        dense.bias.numpy(), (8, 2)), rtol=1e-6)


def test_bad_eager_calls():
    model = models.Sequential([layers.Input((4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"expected shape \(None, 4\)"):
        model(rand(2, 5))
    with pytest.raises(TypeError, match="training="):
        model(rand(2, 4), mask=np.ones(2))
    with pytest.raises(TypeError, match="numbers"):
        layers.Dense(2)(np.array([["a", "b"]]))
