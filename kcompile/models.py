"""Models: Sequential, the functional Model and subclassed models, their weights and summary.

A subclassed model (`class M(Model)` with `__init__` and `call`, no Input) is built
from the first data it sees (kcompile/subclassed.py); its layers are the ones its
attributes hold.
"""
from __future__ import annotations

import numpy as np

from . import eager_calls, functional, saving, subclassed, tracing  # noqa: F401  (kcompile.saving: used below)
from .functional import KerasTensor
from .layers.core import InputLayer
from .layers.layer import Layer, unique_name
from .trainer import Trainer


class Model(Trainer, Layer):
    """A functional model, `Model(inputs, outputs)` over layers called on `Input` tensors,
    or the base of a subclassed model (`__init__` + `call`)."""

    def __init__(self, inputs=None, outputs=None, name=None, **kwargs):
        Layer.__init__(self, name=name or unique_name(_base_name(self)), **kwargs)
        Trainer.__init__(self)
        if inputs is None and outputs is None:
            self._inputs = self._outputs = None
            self._subclass_spec = None      # set when built: kcompile/subclassed.py
            return
        if inputs is None or outputs is None:
            raise ValueError("A functional Model needs both `inputs` and `outputs`")
        self._input_struct = inputs
        self._inputs = functional.flatten(inputs)
        self._outputs = functional.flatten(outputs)
        self._output_struct = outputs
        for t in self._inputs + self._outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model inputs and outputs must be KerasTensors from "
                                f"layers.Input(...) and layer calls, got {type(t).__name__}")
        # As Keras: the declared shapes, None where an axis is variable.
        shapes = lambda ts: ts[0].shape if len(ts) == 1 else [t.shape for t in ts]  # noqa: E731
        self.input_shape, self.output_shape = shapes(self._inputs), shapes(self._outputs)
        self.built = True

    def __call__(self, inputs, *args, training=None, mask=None, **kwargs):
        # A call on one plain array seen before: the prepared native call, without the
        # checks of a layer call (784-32-10 at batch 1: 4.4 us, not 14.5 us).
        if type(inputs) is np.ndarray and not (args or kwargs) and mask is None \
                and not tracing._active:
            outputs = eager_calls.prepared_model_call(self, inputs, training)
            if outputs is not None:
                return outputs
        return Layer.__call__(self, inputs, *args, training=training, mask=mask, **kwargs)

    # -- structure ---------------------------------------------------------------
    def _symbolic(self):
        """(input structure, output structure) of KerasTensors."""
        if self._outputs is None:
            raise AttributeError(f"Model {self.name!r} is a subclassed model: it has no "
                                 f"symbolic inputs or outputs (`model.input`, `model.output`)")
        return self._input_struct, self._output_struct

    @property
    def inputs(self) -> list:
        return functional.flatten(self._symbolic()[0])

    @property
    def outputs(self) -> list:
        return functional.flatten(self._symbolic()[1])

    @property
    def input(self):
        """The model's input KerasTensor(s), in the structure the model was made with."""
        return self._symbolic()[0]

    @property
    def output(self):
        return self._symbolic()[1]

    @property
    def _is_subclassed(self) -> bool:
        return self._outputs is None and not isinstance(self, Sequential)

    @property
    def layers(self) -> list[Layer]:
        if self._outputs is None:
            return self._sublayers()
        out = []
        for t in functional.topological_tensors(self._outputs):
            if t.layer not in out:
                out.append(t.layer)
        return out

    def _sublayers(self, recursive=False):
        if self._outputs is None:       # a subclassed model: the layers its attributes hold
            return Layer._sublayers(self, recursive)
        direct = self.layers
        if not recursive:
            return direct
        return list({id(l): l for layer in direct
                     for l in [layer, *layer._sublayers(recursive=True)]}.values())

    @property
    def input_specs(self) -> list[tuple[tuple, str]]:
        """(per-sample shape, dtype) of each model input."""
        if self._outputs is None:
            return subclassed.spec(self).input_specs
        return [(t.shape[1:], t.dtype) for t in self._inputs]

    @property
    def output_names(self) -> list[str]:
        if self._outputs is None:
            return subclassed.spec(self).output_names
        return [t.layer.name for t in self._outputs]

    def forward(self, xs, training=False):
        """The model applied to traced inputs; a list of traced outputs."""
        if self._outputs is None:
            return subclassed.forward(self, xs, training)
        return functional.run_graph(self._inputs, self._outputs, xs, training)

    def build(self, input_shape=None):
        """A subclassed model: create its weights for inputs of `input_shape` (batch axis
        included; a list or dict of shapes for several inputs), as calling it would."""
        if self._outputs is not None:
            self.built = True
            return
        if input_shape is None:
            raise ValueError(f"Model {self.name!r}: build() needs `input_shape`")
        subclassed.build(self, input_shape)

    def _build_from_data(self, x):
        subclassed.build_from_data(self, x)

    # -- weights -----------------------------------------------------------------
    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        ws = self.weights
        if len(weights) != len(ws):
            raise ValueError(f"You called `set_weights(weights)` on model {self.name!r} with a "
                             f"weight list of length {len(weights)}, but the model expects "
                             f"{len(ws)} weights")
        for var, w in zip(ws, weights):
            if np.shape(w) != var.shape:
                raise ValueError(f"Model {self.name!r}: weight {var.path!r} has shape {var.shape}, "
                                 f"received {np.shape(w)}")
        for var, w in zip(ws, weights):
            var._assign_array(w)

    def count_params(self):
        return int(sum(np.prod(w.shape) for w in self.weights))

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: "
                         f"{[l.name for l in self.layers]}")

    def call(self, inputs, training=None):
        """The model used as a layer of another model (nested models). A subclassed
        model defines its own."""
        if self._is_subclassed:
            raise NotImplementedError(f"Model {type(self).__name__} has no call(): a "
                                      f"subclassed model must define call(self, inputs)")
        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        outs = self.forward(xs, training=training)
        return outs[0] if len(outs) == 1 else outs

    # -- saving (kcompile/saving) --------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True, **kwargs):
        """Architecture, weights, compile settings and optimizer state: `.keras` or `.h5`."""
        from .saving import save_model
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer,
                   **kwargs)

    def export(self, filepath, format="native", verbose=None, input_signature=None, **kwargs):
        """Write the model's predict as a standalone C library (kcompile/export.py):
        batch_size= or max_batch_size=, threads=, cpu='host'|'generic'|name, weights_file=."""
        from .export import export_model
        return export_model(self, filepath, format, verbose, input_signature, **kwargs)

    def save_weights(self, filepath, overwrite=True):
        """`.weights.h5` (Keras 3 layout) or `.h5` (legacy layout)."""
        from .saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False, by_name=False, **kwargs):
        from .saving import load_weights
        if kwargs:
            raise TypeError(f"load_weights() got unexpected arguments {sorted(kwargs)}")
        load_weights(self, filepath, skip_mismatch=skip_mismatch, by_name=by_name)

    def get_config(self):
        if self._outputs is None or not subclassed.functional_like_constructor(type(self)):
            return subclassed.get_config(self)
        from .saving.model_config import functional_config
        return functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A functional model from its graph config, else (a subclassed model) `cls(**config)`,
        as Keras does."""
        from .saving.model_config import functional_from_config
        from .saving.serialization import custom_object_scope
        with custom_object_scope(custom_objects):
            if subclassed.is_functional_config(cls, config):
                return functional_from_config(cls, config, custom_objects)
            return subclassed.from_config(cls, config)

    def to_json(self, **kwargs):
        """The model's {"class_name", "config"} as a JSON string."""
        from .saving.api import to_json
        from .saving.model_config import model_to_config
        return to_json(model_to_config(self))

    # -- summary ---------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, **kwargs):
        from .summary import format_summary
        text = format_summary(self)
        (print_fn or print)(text)

    def _layer_rows(self):
        if self._outputs is None:
            return subclassed.layer_rows(self)
        rows = []
        for t in functional.topological_tensors(self._outputs):
            if t.index:
                continue
            if isinstance(t.layer, InputLayer):
                rows.append((t.layer, t.shape, 0))
            else:
                rows.append((t.layer, t.shape, t.layer.count_params()))
        return rows


