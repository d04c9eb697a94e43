"""Keras layers."""
from .layer import Layer
from .core import Dense, Activation, InputLayer, Input
from .convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Convolution1D,
                            Convolution1DTranspose, Convolution2D, Convolution2DTranspose,
                            DepthwiseConv2D, SeparableConv2D, SeparableConvolution2D)
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
           "minimum", "multiply", "subtract", "serialize", "deserialize", "Conv1D", "Conv2D",
           "Conv1DTranspose", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
           "Convolution1D", "Convolution2D", "Convolution1DTranspose", "Convolution2DTranspose",
           "SeparableConvolution2D"]


def serialize(layer):
    """keras.layers.serialize: a layer as its {"module", "class_name", "config", ...} dict."""
    from ..saving.objects import serialize_keras_object
    return serialize_keras_object(layer)


def deserialize(config, custom_objects=None):
    """keras.layers.deserialize: the layer a `serialize` dict describes."""
    from ..saving.serialization import deserialize_layer
    return deserialize_layer(config, custom_objects)
