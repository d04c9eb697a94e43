"""Keras layers."""
from .layer import Layer
from .core import Dense, Activation, InputLayer, Input

__all__ = ["Layer", "Dense", "Activation", "InputLayer", "Input"]
