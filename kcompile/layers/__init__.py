"""Keras layers."""
from .layer import Layer
from .activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .activity_regularization import ActivityRegularization
from .core import Dense, Activation, InputLayer, Input
from .convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Convolution1D,
                            Convolution1DTranspose, Convolution2D, Convolution2DTranspose,
                            DepthwiseConv2D, SeparableConv2D, SeparableConvolution2D)
from .attention import (AdditiveAttention, Attention, GroupedQueryAttention,
                        GroupQueryAttention, MultiHeadAttention)
from .dot import Dot, dot
from .einsum_dense import EinsumDense
from .embedding import Embedding
from .identity import Identity
from .lambda_layer import Lambda
from .masking import Masking
from .merging import (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, maximum, minimum, multiply, subtract)
from .noise import (AlphaDropout, GaussianDropout, GaussianNoise, SpatialDropout1D,
                    SpatialDropout2D, SpatialDropout3D)
from .normalization import (BatchNormalization, GroupNormalization, LayerNormalization,
                            RMSNormalization, UnitNormalization)
from .preprocessing import (CategoryEncoding, CenterCrop, Discretization, Normalization,
                            RandomBrightness, RandomContrast, RandomFlip, RandomRotation,
                            RandomTranslation, RandomZoom,
                            Rescaling, Resizing)
from .recurrent import GRU, LSTM, SimpleRNN
from .rnn import RNN
from .conv_lstm import ConvLSTM1D, ConvLSTM2D
from .rnn_cells import GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells
from .regularization import Dropout
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                      GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                      MaxPooling1D, MaxPooling2D)
from .reshaping import (Cropping1D, Cropping2D, Cropping3D, Flatten, Permute, RepeatVector,
                        Reshape, UpSampling1D, UpSampling2D, UpSampling3D, ZeroPadding1D,
                        ZeroPadding2D, ZeroPadding3D)
from .wrappers import Bidirectional, TimeDistributed, Wrapper

# Keras' short names for the pooling layers.
MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D

__all__ = ["Layer", "Dense", "Activation", "InputLayer", "Input", "Embedding", "Add", "Average",
           "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract", "add", "concatenate",
           "BatchNormalization", "GRU", "LSTM", "SimpleRNN", "Dropout", "Flatten", "Reshape",
           "RepeatVector", "Bidirectional", "TimeDistributed", "Masking", "average", "maximum",
           "minimum", "multiply", "subtract", "serialize", "deserialize", "ReLU", "LeakyReLU",
           "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
           "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
           "GlobalAveragePooling2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D",
           "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalAvgPool1D", "GlobalAvgPool2D",
           "UpSampling1D", "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
           "Cropping2D", "Conv1D", "Conv2D", "Conv1DTranspose", "Conv2DTranspose",
           "DepthwiseConv2D", "SeparableConv2D", "Convolution1D", "Convolution2D",
           "Convolution1DTranspose", "Convolution2DTranspose", "SeparableConvolution2D", "Lambda",
           "ELU", "PReLU", "Softmax", "ActivityRegularization", "Dot", "dot", "Identity",
           "AlphaDropout", "GaussianDropout", "GaussianNoise", "SpatialDropout1D",
           "SpatialDropout2D", "SpatialDropout3D", "CategoryEncoding", "Discretization",
           "Normalization", "Rescaling", "Permute", "Cropping3D", "UpSampling3D",
           "ZeroPadding3D", "CenterCrop", "RandomFlip", "Resizing",
           "RandomRotation", "RandomTranslation", "RandomZoom",
           "RandomBrightness", "RandomContrast",
           "LayerNormalization", "GroupNormalization", "UnitNormalization", "EinsumDense",
           "MultiHeadAttention", "Attention", "AdditiveAttention",
           "RMSNormalization", "GroupQueryAttention"]
__all__ += ["RNN", "LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells", "Wrapper",
            "ConvLSTM1D", "ConvLSTM2D"]


def serialize(layer):
    """keras.layers.serialize: a layer as its {"module", "class_name", "config", ...} dict."""
    from ..saving.objects import serialize_keras_object
    return serialize_keras_object(layer)


def deserialize(config, custom_objects=None):
    """keras.layers.deserialize: the layer a `serialize` dict describes."""
    from ..saving.safe_mode import default_scope
    from ..saving.serialization import deserialize_layer
    with default_scope(True):        # as Keras: Python lambdas need unsafe deserialization
        return deserialize_layer(config, custom_objects)
