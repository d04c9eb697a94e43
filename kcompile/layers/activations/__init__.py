"""Activation layers with their own arguments (the plain `Activation` is in core.py)."""
from .elu import ELU
from .leaky_relu import LeakyReLU
from .prelu import PReLU
from .relu import ReLU
from .softmax import Softmax

__all__ = ["ELU", "LeakyReLU", "PReLU", "ReLU", "Softmax"]
