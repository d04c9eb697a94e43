"""Keras' recurrent cells: SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells.

A cell computes one time step, `call(inputs, states) -> (output, new_states)`, with
Keras' weights (kernel (input_dim, gates*units), recurrent_kernel, bias; gate orders
i, f, c, o and z, r, h) and configs. `RNN(cell)` loops it; the LSTM, GRU and SimpleRNN
layers own one and run the same gate arithmetic (`lstm_gates`, `gru_gates`) after one
input projection of all the time steps.

Dropout is Keras 3's: masks drawn once per sequence (not per step) by the RNN layer
before its loop. With only `dropout`, one input mask serves all gates; with
`recurrent_dropout` (Keras' implementation 1) every gate has its own input mask and
its own mask of the previous output.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .. import activations, constraints, initializers, regularizers
from .layer import Layer


def _part(z, j, units):
    """Gate j's block of columns of z (batch, gates*units)."""
    return F.slice_axis(z, z.ndim - 1, j * units, (j + 1) * units)


def _mask(masks, j):
    """Gate j's mask of a stack of masks (count, batch, dim)."""
    return F.reshape(F.slice_axis(masks, 0, j, j + 1), masks.shape[1:])


def recurrent_products(h, U, units, gates, rec_masks):
    """h @ U as `gates` blocks; with recurrent dropout each block sees its own mask."""
    if rec_masks is None:
        z = h @ U
        return [_part(z, j, units) for j in range(gates)]
    return [(h * _mask(rec_masks, j)) @ _part(U, j, units) for j in range(gates)]


def lstm_gates(x_parts, r_parts, c, activation, recurrent_activation):
    """Keras' LSTM step from the input and recurrent pre-activations of gates i, f, c, o."""
    i, f, g, o = (a + b for a, b in zip(x_parts, r_parts))
    c_new = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
    return recurrent_activation(o) * activation(c_new), c_new


def gru_gates(x_parts, h, U, rec_bias, units, activation, recurrent_activation, reset_after,
              rec_masks):
    """Keras' GRU step from the input pre-activations of gates z, r, h (input bias in)."""
    xz, xr, xh = x_parts
    hz = h if rec_masks is None else h * _mask(rec_masks, 0)
    hr = h if rec_masks is None else h * _mask(rec_masks, 1)
    hh_in = h if rec_masks is None else h * _mask(rec_masks, 2)
    if reset_after:
        if rec_masks is None:
            inner = h @ U
            rz, rr, rh = (_part(inner, j, units) for j in range(3))
        else:
            rz, rr, rh = ((hz, hr, hh_in)[j] @ _part(U, j, units) for j in range(3))
        if rec_bias is not None:
            rz, rr, rh = (r + _part(rec_bias, j, units) for j, r in enumerate((rz, rr, rh)))
        z = recurrent_activation(xz + rz)
        r = recurrent_activation(xr + rr)
        cand = activation(xh + r * rh)
    else:
        z = recurrent_activation(xz + hz @ _part(U, 0, units))
        r = recurrent_activation(xr + hr @ _part(U, 1, units))
        cand = activation(xh + (r * hh_in) @ _part(U, 2, units))
    return z * h + (1.0 - z) * cand


class ForgetBiasInit(initializers.Initializer):
    """Keras' unit_forget_bias: the forget gate's bias starts at one."""

    def __init__(self, base, units):
        self.base, self.units = base, units

    def __call__(self, shape, dtype="float32"):
        u = self.units
        b = np.asarray(self.base((4 * u,), dtype), dtype).copy()
        b[u:2 * u] = 1.0
        return b


GATED_OPTIONS = ("activation", "use_bias", "kernel_initializer", "recurrent_initializer",
                 "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
                 "bias_regularizer", "kernel_constraint", "recurrent_constraint",
                 "bias_constraint", "dropout", "recurrent_dropout", "seed")
_OPTION_KINDS = (("activation", activations), ("_initializer", initializers),
                 ("_regularizer", regularizers), ("_constraint", constraints))


def set_cell_options(cell, options):
    """Keras' cell options on `cell`: activations, initializers, regularizers and
    constraints resolved from names or configs, dropout rates clipped to [0, 1] as Keras
    does, and the SeedGenerator the dropout masks are drawn from."""
    from ..random import SeedGenerator
    for key, value in options.items():
        module = next((m for suffix, m in _OPTION_KINDS if key.endswith(suffix)), None)
        if module is not None:
            value = module.get(value)
        elif key in ("dropout", "recurrent_dropout"):
            value = min(1.0, max(0.0, float(value)))
        setattr(cell, key, value)
    cell.seed_generator = SeedGenerator(options.get("seed"))


def cell_options_config(cell, keys) -> dict:
    """The config entries of the options `keys` of `cell` (objects serialized)."""
    out = {}
    for key in keys:
        value = getattr(cell, key)
        module = next((m for suffix, m in _OPTION_KINDS if key.endswith(suffix)), None)
        out[key] = module.serialize(value) if module is not None else value
    return out