def _base_name(model):
    return {"Sequential": "sequential", "Model": "functional"}.get(type(model).__name__,
                                                                   type(model).__name__.lower())


class Sequential(Model):
    """A linear stack of layers."""

    def __init__(self, layers=None, name=None, trainable=True, **kwargs):
        Model.__init__(self, name=name, trainable=trainable, **kwargs)
        self._layers: list[Layer] = []
        self._input_shape = None
        self._input_dtype = "float32"
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor):
            if self._layers or self._input_shape is not None:
                raise ValueError("An Input can only be the first entry of a Sequential model")
            self._input_shape = layer.shape[1:]
            self._input_batch = layer.shape[0]
            self._input_dtype = layer.dtype
            self._input_tensor = layer      # model.input is this very tensor, as in Keras
            return
        if isinstance(layer, InputLayer):
            self._input_shape = layer._input_shape_arg
            self._input_batch = layer._batch_size
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() takes a Layer instance, received: {layer!r} "
                            f"of type {type(layer).__name__}")
        if any(l.name == layer.name for l in self._layers):
            raise ValueError(f"All layers added to a Sequential model should have unique names. "
                             f"Name {layer.name!r} is already the name of a layer in this model.")
        if not self._layers and self._input_shape is None and layer._input_shape_arg is not None:
            self._input_shape = layer._input_shape_arg
            self._input_batch = getattr(layer, "_batch_size_arg", None)
        self._layers.append(layer)
        self._invalidate()
        if self._input_shape is not None:
            self.build((None, *self._input_shape))

    def pop(self):
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        self._invalidate()
        return layer

    def build(self, input_shape=None):
        if input_shape is not None:
            self._input_shape = tuple(input_shape)[1:]
        if self._input_shape is None:
            raise ValueError("This Sequential model has no input shape yet: give the first layer "
                             "`input_shape=`, start with `layers.Input(shape=...)`, or call "
                             "fit/predict on data")
        # A batch size given to the Input builds the layers (a stateful RNN's states).
        shape = (getattr(self, "_input_batch", None), *self._input_shape)
        for layer in self._layers:
            if not layer.built or layer.input_shape is None:
                layer._maybe_build(shape)
            layer.input_shape = shape
            shape = layer.compute_output_shape(shape)
            layer.output_shape = shape
        self.input_shape, self.output_shape = (None, *self._input_shape), shape
        self.built = True
        if any(not layer._inbound for layer in self._layers):
            self._symbolic()        # as Keras: each layer's `input` / `output` tensors

    @property
    def layers(self):
        return list(self._layers)

    def _symbolic(self):
        """Keras' Sequential exposes `input`/`output` once its input shape is known: the
        layers called in turn on an Input (made when first asked for)."""
        from .layers.core import Input
        if self._input_shape is None:
            raise AttributeError(f"Sequential model {self.name!r} has no input shape yet, so "
                                 f"no symbolic input or output")
        x = getattr(self, "_input_tensor", None)
        if x is None or tuple(x.shape[1:]) != tuple(self._input_shape):
            x = self._input_tensor = Input(shape=self._input_shape, dtype=self._input_dtype)
        start, done, y = getattr(self, "_symbolic_chain", (x, (), x))
        ids = tuple(id(l) for l in self._layers)
        if start is not x or ids[:len(done)] != done:
            done, y = (), x                 # the input changed or layers were popped
        for layer in self._layers[len(done):]:
            y = layer(y)                    # only the layers added since the last call
        self._symbolic_chain = (x, ids, y)
        return x, y

    @property
    def input_specs(self):
        if self._input_shape is None:
            raise ValueError("This Sequential model has no input shape yet")
        return [(tuple(self._input_shape), self._input_dtype)]

    @property
    def output_names(self):
        return [self._layers[-1].name] if self._layers else []

    def forward(self, xs, training=False):
        from .tracing import current
        (x,) = xs
        trace = current()
        for layer in self._layers:
            with trace.scope(layer.name):
                x = layer(x, training=training)
        return [x]

    def _ensure_input_shape(self, x):
        if self._input_shape is None:
            self._input_shape = tuple(np.shape(x)[1:])
            self.build((None, *self._input_shape))

    def _layer_rows(self):
        return [(l, l.output_shape, l.count_params()) for l in self._layers]

    def get_config(self):
        """Keras 3's Sequential config: name, layers (an InputLayer entry first when the
        input shape is known) and build_input_shape."""
        from .saving.model_config import sequential_config
        return sequential_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .saving.model_config import sequential_from_config
        from .saving.serialization import custom_object_scope
        with custom_object_scope(custom_objects):
            return sequential_from_config(cls, config, custom_objects)


