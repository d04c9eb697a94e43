"""Recurrent layers on the scan primitive: LSTM, GRU, SimpleRNN.

As in cuDNN-style implementations, the input projection x_t W + b of all time
steps is one matrix product before the loop; the scanned body does only the
recurrent product h U and the gate arithmetic (one fused kernel). Weights use
Keras' layout, so they move between kcompile and Keras with set_weights.
"""
from __future__ import annotations

import math

import numpy as np

from kcompile.ir import builder as F
from .. import activations, constraints, initializers, regularizers
from ..tracing import current
from .layer import Layer


class _RNN(Layer):
    gates = 1            # blocks of `units` in the kernel's columns
    state_count = 1

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"Received an invalid value for argument `units`, expected a "
                             f"positive integer, got {units!r}.")
        if dropout or recurrent_dropout:
            raise NotImplementedError(f"{type(self).__name__}: dropout/recurrent_dropout inside "
                                      f"the cell are not supported; use a Dropout layer")
        if stateful:
            raise NotImplementedError(f"{type(self).__name__}: stateful=True is not supported")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.return_sequences, self.return_state = return_sequences, return_state
        self.go_backwards = go_backwards
        self.activity_regularizer = regularizers.get(activity_regularizer)

    # -- weights ---------------------------------------------------------------
    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r} expects inputs of shape "
                             f"(batch, timesteps, features), received input_shape={input_shape}")
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

    # -- the loop --------------------------------------------------------------------
    def _input_bias(self):
        return self.bias

    def _recurrent_consts(self):
        return [self.recurrent_kernel]

    def cell(self, consts, states, xw):
        raise NotImplementedError

    def call(self, inputs, training=None, initial_state=None):
        x = inputs
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r} expects inputs of shape "
                             f"(batch, timesteps, features), received {(None, *x.shape[1:])}")
        trace = current()
        mask = trace.masks.get(x.id)
        B, T, D = x.shape
        n = self.gates * self.units
        # Time-major before the input projection: the transpose moves D features a
        # step, not the gates' n, and the bias joins the product as its epilogue.
        xt = F.reshape(F.transpose(x, (1, 0, 2)), (T * B, D))
        xw = xt @ self.kernel
        bias = self._input_bias()
        if bias is not None:
            xw = xw + bias
        seqs = [F.reshape(xw, (T, B, n))]                        # (T, B, n)
        if mask is not None:
            seqs.append(F.reshape(F.transpose(F.cast(mask, "float32"), (1, 0)), (T, B, 1)))
        if self.go_backwards:
            order = F.lift(x.g, np.arange(T - 1, -1, -1, dtype=np.int32), "int32")
            seqs = [F.gather(s, order) for s in seqs]
        consts = [F.lift(x.g, c) if not hasattr(c, "__sym__") else c.__sym__(x.g)
                  for c in self._recurrent_consts()]
        init = self._initial_state(initial_state, x)

        def step(k, carry, xs):
            new = self.cell(k, carry, xs[0])
            if mask is not None:       # masked steps carry state (and output) through
                m = xs[1]
                new = [F.select(m, a, b) for a, b in zip(new, carry)]
            return new, [new[0]]
        finals, (ys,) = F.scan(step, consts, init, seqs)
        if self.return_sequences:
            # With go_backwards the steps ran on the reversed sequence: Keras returns
            # the outputs in that processing order, as ys already are.
            out = F.transpose(ys, (1, 0, 2))
            if mask is not None:
                trace.masks[out.id] = mask
        else:
            out = finals[0]
        if self.return_state:
            return [out, *finals]
        return out

    def _initial_state(self, initial_state, x):
        """Zeros, or the states given as `initial_state` (Keras: a list of one (batch,
        units) tensor per state: [h] or, for an LSTM, [h, c])."""
        B = x.shape[0]
        if initial_state is None:
            return [F.broadcast_to(F.lift(x.g, 0.0), (B, self.units))
                    for _ in range(self.state_count)]
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else \
            [initial_state]
        if len(states) != self.state_count:
            raise ValueError(f"Layer {self.name!r} expects {self.state_count} state(s) in "
                             f"`initial_state`, but it received {len(states)} initial state(s)")
        for s in states:
            if tuple(s.shape) != (B, self.units):
                raise ValueError(f"Layer {self.name!r}: an initial state has shape "
                                 f"{(None, *s.shape[1:])}, expected {(None, self.units)}")
        return [F.cast(s, "float32") if s.dtype != "float32" else s for s in states]

    def compute_output_shape(self, input_shape):
        out = (input_shape[0], input_shape[1], self.units) if self.return_sequences else \
            (input_shape[0], self.units)
        if self.return_state:
            return [out] + [(input_shape[0], self.units)] * self.state_count
        return out

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint),
                "dropout": 0.0, "recurrent_dropout": 0.0, "stateful": False, "unroll": False,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards}


