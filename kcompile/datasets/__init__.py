"""Keras' small datasets (keras.datasets), read from the standard files.

    from kcompile.datasets import imdb, mnist
    (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=10000)

Files live in $KCOMPILE_HOME/datasets (~/.kcompile/datasets by default): the same
`imdb.npz`, `imdb_word_index.json` and `mnist.npz` Keras uses. A missing file is
downloaded from Keras' public bucket when the machine is online; offline, the
error says where to put it.
"""
from . import imdb, mnist

__all__ = ["imdb", "mnist"]