class DropoutRNNCell:
    """Keras' dropout mixin of cells: `dropout`, `recurrent_dropout` and a
    `seed_generator`; the masks of a sequence are drawn by `_draw_dropout_masks`
    before the loop and read in `call` as `_dropout_mask` / `_recurrent_dropout_mask`
    (a stack of `dropout_mask_count` masks, or one)."""

    _dropout_mask = None
    _recurrent_dropout_mask = None
    # Keras' cells output their new first state (h): the loop need not keep outputs.
    outputs_first_state = False

    def _mask_count(self):
        return getattr(self, "dropout_mask_count", None)

    def _draw_dropout_masks(self, batch, feature_shape):
        from .. import random
        out = []
        n = self._mask_count()
        lead = (n,) if n else ()
        for attr, rate, dims in (("_dropout_mask", self.dropout, feature_shape),
                                 ("_recurrent_dropout_mask", self.recurrent_dropout,
                                  self._recurrent_mask_dims())):
            if 0.0 < rate < 1.0:
                from ..tracing import current
                ones = F.broadcast_to(F.lift(current().graph, 1.0), (*lead, batch, *dims))
                out.append((self, attr, random.dropout(ones, rate, seed=self.seed_generator)))
        return out

    def _recurrent_mask_dims(self):
        """The shape (without batch) of the state the recurrent masks multiply."""
        s = self.state_size
        return (int(s if isinstance(s, (int, np.integer)) else s[0]),)

    def get_dropout_mask(self, step_input):
        return self._dropout_mask

    def get_recurrent_dropout_mask(self, step_input):
        return self._recurrent_dropout_mask

    def reset_dropout_mask(self):
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self):
        self._recurrent_dropout_mask = None


