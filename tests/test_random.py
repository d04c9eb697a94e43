"""kcompile.random: Keras' signatures, distributions, seeding, and SeedGenerator state.

* eager draws follow their distributions (moments within a few standard errors,
  ranges, truncation at two standard deviations);
* an int seed repeats, a SeedGenerator advances; set_random_seed makes unseeded
  draws reproducible;
* traced: the draw compiles (native equals the reference interpreter), the step
  advances the generator's state, and the state is not a weight;
* seed=None while tracing and bad seeds raise clear errors.
"""
from __future__ import annotations

import numpy as np
import pytest

import kcompile
from kcompile import layers, models, ops, random
from kcompile.ir.graph import TensorType
from kcompile.runtime.executable import NativeExecutable, ReferenceExecutable
from kcompile.runtime.state import State
from kcompile.tracing import Trace, tracing

N = 20000


def test_normal_moments():
    x = random.normal((N,), mean=1.5, stddev=2.0, seed=1)
    assert x.dtype == np.float32 and x.shape == (N,)
    assert abs(x.mean() - 1.5) < 4 * 2.0 / np.sqrt(N)
    assert abs(x.std() - 2.0) < 0.05
    # a Gaussian's tails: about 4.55% beyond two standard deviations
    assert abs(np.mean(np.abs(x - 1.5) > 4.0) - 0.0455) < 0.006


def test_uniform_range_and_mean():
    x = random.uniform((N,), minval=-1.0, maxval=3.0, seed=2)
    assert x.min() >= -1.0 and x.max() < 3.0
    assert abs(x.mean() - 1.0) < 4 * (4 / np.sqrt(12)) / np.sqrt(N)
    with pytest.raises(ValueError, match="floating point"):
        random.uniform((2,), dtype="int32")


def test_truncated_normal_within_two_stddev():
    x = random.truncated_normal((N,), mean=0.5, stddev=0.1, seed=3)
    assert np.all(np.abs(x - 0.5) <= 0.2 + 1e-6)
    # the standard deviation of N(0, 1) truncated to [-2, 2] is 0.8796
    assert abs(x.std() / 0.1 - 0.8796) < 0.02


def test_randint_covers_its_range():
    x = random.randint((N,), 3, 8, seed=4)
    assert x.dtype == np.int32
    assert set(np.unique(x)) == {3, 4, 5, 6, 7}
    counts = np.bincount(x - 3) / N
    assert np.all(np.abs(counts - 0.2) < 0.02)


def test_dropout_and_shuffle():
    x = np.ones((200, 50), np.float32)
    y = random.dropout(x, 0.3, seed=5)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    z = random.dropout(x, 0.5, noise_shape=(None, 1), seed=6)     # whole rows
    assert np.all((z == 0).all(axis=1) | (z != 0).all(axis=1))
    s = random.shuffle(np.arange(10), seed=7)
    assert sorted(s.tolist()) == list(range(10)) and s.tolist() != list(range(10))


def test_seeds_repeat_and_generators_advance():
    np.testing.assert_array_equal(random.normal((5,), seed=11), random.normal((5,), seed=11))
    assert not np.array_equal(random.normal((5,), seed=11), random.normal((5,), seed=12))
    g1, g2 = random.SeedGenerator(9), random.SeedGenerator(9)
    a1, b1 = random.uniform((5,), seed=g1), random.uniform((5,), seed=g1)
    a2 = random.uniform((5,), seed=g2)
    assert not np.array_equal(a1, b1)
    np.testing.assert_array_equal(a1, a2)
    assert int(g1.state.numpy()) == 2
    kcompile.utils.set_random_seed(3)
    u = random.normal((4,))
    kcompile.utils.set_random_seed(3)
    np.testing.assert_array_equal(random.normal((4,)), u)


def test_bad_seeds_raise():
    with pytest.raises(ValueError, match="seed"):
        random.normal((2,), seed="abc")
    with pytest.raises(ValueError, match="integer"):
        random.SeedGenerator(1.5)
    trace = Trace()
    with tracing(trace), pytest.raises(ValueError, match="SeedGenerator"):
        random.normal((2,))


def test_traced_draws_compile_and_advance_the_state():
    gen = random.SeedGenerator(21)
    trace = Trace()
    with tracing(trace):
        x = trace.input("x", (64, 8))
        y = random.dropout(x, 0.25, seed=gen) + random.normal((64, 8), seed=gen) \
            + random.truncated_normal((64, 8), seed=gen)
        trace.graph.outputs["y"] = y.id
        for var, value in trace.updates.items():
            trace.graph.updates[trace.variable(var).id] = value.id
    g = trace.graph
    state = State([(gen.state.path, TensorType((), "int32"))])
    feeds = {"x": np.ones((64, 8), np.float32)}
    native = NativeExecutable({"step": g}, state).run("step", feeds)["y"]
    assert int(state[gen.state.path]) == 1
    state.assign(gen.state.path, np.int32(0))
    ref = ReferenceExecutable({"step": g}, state).run("step", feeds)["y"]
    np.testing.assert_allclose(native, ref, rtol=1e-5, atol=1e-5)
    again = NativeExecutable({"step": g}, state).run("step", feeds)["y"]   # state is now 1
    assert not np.allclose(again, native)


class _GaussianNoise(layers.Layer):
    def __init__(self, stddev, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev
        self.seed_generator = random.SeedGenerator(1337)

    def call(self, inputs, training=None):
        if training:
            return inputs + random.normal(ops.shape(inputs), stddev=self.stddev,
                                          seed=self.seed_generator)
        return inputs


def test_seed_generator_in_a_layer_is_state_not_a_weight():
    model = models.Sequential([layers.Input((4,)), _GaussianNoise(0.5), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    assert len(model.weights) == 2 and len(model.get_weights()) == 2
    x, y = np.ones((32, 4), np.float32), np.zeros((32, 2), np.float32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert int(model.layers[0].seed_generator.state.numpy()) == 4       # one draw per step
    # inference is deterministic (no noise)
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_unseeded_random_in_a_model_draws_anew_each_step():
    """keras.random.normal(shape) with no seed in layer code (the VAE guide's Sampling
    layer) draws from the model's own generator: state advanced by every step, not a
    weight, standard normal numbers."""
    import kcompile
    from kcompile import layers

    class Noise(layers.Layer):
        def call(self, inputs):
            return inputs + kcompile.random.normal(shape=kcompile.ops.shape(inputs))

    inputs = kcompile.Input((64,))
    model = kcompile.Model(inputs, Noise()(inputs))
    x = np.zeros((64, 64), np.float32)
    a, b = model.predict(x, verbose=0), model.predict(x, verbose=0)
    assert not np.allclose(a, b)
    for draw in (a, b):
        assert abs(draw.mean()) < 0.1 and abs(draw.std() - 1.0) < 0.1
    assert model.get_weights() == []


def test_unseeded_dropout_keeps_the_graph_and_the_cache_key_from_run_to_run():
    """Without a seed, Dropout's counter starts at random (different masks each run), and
    its graph, which keys the disk cache, is the same for the same model."""
    import kcompile
    from kcompile import layers

    def build():
        kcompile.backend.clear_session()
        m = kcompile.Sequential([layers.Input((8,)), layers.Dense(4), layers.Dropout(0.5),
                                 layers.Dense(2)])
        m.compile("sgd", "mse")
        return m
    a, b = build(), build()
    key = lambda m: m._pipeline(4, [((2,), "float32")])[1].cache_key()  # noqa: E731
    assert key(a) == key(b)
    starts = {int(m.layers[1].seed_state.numpy()) for m in (a, b)}
    assert len(starts) == 2