def save_model(model, filepath, overwrite=True, include_optimizer=True, **kwargs):
    """keras.models.save_model: `model.save(filepath)`."""
    from .saving import save_model as _save
    _save(model, filepath, overwrite=overwrite, include_optimizer=include_optimizer, **kwargs)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model saved by `model.save` (or by Keras 2/3 in `.h5` or `.keras` format)."""
    from .saving import load_model as _load
    return _load(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None,
                recursive=False, **kwargs):
    """A new model of the same architecture and layer configs, with new (freshly
    initialized) weights, as Keras' default clone; a Sequential's `clone_function`
    (applied to each layer) is supported too."""
    if kwargs:
        raise TypeError(f"clone_model() got unexpected arguments {sorted(kwargs)}")
    if not isinstance(model, Model):
        raise ValueError(f"Expected `model` argument to be a `Model` instance. Received: "
                         f"model={model!r}")
    if input_tensors is not None or call_function is not None or recursive or (
            clone_function is not None and not isinstance(model, Sequential)):
        raise NotImplementedError("clone_model: `input_tensors`, `call_function`, `recursive` "
                                  "and a functional model's `clone_function` are not supported; "
                                  "clone with the defaults")
    if isinstance(model, Sequential) and clone_function is not None:
        clone = Sequential(name=model.name)
        if model._input_shape is not None:
            from .layers.core import Input
            clone.add(Input(shape=model._input_shape, dtype=model._input_dtype))
        for layer in model.layers:
            clone.add(clone_function(layer))
        return clone
    if model._is_subclassed:
        return type(model).from_config(model.get_config())
    from .saving.model_config import model_from_config, model_to_config
    return model_from_config(model_to_config(model))


def model_from_json(json_string, custom_objects=None):
    """A model (uncompiled, freshly initialized) from `model.to_json()`."""
    import json
    from .saving.model_config import model_from_config
    from .saving.safe_mode import default_scope
    with default_scope(True):        # as Keras: Python lambdas need unsafe deserialization
        return model_from_config(json.loads(json_string), custom_objects)
