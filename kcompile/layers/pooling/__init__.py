"""Pooling layers: windowed (max, average) and global, over 1 or 2 spatial axes."""
from .average_pooling1d import AveragePooling1D
from .average_pooling2d import AveragePooling2D
from .global_average_pooling1d import GlobalAveragePooling1D
from .global_average_pooling2d import GlobalAveragePooling2D
from .global_max_pooling1d import GlobalMaxPooling1D
from .global_max_pooling2d import GlobalMaxPooling2D
from .max_pooling1d import MaxPooling1D
from .max_pooling2d import MaxPooling2D

__all__ = ["AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
           "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "MaxPooling1D",
           "MaxPooling2D"]
