"""keras.preprocessing: sequence padding and time-series windows."""
from . import sequence
from ..utils.timeseries import timeseries_dataset_from_array

__all__ = ["sequence", "timeseries_dataset_from_array"]
