"""kcompile: Keras-style deep learning compiled to native CPU code.

    from kcompile import models, layers
    model = models.Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(784,)))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=32)
"""
import os as _os

# The compiler's packages live under this one import name: installed, kcompile/ir,
# kcompile/codegen and kcompile/runtime are inside the package (pyproject's
# package-dir); in a source checkout the folders sit beside it, so the checkout's
# root is searched for kcompile's subpackages too.
_checkout = _os.path.dirname(__path__[0])
if not _os.path.isdir(_os.path.join(__path__[0], "ir")) and \
        _os.path.isfile(_os.path.join(_checkout, "ir", "__init__.py")):
    __path__.append(_checkout)

from . import activations, backend, callbacks, config, constraints, data, datasets, initializers
from . import layers, losses
from . import metrics, models, ops, optimizers, preprocessing, random, regularizers, saving, utils
from . import distribute, distribution  # noqa: E402  (data parallelism over MPI)
from . import keras  # noqa: E402  (kcompile.keras is kcompile: `tf.keras.X` spellings work)
from .layers import Input
from .models import Model, Sequential

__version__ = "0.1.0"
__all__ = ["activations", "backend", "callbacks", "config", "constraints", "data", "datasets",
           "initializers", "layers", "losses", "metrics", "models", "ops", "optimizers",
           "preprocessing", "regularizers", "saving",
           "utils", "Input", "Model", "Sequential"]
