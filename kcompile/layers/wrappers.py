"""Layer wrappers: TimeDistributed (a layer applied to every time step) and
Bidirectional (an RNN run forwards and backwards, the two outputs merged)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .layer import Layer


def _inner_from_config(entry):
    from ..saving.serialization import deserialize_layer
    return deserialize_layer(entry) if isinstance(entry, dict) else entry


class TimeDistributed(Layer):
    """`layer` applied to each slice `inputs[:, t]`: the batch and time axes are one
    axis while the layer runs, so a Dense is one matrix product over all steps."""

    supports_masking = True

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer):
            raise ValueError(f"Please initialize `TimeDistributed` layer with a "
                             f"`keras.layers.Layer` instance. Received: {layer}")
        self.layer = layer

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"`TimeDistributed` Layer should be passed an `input_shape` with "
                             f"at least 3 dimensions, received: {input_shape}")
        self.layer._maybe_build((None, *input_shape[2:]))
        self._weights = self.layer._weights
        self.built = True

    def call(self, inputs, training=None):
        B, T = inputs.shape[:2]
        flat = F.reshape(inputs, (B * T, *inputs.shape[2:]))
        y = self.layer(flat, training=training)
        return F.reshape(y, (B, T, *y.shape[1:]))

    def get_config(self):
        from ..saving.serialization import serialize_layer
        return {**super().get_config(), "layer": serialize_layer(self.layer, for_model=False)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = _inner_from_config(config.pop("layer"))
        config.pop("batch_input_shape", None)
        return cls(layer, **{k: v for k, v in config.items() if k in ("name", "trainable", "dtype")})


MERGE_MODES = ("sum", "mul", "ave", "concat", None)


class Bidirectional(Layer):
    """Keras' Bidirectional: `layer` on the sequence and a copy with `go_backwards`
    flipped on the reversed one. With `return_sequences` the backward outputs are put
    back in time order before the merge."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer) or not hasattr(layer, "go_backwards"):
            raise ValueError(f"Please initialize `Bidirectional` layer with a RNN layer "
                             f"instance. Received: {layer}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"Invalid merge mode. Received: {merge_mode}. Merge mode should "
                             f"be one of {{'sum', 'mul', 'ave', 'concat', None}}")
        if backward_layer is None:
            cfg = {**layer.get_config(), "go_backwards": not layer.go_backwards}
            cfg.pop("batch_input_shape", None)
            cfg["name"] = "backward_" + layer.name
            backward_layer = type(layer).from_config(cfg)
        elif backward_layer.go_backwards == layer.go_backwards:
            raise ValueError("Forward layer and backward layer should have different "
                             "`go_backwards` value. Received: forward_layer.go_backwards "
                             f"{layer.go_backwards}, backward_layer.go_backwards="
                             f"{backward_layer.go_backwards}")
        if not layer.built:
            layer.name = "forward_" + layer.name
        self.forward_layer, self.backward_layer = layer, backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.supports_masking = True
        self._initial_weights = weights

    def build(self, input_shape):
        self.forward_layer._maybe_build(input_shape)
        self.backward_layer._maybe_build(input_shape)
        self._weights = [*self.forward_layer._weights, *self.backward_layer._weights]
        self.built = True

    def call(self, inputs, training=None, initial_state=None):
        fwd_state = bwd_state = None
        if initial_state is not None:
            states = list(initial_state)
            half = len(states) // 2
            fwd_state, bwd_state = states[:half], states[half:]
        y = self.forward_layer(inputs, training=training, initial_state=fwd_state)
        y_rev = self.backward_layer(inputs, training=training, initial_state=bwd_state)
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

    def get_config(self):
        from ..saving.serialization import serialize_layer
        cfg = {**super().get_config(), "merge_mode": self.merge_mode,
               "layer": serialize_layer(self.forward_layer, for_model=False)}
        cfg["layer"]["config"]["name"] = self.forward_layer.name.removeprefix("forward_")
        cfg["backward_layer"] = serialize_layer(self.backward_layer, for_model=False)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = _inner_from_config(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        backward = _inner_from_config(backward) if backward is not None else None
        config.pop("batch_input_shape", None)
        keep = {k: v for k, v in config.items() if k in ("name", "trainable", "dtype")}
        return cls(layer, merge_mode=config.get("merge_mode", "concat"), backward_layer=backward,
                   **keep)


def _reverse_time(y):
    """y (batch, time, ...) with the time axis reversed."""
    T = y.shape[1]
    perm = (1, 0, *range(2, y.ndim))
    order = F.lift(y.g, np.arange(T - 1, -1, -1, dtype=np.int32), "int32")
    return F.transpose(F.gather(F.transpose(y, perm), order), perm)
