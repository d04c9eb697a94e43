"""Saving and loading models and weights in Keras' file formats (keras.saving).

    model.save("m.h5")                      # or "m.keras"
    model = kcompile.saving.load_model("m.h5", custom_objects={"MyLayer": MyLayer})
    model.save_weights("w.weights.h5"); model.load_weights("w.weights.h5")

Files Keras 2 or 3 wrote (legacy `.h5`, `.keras`) load too, for the layers
kcompile has; see `serialization` (configs), `weights` (variable layouts),
`training` (compile settings and optimizer state), `files` (atomic writes).
"""
from .api import load_model, load_weights, save_model, save_weights
from .objects import deserialize_keras_object, serialize_keras_object
from .serialization import (custom_object_scope, get_custom_objects, get_registered_name,
                            register_keras_serializable)
from .weights import KERAS_LAYOUTS, KerasLayout

__all__ = ["load_model", "save_model", "save_weights", "load_weights",
           "register_keras_serializable", "get_custom_objects", "get_registered_name",
           "custom_object_scope", "KERAS_LAYOUTS", "KerasLayout", "serialize_keras_object",
           "deserialize_keras_object"]