class _GatedCell(DropoutRNNCell, Layer):
    """The weights, options and config the three built-in cells share."""
    gates = 1
    outputs_first_state = True

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for argument `units`, expected a "
                             f"positive integer, got {units!r}.")
        super().__init__(**kwargs)
        self.units = int(units)
        set_cell_options(self, {k: v for k, v in locals().items() if k in GATED_OPTIONS})
        self.output_size = self.units

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def build(self, input_shape):
        n = self.gates * self.units
        self.kernel = self.add_weight((input_shape[-1], n), self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight((self.units, n), self.recurrent_initializer,
                                                name="recurrent_kernel",
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = self.add_weight(self._bias_shape(), self._bias_init(), name="bias",
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.built = True

    def input_bias(self):
        """The bias added to the input projection (None without bias)."""
        return self.bias.__sym__(None) if self.bias is not None else None

    def loop_consts(self):
        """What every step reads besides its inputs and states."""
        return [self.recurrent_kernel.__sym__(None)]

    def project(self, x, dm=None):
        """x (..., batch, features) @ kernel + input bias, input dropout `dm` (batch,
        features) applied, or one mask per gate (gates, batch, features)."""
        W = self.kernel.__sym__(None)
        lead, D = x.shape[:-1], x.shape[-1]
        rows = int(np.prod(lead))
        if dm is not None and dm.ndim == 3:
            xw = F.concatenate([F.reshape(x * _mask(dm, j), (rows, D)) @ _part(W, j, self.units)
                                for j in range(self.gates)], axis=1)
        else:
            xw = F.reshape(x * dm if dm is not None else x, (rows, D)) @ W
        bias = self.input_bias()
        if bias is not None:
            xw = xw + bias
        return F.reshape(xw, (*lead, W.shape[1]))

    def fused_step(self, consts, states, xw, rec_masks):
        """The new states from the projected inputs `xw` (batch, gates*units)."""
        raise NotImplementedError

    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        states = list(states) if nested else [states]
        xw = self.project(inputs, self._dropout_mask if training else None)
        new = self.fused_step(self.loop_consts(), states, xw,
                              self._recurrent_dropout_mask if training else None)
        return new[0], (new if nested else new[0])

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                **cell_options_config(self, GATED_OPTIONS)}


class SimpleRNNCell(_GatedCell):
    """output = activation(x W + b + h U)."""

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self.state_size = self.units

    def fused_step(self, consts, states, xw, rec_masks):
        (U,) = consts
        h = states[0] if rec_masks is None else states[0] * rec_masks
        out = xw + h @ U
        return [self.activation(out) if self.activation is not None else out]


class LSTMCell(_GatedCell):
    gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias=True, implementation=2, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias
        # As Keras: recurrent dropout needs the per-gate computation, and that one draws
        # a mask per gate.
        self.implementation = 1 if self.recurrent_dropout != 0.0 else implementation
        if self.implementation == 1:
            self.dropout_mask_count = 4
        self.state_size = [self.units, self.units]

    def _bias_init(self):
        if self.unit_forget_bias:
            return ForgetBiasInit(self.bias_initializer, self.units)
        return self.bias_initializer

    def fused_step(self, consts, states, xw, rec_masks):
        (U,) = consts
        h, c = states
        u = self.units
        h_new, c_new = lstm_gates([_part(xw, j, u) for j in range(4)],
                                  recurrent_products(h, U, u, 4, rec_masks), c,
                                  self.activation, self.recurrent_activation)
        return [h_new, c_new]

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activations.serialize(self.recurrent_activation),
                "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_GatedCell):
    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 reset_after=True, implementation=2, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = reset_after
        self.implementation = 1 if self.recurrent_dropout != 0.0 else implementation
        if self.implementation == 1:
            self.dropout_mask_count = 3
        self.state_size = self.units

    def _bias_shape(self):
        # reset_after keeps separate input and recurrent biases, as Keras: (2, 3*units)
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def input_bias(self):
        if self.bias is None:
            return None
        b = self.bias.__sym__(None)
        return F.reshape(F.slice_axis(b, 0, 0, 1), (3 * self.units,)) if self.reset_after else b

    def loop_consts(self):
        # reset_after: the recurrent bias joins h U inside the step
        out = [self.recurrent_kernel.__sym__(None)]
        if self.bias is not None and self.reset_after:
            out.append(F.reshape(F.slice_axis(self.bias.__sym__(None), 0, 1, 2),
                                 (3 * self.units,)))
        return out

    def fused_step(self, consts, states, xw, rec_masks):
        U = consts[0]
        rec_bias = consts[1] if len(consts) > 1 else None
        u = self.units
        return [gru_gates([_part(xw, j, u) for j in range(3)], states[0], U, rec_bias, u,
                          self.activation, self.recurrent_activation, self.reset_after,
                          rec_masks)]

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activations.serialize(self.recurrent_activation),
                "reset_after": self.reset_after}


def fused_loop_parts(cell, x, training):
    """The loop of one built-in cell over x (batch, time, features), as the RNN layers
    run it: the input projection of all the steps is one matrix product before the
    loop (time-major first: the transpose moves the features, not the gates' columns),
    the step does the recurrent product and the gates. Input dropout is applied before
    the projection, recurrent dropout in the step."""
    B, T, D = x.shape
    masks = {attr: m for _, attr, m in cell._draw_dropout_masks(B, (D,))} if training else {}
    xw = cell.project(F.transpose(x, (1, 0, 2)), masks.get("_dropout_mask"))
    consts = cell.loop_consts()
    n_fixed = len(consts)
    if masks.get("_recurrent_dropout_mask") is not None:
        consts.append(masks["_recurrent_dropout_mask"])

    def step(k, states, xs):
        new = cell.fused_step(k[:n_fixed], states, xs[0], k[n_fixed] if len(k) > n_fixed
                              else None)
        return new[0], new
    return [xw], consts, step


class StackedRNNCells(Layer):
    """Cells run one after the other in each time step: a cell's output is the next
    cell's input; the states are each cell's, in order."""

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        for cell in cells:
            if "call" not in dir(cell):
                raise ValueError(f"All cells must have a `call` method. Received cell without "
                                 f"a `call` method: {cell}")
            if "state_size" not in dir(cell):
                raise ValueError(f"All cells must have a `state_size` attribute. Received "
                                 f"cell without a `state_size`: {cell}")
        self.cells = list(cells)

    @property
    def state_size(self):
        return [c.state_size for c in self.cells]

    @property
    def output_size(self):
        last = self.cells[-1]
        if getattr(last, "output_size", None) is not None:
            return last.output_size
        s = last.state_size
        return s[0] if isinstance(s, (list, tuple)) else s

    def build(self, input_shape):
        for cell in self.cells:
            if isinstance(cell, Layer):
                cell._maybe_build(tuple(input_shape))
            dim = getattr(cell, "output_size", None)
            if dim is None:
                s = cell.state_size
                dim = s[0] if isinstance(s, (list, tuple)) else s
            input_shape = (input_shape[0], dim)
        self.built = True

    def call(self, inputs, states, training=False):
        new_states = []
        for cell, s in zip(self.cells, states):
            was_list = isinstance(s, (list, tuple))
            s = list(s) if was_list else [s]
            import inspect
            kw = {"training": training} if "training" in inspect.signature(cell.call).parameters \
                else {}
            inputs, s = cell(inputs, s, **kw)
            if isinstance(s, (list, tuple)) and len(s) == 1 and not was_list:
                s = s[0]
            new_states.append(s)
        return inputs, new_states

    def get_config(self):
        from ..saving.serialization import serialize_layer
        return {**super().get_config(),
                "cells": [serialize_layer(c, for_model=False) for c in self.cells]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving.serialization import deserialize_layer, layer_kwargs
        config = dict(config)
        cells = [deserialize_layer(c, custom_objects) if isinstance(c, dict) else c
                 for c in config.pop("cells")]
        return cls(cells, **layer_kwargs(cls, config))

    def _keras_saved_children(self):
        used, out = {}, []
        from ..saving.serialization import keras_snake_case
        for c in self.cells:
            base = keras_snake_case(type(c).__name__)
            used[base] = used.get(base, -1) + 1
            out.append((f"cells/{base}" + (f"_{used[base]}" if used[base] else ""), c))
        return out
