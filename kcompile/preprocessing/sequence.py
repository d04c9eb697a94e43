"""keras.preprocessing.sequence."""
from ..utils.sequence import pad_sequences

__all__ = ["pad_sequences"]
