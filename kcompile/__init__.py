"""kcompile: Keras-style deep learning compiled to native CPU code.

    from kcompile import models, layers
    model = models.Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(784,)))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=32)
"""
from . import activations, callbacks, constraints, data, datasets, initializers, layers, losses
from . import metrics, models, optimizers, preprocessing, random, regularizers, saving, utils
from . import keras  # noqa: E402  (kcompile.keras is kcompile: `tf.keras.X` spellings work)
from .layers import Input
from .models import Model, Sequential

__version__ = "0.1.0"
__all__ = ["activations", "callbacks", "constraints", "data", "datasets", "initializers", "layers",
           "losses", "metrics", "models", "optimizers", "preprocessing", "regularizers", "saving",
           "utils", "Input", "Model", "Sequential"]
