"""Layer wrappers: TimeDistributed (a layer applied to every time step) and
Bidirectional (an RNN run forwards and backwards, the two outputs merged)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .layer import Layer


def _inner_from_config(entry, custom_objects=None):
    from ..saving.serialization import deserialize_layer
    return deserialize_layer(entry, custom_objects) if isinstance(entry, dict) else entry


class Wrapper(Layer):
    """Keras' base of the layers that wrap another one (`self.layer`): its config holds
    the wrapped layer's, and its weights are the wrapped layer's."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"Layer {layer} supplied to Wrapper isn't a supported layer type. "
                             f"Please ensure wrapped layer is a valid Keras layer.")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape=None):
        self.layer._maybe_build(input_shape)
        self.built = True

    def get_config(self):
        from ..saving.serialization import serialize_layer
        return {**super().get_config(), "layer": serialize_layer(self.layer, for_model=False)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving.serialization import layer_kwargs
        config = dict(config)
        layer = _inner_from_config(config.pop("layer"), custom_objects)
        return cls(layer, **layer_kwargs(cls, config))

    def _keras_saved_children(self):
        return [("layer", self.layer)]


class TimeDistributed(Wrapper):
    """`layer` applied to each slice `inputs[:, t]`: the batch and time axes are one
    axis while the layer runs, so a Dense is one matrix product over all steps. A
    mask (batch, time) reaches a layer whose call takes one as (batch*time,)."""

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"Please initialize `TimeDistributed` layer with a "
                             f"`keras.layers.Layer` instance. Received: {layer}")
        super().__init__(layer, **kwargs)

    def build(self, input_shape):
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 3:
            raise ValueError(f"`TimeDistributed` Layer should be passed an `input_shape` with "
                             f"at least 3 dimensions, received: {input_shape}")
        self.layer._maybe_build((input_shape[0], *input_shape[2:]))
        self.built = True

    def call(self, inputs, training=None, mask=None):
        B, T = inputs.shape[:2]
        kw = {}
        if mask is not None:
            if mask.ndim < 2 or tuple(mask.shape[:2]) != (B, T):
                raise ValueError(f"The `mask` passed to the `TimeDistributed` layer has a shape "
                                 f"{tuple(mask.shape)} that is incompatible with the input "
                                 f"shape {tuple(inputs.shape)}. The first two dimensions of "
                                 f"the mask (batch size and timesteps) must match the input's "
                                 f"first two dimensions.")
            if self.layer._call_has_mask:
                kw["mask"] = F.reshape(mask, (B * T, *mask.shape[2:]))
        flat = F.reshape(inputs, (B * T, *inputs.shape[2:]))
        y = self.layer(flat, training=training, **kw)
        return F.reshape(y, (B, T, *y.shape[1:]))


MERGE_MODES = ("sum", "mul", "ave", "concat", None)


