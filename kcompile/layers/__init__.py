"""Keras layers."""
from .layer import Layer
from .core import Dense, Activation, InputLayer, Input
from .embedding import Embedding
from .merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add, concatenate
from .normalization import BatchNormalization
from .recurrent import GRU, LSTM, SimpleRNN
from .regularization import Dropout
from .reshaping import Flatten, RepeatVector, Reshape
from .wrappers import Bidirectional, TimeDistributed

__all__ = ["Layer", "Dense", "Activation", "InputLayer", "Input", "Embedding", "Add", "Average",
           "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract", "add", "concatenate",
           "BatchNormalization", "GRU", "LSTM", "SimpleRNN", "Dropout", "Flatten", "Reshape",
           "RepeatVector", "Bidirectional", "TimeDistributed"]