class SimpleRNN(_RNN):
    def cell(self, k, carry, xw):
        (U,) = k
        (h,) = carry
        return [self.activation(xw + h @ U)]


class _ForgetBiasInit(initializers.Initializer):
    """Keras' unit_forget_bias: the forget gate's bias starts at one."""

    def __init__(self, base, units):
        self.base, self.units = base, units

    def __call__(self, shape, dtype="float32"):
        u = self.units
        b = np.asarray(self.base((4 * u,), dtype), dtype)
        b[u:2 * u] = 1.0
        return b


class LSTM(_RNN):
    gates = 4
    state_count = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias=True, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias

    def _bias_init(self):
        if self.unit_forget_bias:
            return _ForgetBiasInit(self.bias_initializer, self.units)
        return self.bias_initializer

    def cell(self, k, carry, xw):
        (U,) = k
        h, c = carry
        u = self.units
        z = xw + h @ U
        # Keras' gate order: input, forget, cell, output.
        i = self.recurrent_activation(F.slice_axis(z, 1, 0, u))
        f = self.recurrent_activation(F.slice_axis(z, 1, u, 2 * u))
        g = self.activation(F.slice_axis(z, 1, 2 * u, 3 * u))
        o = self.recurrent_activation(F.slice_axis(z, 1, 3 * u, 4 * u))
        c_new = f * c + i * g
        return [o * self.activation(c_new), c_new]

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activations.serialize(self.recurrent_activation),
                "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 reset_after=True, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = reset_after

    def _bias_shape(self):
        # reset_after keeps separate input and recurrent biases, as Keras (2, 3*units)
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        if self.bias is None:
            return None
        return F.slice_axis(self.bias.__sym__(None), 0, 0, 1) if self.reset_after else self.bias

    def _recurrent_consts(self):
        if self.bias is not None and self.reset_after:
            return [self.recurrent_kernel, self.bias]
        return [self.recurrent_kernel]

    def cell(self, k, carry, xw):
        (h,) = carry
        u = self.units
        U = k[0]
        inner = h @ U
        if len(k) > 1:
            inner = inner + F.reshape(F.slice_axis(k[1], 0, 1, 2), (3 * u,))
        xz, xr, xh = (F.slice_axis(xw, 1, j * u, (j + 1) * u) for j in range(3))
        if self.reset_after:
            rz, rr, rh = (F.slice_axis(inner, 1, j * u, (j + 1) * u) for j in range(3))
            z = self.recurrent_activation(xz + rz)
            r = self.recurrent_activation(xr + rr)
            hh = self.activation(xh + r * rh)
        else:
            Uz, Ur, Uh = (F.slice_axis(U, 1, j * u, (j + 1) * u) for j in range(3))
            z = self.recurrent_activation(xz + h @ Uz)
            r = self.recurrent_activation(xr + h @ Ur)
            hh = self.activation(xh + (r * h) @ Uh)
        return [z * h + (1.0 - z) * hh]

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activations.serialize(self.recurrent_activation),
                "reset_after": self.reset_after}
