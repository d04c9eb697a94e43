"""IMDB movie-review sentiment (keras.datasets.imdb), with Keras' exact preprocessing."""
from __future__ import annotations

import json

import numpy as np

from ..utils.file_utils import get_file
from ._npz import ORIGIN, load_npz

FILE_HASH = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
WORD_INDEX_HASH = "bfafd718b763782e994055a2d397834f"


def _remove_long_seq(maxlen, seq, label):
    pairs = [(x, y) for x, y in zip(seq, label) if len(x) < maxlen]
    return [x for x, _ in pairs], [y for _, y in pairs]


def load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1,
              oov_char=2, index_from=3, **kwargs):
    """`(x_train, y_train), (x_test, y_test)`: reviews as object arrays of word-index lists,
    labels 0/1, processed as keras.datasets.imdb.load_data does:

    * each split is shuffled with numpy.random.RandomState(seed) (one generator, train
      first, then test);
    * word indices are shifted by `index_from` and each review starts with `start_char`;
    * reviews of `maxlen` words or more (counting the start mark) are dropped;
    * words outside [skip_top, num_words) become `oov_char` (or are dropped when
      `oov_char` is None).
    """
    if kwargs:
        raise TypeError(f"Unrecognized keyword arguments: {sorted(kwargs)}")
    path = get_file(fname=path, origin=ORIGIN + "imdb.npz", file_hash=FILE_HASH)
    f = load_npz(path, ["x_train", "y_train", "x_test", "y_test"])
    x_train, labels_train = f["x_train"], f["y_train"]
    x_test, labels_test = f["x_test"], f["y_test"]

    rng = np.random.RandomState(seed)
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train, labels_train = x_train[indices], labels_train[indices]
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test, labels_test = x_test[indices], labels_test[indices]

    if start_char is not None:
        x_train = [[start_char] + [w + index_from for w in x] for x in x_train]
        x_test = [[start_char] + [w + index_from for w in x] for x in x_test]
    elif index_from:
        x_train = [[w + index_from for w in x] for x in x_train]
        x_test = [[w + index_from for w in x] for x in x_test]
    else:
        x_train = [list(x) for x in x_train]
        x_test = [list(x) for x in x_test]

    if maxlen:
        x_train, labels_train = _remove_long_seq(maxlen, x_train, labels_train)
        x_test, labels_test = _remove_long_seq(maxlen, x_test, labels_test)
        if not x_train or not x_test:
            raise ValueError(f"After filtering for sequences shorter than maxlen={maxlen}, "
                             f"no sequence was kept. Increase maxlen.")

    xs = x_train + x_test
    labels = np.concatenate([labels_train, labels_test])
    if not num_words:
        num_words = max(max(x) for x in xs if x) if any(xs) else 0
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]

    idx = len(x_train)
    x_train, y_train = _object_array(xs[:idx]), labels[:idx]
    x_test, y_test = _object_array(xs[idx:]), labels[idx:]
    return (x_train, y_train), (x_test, y_test)


def _object_array(lists):
    """A 1-d object array of lists (np.array would make a 2-d array of equal lengths)."""
    out = np.empty(len(lists), dtype=object)
    for i, x in enumerate(lists):
        out[i] = x
    return out


def get_word_index(path="imdb_word_index.json"):
    """{word: index} of the IMDB vocabulary (index 1 is the most frequent word; add
    `index_from` to match load_data's sequences)."""
    path = get_file(fname=path, origin=ORIGIN + "imdb_word_index.json",
                    file_hash=WORD_INDEX_HASH)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"Cannot read {path}: not a valid JSON word index ({e})") from e
