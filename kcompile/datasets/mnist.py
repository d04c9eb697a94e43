"""MNIST digits (keras.datasets.mnist)."""
from __future__ import annotations

from ..utils.file_utils import get_file
from ._npz import ORIGIN, load_npz

FILE_HASH = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def load_data(path="mnist.npz"):
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (N, 28, 28) and uint8 labels,
    from `mnist.npz` in the kcompile dataset cache (downloaded when missing and online)."""
    path = get_file(fname=path, origin=ORIGIN + "mnist.npz", file_hash=FILE_HASH)
    f = load_npz(path, ["x_train", "y_train", "x_test", "y_test"])
    return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
