"""Utilities and datasets: pad_sequences against hand-computed arrays, time-series windows
against a numpy construction, normalize, set_random_seed, plot_history, and the
dataset loaders on small files written here in Keras' formats (never the network).
"""
from __future__ import annotations

import io
import json
import sys
import urllib.error

import numpy as np
import pytest

import kcompile
from kcompile import layers, models
from kcompile.datasets import imdb, mnist
from kcompile.preprocessing import sequence
from kcompile.utils import (normalize, pad_sequences, plot_history, set_random_seed,
                            timeseries_dataset_from_array, to_categorical)
from kcompile.utils import file_utils

SEQS = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], []]


# ------------------------------------------------------------------------------ pad_sequences
def test_pad_sequences_defaults():
    expected = np.array([[0, 0, 1, 2, 3],
                         [0, 0, 0, 4, 5],
                         [6, 7, 8, 9, 10],
                         [0, 0, 0, 0, 0]], np.int32)
    out = pad_sequences(SEQS)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("padding,truncating,expected", [
    ("pre", "pre", [[1, 2, 3], [0, 4, 5], [8, 9, 10], [0, 0, 0]]),
    ("post", "pre", [[1, 2, 3], [4, 5, 0], [8, 9, 10], [0, 0, 0]]),
    ("pre", "post", [[1, 2, 3], [0, 4, 5], [6, 7, 8], [0, 0, 0]]),
    ("post", "post", [[1, 2, 3], [4, 5, 0], [6, 7, 8], [0, 0, 0]]),
])
def test_pad_sequences_modes(padding, truncating, expected):
    out = pad_sequences(SEQS, maxlen=3, padding=padding, truncating=truncating)
    np.testing.assert_array_equal(out, np.array(expected))


def test_pad_sequences_value_dtype_and_nested():
    out = pad_sequences([[0.5], [1.5, 2.5, 3.5]], maxlen=2, dtype="float32", value=-1.0,
                        padding="post")
    np.testing.assert_array_equal(out, np.array([[0.5, -1.0], [2.5, 3.5]], np.float32))
    nested = pad_sequences([[[1, 2]], [[3, 4], [5, 6]]], maxlen=3)
    assert nested.shape == (2, 3, 2)
    np.testing.assert_array_equal(nested[0], [[0, 0], [0, 0], [1, 2]])
    np.testing.assert_array_equal(nested[1], [[0, 0], [3, 4], [5, 6]])
    words = pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert words.tolist() == [["a", "b"], ["<pad>", "c"]]
    assert pad_sequences(SEQS, maxlen=0).shape == (4, 0)


def test_pad_sequences_errors_and_aliases():
    with pytest.raises(ValueError, match="Padding type"):
        pad_sequences(SEQS, padding="middle")
    with pytest.raises(ValueError, match="Truncating type"):
        pad_sequences(SEQS, truncating="middle")
    with pytest.raises(ValueError, match="non-iterable"):
        pad_sequences([[1], 2])
    with pytest.raises(ValueError, match="dtype"):
        pad_sequences(SEQS, value="x")
    with pytest.raises(ValueError, match="Shape of sample"):
        pad_sequences([[[1, 2]], [[1, 2, 3]]])
    assert sequence.pad_sequences is pad_sequences
    assert kcompile.utils.pad_sequences is pad_sequences


# ---------------------------------------------------------------------------- time series
def windows_reference(data, targets, length, stride, rate, start, end):
    """Every window, by the definition: start positions p = 0, stride, ... while the
    window data[start + p + k * rate] stays before `end` (and p has a target)."""
    xs, ys = [], []
    end = len(data) if end is None else end
    p = 0
    while start + p + (length - 1) * rate < end and (targets is None or start + p < len(targets)):
        xs.append(np.stack([data[start + p + k * rate] for k in range(length)]))
        if targets is not None:
            ys.append(targets[start + p])
        p += stride
    return xs, ys


