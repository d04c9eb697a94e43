"""Preprocessing layers that run inside the compiled model: feature normalization
(adapted to data), rescaling, binning, categorical encoding, image resizing,
cropping and flipping."""
from .category_encoding import CategoryEncoding
from .center_crop import CenterCrop
from .discretization import Discretization
from .normalization import Normalization
from .random_color import RandomBrightness, RandomContrast
from .random_flip import RandomFlip
from .random_rotation import RandomRotation
from .random_translation import RandomTranslation
from .random_zoom import RandomZoom
from .rescaling import Rescaling
from .resizing import Resizing

__all__ = ["CategoryEncoding", "CenterCrop", "Discretization", "Normalization",
           "RandomBrightness", "RandomContrast", "RandomFlip", "RandomRotation",
           "RandomTranslation", "RandomZoom", "Rescaling", "Resizing"]
