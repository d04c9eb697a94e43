"""Data input as Keras takes it: arrays, Python lists, dicts keyed by input (and output)
name, lists for several inputs; generators, iterators, iterables and PyDataset-style
sequences of (x, y) / (x, y, sample_weight) batches with steps_per_epoch / steps; and
kcompile.data.Dataset (tf.data's API), including the time-series pipeline of the seed
document, which must run with only its import changed.

Streamed batches may have any size: the executable compiled for the first batch takes
shorter ones padded and masked, so a ragged last batch trains exactly like the last
batch of an array and compiles nothing new.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from kcompile import Input, Model, layers, models, optimizers
from kcompile.data import Dataset

RNG = np.random.default_rng(11)
N, D = 50, 4
X = RNG.normal(size=(N, D)).astype(np.float32)
W_TRUE = RNG.normal(size=(D, 2)).astype(np.float32)
Y = (X @ W_TRUE).astype(np.float32)
SW = RNG.uniform(0.5, 2.0, N).astype(np.float32)


def regressor(lr=0.05):
    m = models.Sequential([layers.Input((D,)), layers.Dense(2)])
    m.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="mse")
    return m


@pytest.fixture(scope="module")
def base():
    """A compiled model and its initial weights: tests clone from it."""
    m = regressor()
    m.fit(X, Y, batch_size=16, epochs=1, verbose=0)      # compiles batch size 16
    return m, m.get_weights()


def fresh(base):
    m, w0 = base
    m.set_weights(w0)
    m.optimizer.iterations.assign(0)
    return m


def batches_of(sizes, x=X, y=Y, sw=None):
    start = 0
    for s in sizes:
        sl = slice(start, start + s)
        yield (x[sl], y[sl]) if sw is None else (x[sl], y[sl], sw[sl])
        start += s


# ------------------------------------------------------------------ arrays, lists, dicts
def test_python_lists_work_like_arrays(base):
    m = fresh(base)
    want = m.evaluate(X, Y, verbose=0)
    assert m.evaluate(X.tolist(), Y.tolist(), verbose=0) == pytest.approx(want, rel=1e-6)
    np.testing.assert_array_equal(m.predict(X.tolist(), verbose=0), m.predict(X, verbose=0))
    m.fit(X.tolist(), Y.tolist(), batch_size=16, epochs=1, verbose=0)
    assert m.predict([X], verbose=0).shape == (N, 2)       # [x]: a list holding the one input


@pytest.fixture(scope="module")
def two_inputs():
    a, b = Input((3,), name="a"), Input((1,), name="b")
    out = layers.Dense(2, name="out")(layers.Concatenate()([a, b]))
    m = Model([a, b], out)
    m.compile(optimizer="sgd", loss="mse")
    return m


def test_dict_of_arrays_by_input_name(two_inputs):
    m = two_inputs
    A, B = X[:, :3], X[:, 3:]
    want = m.predict([A, B], verbose=0)
    np.testing.assert_array_equal(m.predict({"a": A, "b": B}, verbose=0), want)
    np.testing.assert_array_equal(m.predict({"b": B, "a": A}, verbose=0), want)
    assert m.evaluate({"b": B, "a": A}, Y, verbose=0) == pytest.approx(
        m.evaluate([A, B], Y, verbose=0))
    with pytest.raises(ValueError, match="'b'"):
        m.predict({"a": A}, verbose=0)
    with pytest.warns(UserWarning, match="'c'"):
        m.predict({"a": A, "b": B, "c": B}, verbose=0)
    with pytest.raises(ValueError, match="expects 2 input"):
        m.predict([A, B, B], verbose=0)


def test_dict_inputs_of_a_model_built_on_a_dict():
    a, b = Input((3,), name="in_a"), Input((1,), name="in_b")
    m = Model({"first": a, "second": b}, layers.Dense(1)(layers.Concatenate()([a, b])))
    m.compile(optimizer="sgd", loss="mse")
    A, B = X[:, :3], X[:, 3:]
    np.testing.assert_array_equal(m.predict({"second": B, "first": A}, verbose=0),
                                  m.predict([A, B], verbose=0))


def test_dict_targets_by_output_name():
    inp = Input((D,))
    m = Model(inp, [layers.Dense(1, name="o1")(inp), layers.Dense(2, name="o2")(inp)])
    m.compile(optimizer="sgd", loss={"o1": "mse", "o2": "mae"})
    w0 = m.get_weights()
    y1, y2 = Y[:, :1], Y
    h1 = m.fit(X, [y1, y2], batch_size=16, shuffle=False, epochs=2, verbose=0).history
    w1 = m.get_weights()
    m.set_weights(w0)
    m.optimizer.iterations.assign(0)
    h2 = m.fit(X, {"o2": y2, "o1": y1}, batch_size=16, shuffle=False, epochs=2, verbose=0).history
    for a, b in zip(w1, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2 and sorted(h1) == ["loss", "o1_loss", "o2_loss"]


# ------------------------------------------------------------------ generators
def test_generator_runs_until_exhausted_like_the_arrays(base):
    m = fresh(base)
    m.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    want = m.get_weights()
    m = fresh(base)
    n_exe = len(m._executables)
    h = m.fit(batches_of([16, 16, 16, 2]), epochs=1, verbose=0)     # ragged last batch
    assert len(m._executables) == n_exe                          # padded: nothing compiled
    for a, b in zip(m.get_weights(), want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert h.params["steps"] is None and len(h.history["loss"]) == 1


def test_generator_sample_weights_like_the_arrays(base):
    m = fresh(base)
    m.fit(X, Y, sample_weight=SW, batch_size=16, epochs=1, shuffle=False, verbose=0)
    want = m.get_weights()
    m = fresh(base)
    m.fit(batches_of([16, 16, 16, 2], sw=SW), epochs=1, verbose=0)
    for a, b in zip(m.get_weights(), want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert m.evaluate(batches_of([16, 16, 16, 2], sw=SW), verbose=0) == pytest.approx(
        m.evaluate(X, Y, sample_weight=SW, batch_size=16, verbose=0), rel=1e-6)


def test_generator_with_steps_per_epoch_continues_across_epochs(base):
    m = fresh(base)
    drawn = []

    def forever():
        i = 0
        while True:
            drawn.append(i)
            s = (i * 10) % N
            yield X[s:s + 10], Y[s:s + 10]
            i += 1
    h = m.fit(forever(), steps_per_epoch=3, epochs=2, verbose=0)
    assert drawn == [0, 1, 2, 3, 4, 5] and h.params["steps"] == 3 and h.epoch == [0, 1]


def test_exhausted_generator_stops_training_with_keras_warning(base):
    m = fresh(base)
    with pytest.warns(UserWarning, match="Your input ran out of data"):
        h = m.fit(batches_of([16, 16]), epochs=3, verbose=0)
    assert h.epoch == [0]
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(batches_of([16, 16, 18]), steps_per_epoch=2, epochs=3, verbose=0)
    assert h.epoch == [0, 1]


def test_larger_later_batch_gets_its_own_executable(base):
    m = fresh(base)
    m.fit(batches_of([8, 16, 4]), epochs=1, verbose=0)
    got = m.get_weights()
    m = fresh(base)
    for s, e in [(0, 8), (8, 24), (24, 28)]:
        m.train_on_batch(X[s:e], Y[s:e])
    for a, b in zip(got, m.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_evaluate_and_predict_on_generators_with_steps(base):
    m = fresh(base)
    want = m.evaluate(X[:32], Y[:32], batch_size=16, verbose=0)
    assert m.evaluate(batches_of([16, 16, 16, 2]), steps=2, verbose=0) == pytest.approx(want)
    p = m.predict(X, verbose=0)
    np.testing.assert_allclose(m.predict(batches_of([16, 16, 16, 2]), verbose=0), p, rtol=1e-6)
    xs_only = (X[s:s + 20] for s in range(0, N, 20))                # x batches, no tuple
    np.testing.assert_allclose(m.predict(xs_only, verbose=0), p, rtol=1e-6)
    np.testing.assert_allclose(m.predict(batches_of([16, 16, 16, 2]), steps=3, verbose=0),
                               p[:48], rtol=1e-6)


def test_iterables_and_pydataset_style_sequences_are_reiterated(base):
    class Batches:                       # an iterable: a new iterator each epoch
        def __iter__(self):
            return batches_of([16, 16, 16, 2])

    class Sequence:                      # keras.utils.PyDataset / Sequence style
        def __init__(self):
            self.epochs_ended = 0

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return X[i * 16:(i + 1) * 16], Y[i * 16:(i + 1) * 16]

        def on_epoch_end(self):
            self.epochs_ended += 1

    m = fresh(base)
    m.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    want = m.get_weights()
    for data in (Batches(), Sequence()):
        m = fresh(base)
        h = m.fit(data, epochs=2, verbose=0, shuffle=False)
        assert h.epoch == [0, 1]
        for a, b in zip(m.get_weights(), want):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert data.epochs_ended == 2 and h.params["steps"] == 4


def test_stream_argument_errors(base):
    m = fresh(base)
    with pytest.raises(ValueError, match="`y` should not be passed"):
        m.fit(batches_of([16]), Y, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(batches_of([16]), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="without targets"):
        m.fit((X[s:s + 16] for s in range(0, N, 16)), verbose=0)
    with pytest.raises(ValueError, match="incompatible"):
        m.fit(iter([(X[:, :3], Y)]), verbose=0)


# ------------------------------------------------------------------ Dataset
def items(ds):
    return list(ds.as_numpy_iterator())


def test_from_tensor_slices_structures():
    assert [int(v) for v in Dataset.from_tensor_slices(np.arange(3))] == [0, 1, 2]
    assert [int(v) for v in Dataset.from_tensor_slices([4, 5])] == [4, 5]
    a, b = items(Dataset.from_tensor_slices((X[:2], Y[:2])))
    np.testing.assert_array_equal(a[0], X[0])
    np.testing.assert_array_equal(b[1], Y[1])
    d = items(Dataset.from_tensor_slices({"x": X[:2], "y": np.arange(2)}))
    assert sorted(d[1]) == ["x", "y"] and int(d[1]["y"]) == 1
    with pytest.raises(ValueError):
        Dataset.from_tensor_slices((X[:2], Y[:3]))


def test_batch_cardinality_and_len():
    ds = Dataset.from_tensor_slices((X, Y)).batch(16)
    shapes = [(x.shape, y.shape) for x, y in ds]
    assert shapes == [((16, D), (16, 2))] * 3 + [((2, D), (2, 2))]
    assert len(ds) == 4 and ds.cardinality() == 4 and ds.cardinality().numpy() == 4
    assert len(Dataset.from_tensor_slices(X).batch(16, drop_remainder=True)) == 3
    general = Dataset.range(10).map(lambda v: v * 2).batch(4)    # the stacking path
    assert [list(b) for b in general] == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]
    assert general.cardinality() == 3
    with pytest.raises(TypeError, match="infinite"):
        len(Dataset.range(3).repeat())
    with pytest.raises(TypeError, match="unknown"):
        len(Dataset.range(3).filter(lambda v: v > 0))


def test_map_filter_and_function_arguments():
    ds = Dataset.from_tensor_slices((np.arange(5), np.arange(5) * 10))
    assert [(int(a), int(b)) for a, b in ds.map(lambda a, b: (b, a))][:2] == [(0, 0), (10, 1)]
    assert [int(v) for v in ds.map(lambda a, b: a + b).filter(lambda v: v % 2 == 0)] == \
        [0, 22, 44]
    dd = Dataset.from_tensor_slices({"k": np.arange(3)}).map(lambda d: d["k"] + 1)
    assert [int(v) for v in dd] == [1, 2, 3]
    assert isinstance(next(iter(ds.map(lambda a, b: [a, b]))), tuple)


def test_shuffle():
    ds = Dataset.range(100)
    once = [int(v) for v in ds.shuffle(20, seed=1)]
    assert sorted(once) == list(range(100)) and once != list(range(100))
    assert [int(v) for v in ds.shuffle(20, seed=1)] == once               # seeded
    assert [int(v) for v in ds.shuffle(1)] == list(range(100))            # buffer of one
    assert max(abs(v - i) for i, v in enumerate(once)) < 100              # a buffer, not a perm
    assert all(v <= i + 19 for i, v in enumerate(once))   # element i out by position i + 19
    re = ds.shuffle(100, seed=3)
    assert [int(v) for v in re] != [int(v) for v in re]                   # reshuffled
    fixed = ds.shuffle(100, seed=3, reshuffle_each_iteration=False)
    assert [int(v) for v in fixed] == [int(v) for v in fixed]
    np.random.seed(5)
    a = [int(v) for v in ds.shuffle(100)]
    np.random.seed(5)
    assert [int(v) for v in ds.shuffle(100)] == a                          # global seed


def test_repeat_take_skip_enumerate_concatenate_zip_unbatch():
    r = Dataset.range(3)
    assert [int(v) for v in r.repeat(2)] == [0, 1, 2, 0, 1, 2]
    assert r.repeat(2).cardinality() == 6 and r.repeat().cardinality() == -1
    assert [int(v) for v in r.repeat().take(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [int(v) for v in r.skip(1)] == [1, 2] and r.skip(1).cardinality() == 2
    assert [int(v) for v in r.take(-1)] == [0, 1, 2] and items(r.skip(-1)) == []
    assert [(int(i), int(v)) for i, v in r.enumerate(5)] == [(5, 0), (6, 1), (7, 2)]
    assert [int(v) for v in r.concatenate(Dataset.range(7, 9))] == [0, 1, 2, 7, 8]
    z = Dataset.zip((r, Dataset.range(10, 20)))
    assert [(int(a), int(b)) for a, b in z] == [(0, 10), (1, 11), (2, 12)] and len(z) == 3
    assert [(int(a), int(b)) for a, b in Dataset.zip(r, r)] == [(0, 0), (1, 1), (2, 2)]
    assert [int(v) for v in r.batch(2).unbatch()] == [0, 1, 2]
    assert [int(v) for v in r.prefetch(1)] == [0, 1, 2]
    assert items(Dataset.from_tensors(np.arange(3)))[0].tolist() == [0, 1, 2]
    assert int(r.reduce(np.int64(0), lambda s, v: s + v)) == 3


def test_interleave_padded_batch_from_generator_as_tf_data():
    # tf.data's documented example for interleave
    ds = Dataset.range(1, 6).interleave(lambda x: Dataset.from_tensors(x).repeat(6),
                                        cycle_length=2, block_length=4)
    assert [int(v) for v in ds] == [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
                                    3, 3, 4, 4, 5, 5, 5, 5, 5, 5]
    ragged = Dataset.range(1, 5).map(lambda v: np.arange(int(v)))
    assert [b.tolist() for b in ragged.padded_batch(2)] == [[[0, 0], [0, 1]],
                                                            [[0, 1, 2, 0], [0, 1, 2, 3]]]
    gen = Dataset.from_generator(lambda: ((np.full(2, i), i) for i in range(3)))
    (xb, yb), = list(gen.batch(3))
    assert xb.shape == (3, 2) and yb.tolist() == [0, 1, 2]
    assert len(list(gen)) == 3 == len(list(gen))                 # called anew each time


def test_cache_runs_the_pipeline_once():
    calls = []
    ds = Dataset.range(4).map(lambda v: calls.append(int(v)) or v * 2).cache()
    assert [int(v) for v in ds] == [0, 2, 4, 6]
    assert [int(v) for v in ds] == [0, 2, 4, 6]
    assert calls == [0, 1, 2, 3]


def test_window_semantics_as_tf_data():
    def windows(ds):
        return [w.tolist() for w in ds.flat_map(lambda w: w.batch(10))]
    for src in (Dataset.range(7), Dataset.from_tensor_slices(np.arange(7))):
        assert windows(src.window(3, shift=1)) == [
            [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6], [5, 6], [6]]
        assert windows(src.window(3, shift=1, drop_remainder=True)) == [
            [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6]]
        assert windows(src.window(3)) == [[0, 1, 2], [3, 4, 5], [6]]
        assert windows(src.window(3, shift=1, stride=2, drop_remainder=True)) == [
            [0, 2, 4], [1, 3, 5], [2, 4, 6]]
        assert windows(src.window(2, shift=3)) == [[0, 1], [3, 4], [6]]
        assert src.window(3, 1, 2, True).cardinality() == 3
        assert src.window(3, shift=1).cardinality() == 7
    with pytest.raises(TypeError, match="Dataset"):
        items(Dataset.range(4).window(2))


# The seed document's pipeline, verbatim but for `tf`.
import kcompile as tf  # noqa: E402


def create_dataset(X, y, time_steps=1, batch_size=32, shuffle_buffer=1000):
    ds = tf.data.Dataset.from_tensor_slices((X, y))
    ds = ds.window(time_steps + 1, shift=1, drop_remainder=True)
    ds = ds.flat_map(lambda x, y: tf.data.Dataset.zip((x.batch(time_steps + 1), y.batch(time_steps + 1))))
    ds = ds.map(lambda x, y: (x[:-1], y[-1]))
    ds = ds.shuffle(shuffle_buffer).batch(batch_size).prefetch(1)
    return ds


T, F_, TS = 200, 3, 10
SERIES = np.cumsum(RNG.normal(size=(T, F_)), axis=0).astype(np.float32)
TARGET = SERIES[:, :1] * 0.5 + 1.0
WIN_X = np.stack([SERIES[i:i + TS] for i in range(T - TS)])     # the numpy construction
WIN_Y = np.stack([TARGET[i + TS] for i in range(T - TS)])


def test_seed_pipeline_yields_the_numpy_windows():
    ordered = list(create_dataset(SERIES, TARGET, time_steps=TS, batch_size=32,
                                  shuffle_buffer=1))
    assert [b[0].shape for b in ordered] == [(32, TS, F_)] * 5 + [(30, TS, F_)]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in ordered]), WIN_X)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in ordered]), WIN_Y)
    shuffled = list(create_dataset(SERIES, TARGET, time_steps=TS))
    xs = np.concatenate([b[0] for b in shuffled])
    ys = np.concatenate([b[1] for b in shuffled])
    order = np.argsort(xs[:, 0, 0])
    want = np.argsort(WIN_X[:, 0, 0])
    assert not np.array_equal(xs, WIN_X)
    np.testing.assert_array_equal(xs[order], WIN_X[want])
    np.testing.assert_array_equal(ys[order], WIN_Y[want])


def test_seed_pipeline_trains_a_model():
    model = models.Sequential([layers.Input((TS, F_)), layers.Flatten(), layers.Dense(1)])
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    ds = create_dataset(SERIES, TARGET, time_steps=TS)
    h = model.fit(ds, epochs=3, validation_data=ds, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert len(model._executables) == 1          # the short last batch is padded
    assert model.evaluate(ds, verbose=0) == pytest.approx(
        model.evaluate(WIN_X, WIN_Y, verbose=0), rel=1e-4)
    np.testing.assert_allclose(model.predict(create_dataset(SERIES, TARGET, TS, 32, 1),
                                             verbose=0),
                               model.predict(WIN_X, verbose=0), rtol=1e-5, atol=1e-5)


def test_dataset_steps_per_epoch_repeat_and_dict_elements(two_inputs):
    m = two_inputs
    A, B = X[:, :3], X[:, 3:]
    ds = Dataset.from_tensor_slices(({"a": A, "b": B}, Y)).batch(10)
    h = m.fit(ds.repeat(), steps_per_epoch=7, epochs=2, verbose=0)
    assert h.params["steps"] == 7 and h.epoch == [0, 1]
    assert m.evaluate(ds, verbose=0) == pytest.approx(m.evaluate([A, B], Y, verbose=0),
                                                      rel=1e-5)
    # a finite dataset with fewer batches than steps_per_epoch: as Keras, the epoch ends
    # when the data does (with a warning) and the next epoch starts over
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        h = m.fit(ds, steps_per_epoch=7, epochs=2, verbose=0)
    assert h.epoch == [0, 1]
