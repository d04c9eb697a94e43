"""Activation layers with their own arguments (the plain `Activation` is in core.py)."""
from .leaky_relu import LeakyReLU
from .relu import ReLU

__all__ = ["LeakyReLU", "ReLU"]