class Bidirectional(Layer):
    """Keras' Bidirectional: a copy of `layer` (named forward_<name>) on the sequence
    and a backward layer (by default another copy, go_backwards=True) on it reversed;
    with `return_sequences` the backward outputs are put back in time order before the
    merge, and masked steps output zeros (as Keras forces `zero_output_for_mask`).
    Weights: the forward layer's, then the backward layer's."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"Please initialize `Bidirectional` layer with a "
                             f"`keras.layers.Layer` instance. Received: {layer}")
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ValueError(f"`backward_layer` need to be a `keras.layers.Layer` instance. "
                             f"Received: {backward_layer}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"Invalid merge mode. Received: {merge_mode}. Merge mode should "
                             f"be one of {{\"sum\", \"mul\", \"ave\", \"concat\", None}}")
        super().__init__(**kwargs)
        # As Keras: the forward layer is made anew from the layer's config, so that it
        # carries no state of `layer`.
        self.forward_layer = _copy_layer(layer, name="forward_" +
                                         layer.name.removeprefix("forward_"))
        if backward_layer is None:
            backward_layer = _copy_layer(layer, go_backwards=True, name="backward_" +
                                         layer.name.removeprefix("backward_"))
        self.backward_layer = backward_layer
        self._verify_layer_config()
        for sub in (self.forward_layer, self.backward_layer):
            if getattr(sub, "zero_output_for_mask", None) is not None:
                sub.zero_output_for_mask = sub.return_sequences
        self.merge_mode = merge_mode
        if weights:
            half = len(weights) // 2
            self.forward_layer._initial_weights = list(weights[:half])
            self.backward_layer._initial_weights = list(weights[half:])
        self.stateful = getattr(layer, "stateful", False)
        self.return_sequences = getattr(layer, "return_sequences", False)
        self.return_state = getattr(layer, "return_state", False)
        self.supports_masking = True

    def _verify_layer_config(self):
        fwd, bwd = self.forward_layer, self.backward_layer
        if getattr(fwd, "go_backwards", None) == getattr(bwd, "go_backwards", None):
            raise ValueError("Forward layer and backward layer should have different "
                             "`go_backwards` value. Received: forward_layer.go_backwards "
                             f"{getattr(fwd, 'go_backwards', None)}, "
                             f"backward_layer.go_backwards="
                             f"{getattr(bwd, 'go_backwards', None)}")
        for a in ("stateful", "return_sequences", "return_state"):
            f, b = getattr(fwd, a, None), getattr(bwd, a, None)
            if f != b:
                raise ValueError(f"Forward layer and backward layer are expected to have the "
                                 f"same value for attribute \"{a}\", got \"{f}\" for forward "
                                 f"layer and \"{b}\" for backward layer")

    @property
    def states(self):
        f, b = getattr(self.forward_layer, "states", None), \
            getattr(self.backward_layer, "states", None)
        return tuple(f) + tuple(b) if f and b else None

    def reset_states(self):
        self.reset_state()

    def reset_state(self):
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    def build(self, input_shape):
        self.forward_layer._maybe_build(input_shape)
        self.backward_layer._maybe_build(input_shape)
        self.built = True

    def call(self, sequences, initial_state=None, mask=None, training=None):
        fwd_state = bwd_state = None
        if initial_state is not None:
            states = list(initial_state)
            half = len(states) // 2
            fwd_state, bwd_state = states[:half], states[half:]
        kw = {"mask": mask} if mask is not None else {}
        y = self.forward_layer(sequences, training=training, initial_state=fwd_state, **kw)
        y_rev = self.backward_layer(sequences, training=training, initial_state=bwd_state, **kw)
        states = []
        if self.return_state:
            states = [*y[1:], *y_rev[1:]]
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = _reverse_time(y_rev)
        if self.merge_mode == "concat":
            out = F.concatenate([y, y_rev], axis=-1)
        elif self.merge_mode == "sum":
            out = y + y_rev
        elif self.merge_mode == "ave":
            out = (y + y_rev) * 0.5
        elif self.merge_mode == "mul":
            out = y * y_rev
        else:
            out = [y, y_rev]
        if self.return_state:
            return (out if isinstance(out, list) else [out]) + states
        return out

    def compute_mask(self, inputs, previous_mask=None):
        mask = previous_mask[0] if isinstance(previous_mask, list) else previous_mask
        if self.return_sequences:
            out = [mask, mask] if self.merge_mode is None else mask
        else:
            out = [None, None] if self.merge_mode is None else None
        if self.return_state:
            n = len(getattr(self.forward_layer, "_state_shapes", [])) * 2
            return (out if isinstance(out, list) else [out]) + [None] * n
        return out

    def get_config(self):
        from ..saving.serialization import serialize_layer
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize_layer(self.forward_layer, for_model=False),
                "backward_layer": serialize_layer(self.backward_layer, for_model=False)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving.serialization import layer_kwargs
        config = dict(config)
        layer = _inner_from_config(config.pop("layer"), custom_objects)
        backward = config.pop("backward_layer", None)
        backward = _inner_from_config(backward, custom_objects) if backward is not None \
            else None
        return cls(layer, backward_layer=backward, **layer_kwargs(cls, config))

    def _keras_saved_children(self):
        return [("forward_layer", self.forward_layer), ("backward_layer", self.backward_layer)]


def _copy_layer(layer, **changes):
    """A new layer from `layer`'s config with `changes`; the classes of the layer and
    of its sublayers (a user's cell) are known while the copy is made."""
    from ..saving.serialization import custom_object_scope, deserialize_layer, serialize_layer
    classes = {type(l).__name__: type(l) for l in [layer, *layer._sublayers(recursive=True)]}
    cell = getattr(layer, "cell", None)
    if cell is not None:
        classes[type(cell).__name__] = type(cell)
    entry = serialize_layer(layer, for_model=False)
    entry.pop("build_config", None)
    entry["config"] = {**entry["config"], **changes}
    with custom_object_scope(classes):
        return deserialize_layer(entry)


def _reverse_time(y):
    """y (batch, time, ...) with the time axis reversed."""
    T = y.shape[1]
    perm = (1, 0, *range(2, y.ndim))
    order = F.lift(y.g, np.arange(T - 1, -1, -1, dtype=np.int32), "int32")
    return F.transpose(F.gather(F.transpose(y, perm), order), perm)
