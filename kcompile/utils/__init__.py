"""Utilities with Keras' names (keras.utils)."""
from ..backend import clear_session
from .file_utils import get_file
from .numerical import normalize, to_categorical
from .plotting import plot_history
from .py_dataset import PyDataset, Sequence
from .rng import set_random_seed
from .sequence import pad_sequences
from .timeseries import timeseries_dataset_from_array

__all__ = ["to_categorical", "normalize", "pad_sequences", "timeseries_dataset_from_array",
           "set_random_seed", "plot_history", "get_file", "PyDataset", "Sequence", "clear_session"]
