"""Keras layers."""
from .layer import Layer
from .core import Dense, Activation, InputLayer, Input
from .embedding import Embedding
from .masking import Masking
from .merging import (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, maximum, minimum, multiply, subtract)
from .normalization import BatchNormalization
from .recurrent import GRU, LSTM, SimpleRNN
from .regularization import Dropout
from .reshaping import Flatten, RepeatVector, Reshape
from .wrappers import Bidirectional, TimeDistributed

__all__ = ["Layer", "Dense", "Activation", "InputLayer", "Input", "Embedding", "Add", "Average",
           "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract", "add", "concatenate",
           "BatchNormalization", "GRU", "LSTM", "SimpleRNN", "Dropout", "Flatten", "Reshape",
           "RepeatVector", "Bidirectional", "TimeDistributed", "Masking", "average", "maximum",
           "minimum", "multiply", "subtract", "serialize", "deserialize"]


def serialize(layer):
    """keras.layers.serialize: a layer as its {"module", "class_name", "config", ...} dict."""
    from ..saving.objects import serialize_keras_object
    return serialize_keras_object(layer)


def deserialize(config, custom_objects=None):
    """keras.layers.deserialize: the layer a `serialize` dict describes."""
    from ..saving.serialization import deserialize_layer
    return deserialize_layer(config, custom_objects)