@pytest.mark.parametrize("length,stride,rate,start,end,batch", [
    (5, 1, 1, None, None, 4), (3, 2, 3, 4, 40, 5), (10, 7, 2, 1, None, 128), (4, 3, 1, 0, 20, 1),
])
def test_timeseries_windows(length, stride, rate, start, end, batch):
    data = np.arange(60 * 2, dtype=np.float32).reshape(60, 2)
    targets = np.arange(60) * 10
    ds = timeseries_dataset_from_array(data, targets, length, sequence_stride=stride,
                                       sampling_rate=rate, batch_size=batch, start_index=start,
                                       end_index=end)
    xs, ys = windows_reference(data, targets, length, stride, rate, start or 0, end)
    batches = list(ds)
    assert len(batches) == -(-len(xs) // batch) == len(ds)
    got_x = np.concatenate([b[0] for b in batches])
    got_y = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(got_x, np.stack(xs))
    np.testing.assert_array_equal(got_y, np.array(ys))
    assert all(len(b[0]) == batch for b in batches[:-1])
    assert len(list(ds)) == len(batches)                         # re-iterable


def test_timeseries_no_targets_unbatched_shuffled():
    data = np.arange(30, dtype=np.float32)
    ds = timeseries_dataset_from_array(data, None, 4, batch_size=None)
    windows = [np.asarray(w) for w in ds]
    assert len(windows) == 27
    np.testing.assert_array_equal(windows[5], [5, 6, 7, 8])
    shuffled = timeseries_dataset_from_array(data, np.arange(30), 4, batch_size=8, shuffle=True,
                                             seed=3)
    starts = np.concatenate([y for _, y in shuffled])
    order = np.arange(27)
    np.random.RandomState(3).shuffle(order)
    np.testing.assert_array_equal(starts, order)
    x0, y0 = next(iter(shuffled))
    np.testing.assert_array_equal(x0[:, 0], y0)


def test_timeseries_errors():
    data = np.zeros(10)
    with pytest.raises(ValueError, match="start_index"):
        timeseries_dataset_from_array(data, None, 3, start_index=10)
    with pytest.raises(ValueError, match="end_index"):
        timeseries_dataset_from_array(data, None, 3, start_index=5, end_index=4)
    with pytest.raises(ValueError, match="sampling_rate"):
        timeseries_dataset_from_array(data, None, 3, sampling_rate=0)
    with pytest.raises(ValueError, match="sequence_stride"):
        timeseries_dataset_from_array(data, None, 3, sequence_stride=10)


def test_timeseries_feeds_fit():
    t = np.linspace(0, 6, 80, dtype=np.float32)
    series = np.sin(t)[:, None]
    ds = timeseries_dataset_from_array(series[:-3], series[3:, 0], 3, batch_size=16)
    model = models.Sequential([layers.Input((3, 1)), layers.Flatten(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    history = model.fit(ds, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3


# ------------------------------------------------------------------------------ small utils
def test_normalize_and_to_categorical():
    # (Keras' numpy path turns axis=0 into -1 when expanding the norms; here it is axis 0.)
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(normalize(x), [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(normalize(x, axis=0, order=1),
                               x / np.array([4.0, 4.0]))
    np.testing.assert_array_equal(to_categorical([0, 2], 3), [[1, 0, 0], [0, 0, 1]])


def test_set_random_seed_makes_models_reproducible():
    def build():
        return models.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dropout(0.5),
                                  layers.Dense(2)])
    set_random_seed(11)
    a, ra = build(), np.random.rand()
    set_random_seed(11)
    b, rb = build(), np.random.rand()
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert ra == rb and a.layers[1]._salt == b.layers[1]._salt
    with pytest.raises(ValueError, match="seed"):
        set_random_seed(1.5)


def test_plot_history(tmp_path, monkeypatch):
    history = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6],
               "accuracy": [0.5, 0.7, 0.8], "val_accuracy": [0.4, 0.6, 0.7]}
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "matplotlib", None)              # as if not installed
        with pytest.raises(ImportError, match="pip install matplotlib"):
            plot_history(history, tmp_path / "h.png")
    with pytest.raises(ValueError):
        plot_history({}, tmp_path / "h.png")
    pytest.importorskip("matplotlib")
    out = plot_history(history, tmp_path / "plots" / "h.png")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------- datasets
@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KCOMPILE_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")
    monkeypatch.setattr(file_utils.urllib.request, "urlopen", offline)
    (tmp_path / "datasets").mkdir()
    return tmp_path / "datasets"


def object_array(lists):
    out = np.empty(len(lists), dtype=object)
    out[:] = [list(x) for x in lists]
    return out


def write_imdb(folder, seed=0, n_train=40, n_test=30):
    r = np.random.default_rng(seed)

    def reviews(n):
        return [list(r.integers(1, 60, r.integers(0, 25))) for _ in range(n)]
    arrays = {"x_train": object_array(reviews(n_train)), "y_train": r.integers(0, 2, n_train),
              "x_test": object_array(reviews(n_test)), "y_test": r.integers(0, 2, n_test)}
    np.savez(folder / "imdb.npz", **arrays)
    return arrays


def imdb_reference(arrays, num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1,
                   oov_char=2, index_from=3):
    """keras.datasets.imdb.load_data's steps, written out plainly."""
    rng = np.random.RandomState(seed)
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        order = np.arange(len(x))
        rng.shuffle(order)
        out.append(([list(x[i]) for i in order], list(y[order])))
    splits = []
    for xs, ys in out:
        seqs = []
        for s in xs:
            s = [w + index_from for w in s]
            seqs.append(([start_char] if start_char is not None else []) + s)
        if maxlen:
            keep = [i for i, s in enumerate(seqs) if len(s) < maxlen]
            seqs, ys = [seqs[i] for i in keep], [ys[i] for i in keep]
        splits.append((seqs, ys))
    top = num_words or max(max(s) for seqs, _ in splits for s in seqs if s)
    result = []
    for seqs, ys in splits:
        if oov_char is not None:
            seqs = [[w if skip_top <= w < top else oov_char for w in s] for s in seqs]
        else:
            seqs = [[w for w in s if skip_top <= w < top] for s in seqs]
        result.append((seqs, ys))
    return result


@pytest.mark.parametrize("kwargs", [
    {}, {"num_words": 20}, {"num_words": 30, "skip_top": 5, "maxlen": 15},
    {"oov_char": None, "num_words": 25}, {"start_char": None, "index_from": 0, "seed": 5},
    {"index_from": 1, "start_char": None, "maxlen": 10},
])
def test_imdb_matches_keras_preprocessing(home, kwargs):
    arrays = write_imdb(home)
    (x_train, y_train), (x_test, y_test) = imdb.load_data(**kwargs)
    (rx_train, ry_train), (rx_test, ry_test) = imdb_reference(arrays, **kwargs)
    assert x_train.dtype == object and x_train.ndim == 1
    assert [list(s) for s in x_train] == rx_train
    assert [list(s) for s in x_test] == rx_test
    np.testing.assert_array_equal(y_train, ry_train)
    np.testing.assert_array_equal(y_test, ry_test)


def test_imdb_default_shuffle_and_marks(home):
    arrays = write_imdb(home, n_train=5, n_test=3)
    (x_train, y_train), _ = imdb.load_data(num_words=1000)
    order = np.arange(5)
    np.random.RandomState(113).shuffle(order)
    np.testing.assert_array_equal(y_train, arrays["y_train"][order])
    for got, i in zip(x_train, order):
        assert got[0] == 1 and list(got[1:]) == [w + 3 for w in arrays["x_train"][i]]
    with pytest.raises(ValueError, match="maxlen"):
        imdb.load_data(maxlen=1)


def test_imdb_word_index_and_mnist(home):
    (home / "imdb_word_index.json").write_text(json.dumps({"the": 1, "movie": 2}))
    assert imdb.get_word_index() == {"the": 1, "movie": 2}
    r = np.random.default_rng(1)
    arrays = {"x_train": r.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "y_train": r.integers(0, 10, 6, dtype=np.uint8),
              "x_test": r.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "y_test": r.integers(0, 10, 4, dtype=np.uint8)}
    np.savez_compressed(home / "mnist.npz", **arrays)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"),
                     (y_test, "y_test")):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[key])


