"""Reshaping layers: views (Flatten, Reshape), repetition (RepeatVector, UpSampling),
padding and cropping of the spatial axes."""
from .cropping1d import Cropping1D
from .cropping2d import Cropping2D
from .flatten import Flatten
from .permute import Permute
from .repeat_vector import RepeatVector
from .reshape import Reshape
from .up_sampling1d import UpSampling1D
from .up_sampling2d import UpSampling2D
from .zero_padding1d import ZeroPadding1D
from .zero_padding2d import ZeroPadding2D

__all__ = ["Cropping1D", "Cropping2D", "Flatten", "Permute", "RepeatVector", "Reshape", "UpSampling1D",
           "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D"]
