"""Preprocessing layers that run inside the compiled model: feature normalization
(adapted to data), rescaling, binning and categorical encoding."""
from .category_encoding import CategoryEncoding
from .discretization import Discretization
from .normalization import Normalization
from .rescaling import Rescaling

__all__ = ["CategoryEncoding", "Discretization", "Normalization", "Rescaling"]