def test_offline_error_says_where_to_put_the_file(home):
    with pytest.raises(OSError) as e:
        mnist.load_data()
    message = str(e.value)
    assert str(home / "mnist.npz") in message and "storage.googleapis.com" in message
    assert "KCOMPILE_HOME" in message
    assert list(home.iterdir()) == []                           # no partial file left


def test_download_is_verified_and_atomic(home, monkeypatch):
    payload = io.BytesIO()
    np.savez(payload, x_train=np.zeros((1, 28, 28), np.uint8), y_train=np.zeros(1, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    data = payload.getvalue()

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    seen = []
    monkeypatch.setattr(file_utils.urllib.request, "urlopen",
                        lambda url, timeout=None: seen.append((url, timeout)) or Response(data))
    with pytest.raises(OSError, match="corrupt"):               # not the real file's hash
        mnist.load_data()
    assert list(home.iterdir()) == []
    monkeypatch.setattr(mnist, "FILE_HASH", __import__("hashlib").sha256(data).hexdigest())
    (x_train, _), _ = mnist.load_data()
    assert x_train.shape == (1, 28, 28)
    assert seen[0][0].endswith("/tf-keras-datasets/mnist.npz") and seen[0][1] <= 30
    assert [p.name for p in home.iterdir()] == ["mnist.npz"]


def test_bad_dataset_file(home):
    (home / "mnist.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="mnist.npz"):
        mnist.load_data()
    np.savez(home / "imdb.npz", x_train=np.zeros(2))
    with pytest.raises(ValueError, match="y_train"):
        imdb.load_data()
