"""Shared by the recurrent tests: numpy references of Keras' cells and loops, and two
user-written cells (Keras' MinimalRNNCell example and one with two states and a Dense
sublayer). One module, imported by the test files, so the cells are registered once."""
from __future__ import annotations

import numpy as np

from kcompile import layers, ops
from kcompile.saving import register_keras_serializable

N_STATES = {"lstm": 2, "gru": 1, "simple_rnn": 1}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_step(kind, x, states, W, Uk, b, reset_after=True):
    """One Keras cell step in float64: (output, new states)."""
    u = Uk.shape[0]
    if kind == "lstm":
        h, c = states
        z = x @ W + h @ Uk + b
        i, f, g, o = (z[:, j * u:(j + 1) * u] for j in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, [h, c]
    if kind == "gru":
        (h,) = states
        if reset_after:
            mx, mi = x @ W + b[0], h @ Uk + b[1]
            z = sigmoid(mx[:, :u] + mi[:, :u])
            r = sigmoid(mx[:, u:2 * u] + mi[:, u:2 * u])
            hh = np.tanh(mx[:, 2 * u:] + r * mi[:, 2 * u:])
        else:
            mx = x @ W + b
            z = sigmoid(mx[:, :u] + h @ Uk[:, :u])
            r = sigmoid(mx[:, u:2 * u] + h @ Uk[:, u:2 * u])
            hh = np.tanh(mx[:, 2 * u:] + (r * h) @ Uk[:, 2 * u:])
        h = z * h + (1 - z) * hh
        return h, [h]
    (h,) = states
    h = np.tanh(x @ W + h @ Uk + b)
    return h, [h]


def np_loop(step, x, states, go_backwards=False):
    """Outputs (B, T, n) in processing order and the final states."""
    outs = []
    for t in (range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])):
        y, states = step(x[:, t], states)
        outs.append(y)
    return np.stack(outs, 1), states


def cell_weights(kind, d, u, rng, reset_after=True):
    g = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
    b = (2, 3 * u) if kind == "gru" and reset_after else (g * u,)
    return [rng.normal(0, 0.5, s).astype(np.float32) for s in ((d, g * u), (u, g * u), b)]


@register_keras_serializable(package="rnn_tests")
class MinimalRNNCell(layers.Layer):
    """Keras' own example of a cell (keras.layers.RNN's docstring)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                      initializer="uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                initializer="uniform", name="recurrent_kernel")

    def call(self, inputs, states):
        prev_output = states[0]
        h = ops.matmul(inputs, self.kernel)
        output = h + ops.matmul(prev_output, self.recurrent_kernel)
        return output, [output]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@register_keras_serializable(package="rnn_tests")
class LeakyMemoryCell(layers.Layer):
    """Two states (a fast and a slow one), a Dense sublayer and a training argument."""

    def __init__(self, units, leak=0.7, **kwargs):
        super().__init__(**kwargs)
        self.units, self.leak = units, leak
        self.state_size = [units, units]
        self.output_size = units
        self.proj = layers.Dense(units, activation="tanh")

    def build(self, input_shape):
        self.proj.build((input_shape[0], input_shape[-1] + self.units))
        self.gain = self.add_weight(shape=(self.units,), initializer="ones", name="gain")

    def call(self, inputs, states, training=False):
        fast, slow = states
        fast = self.proj(ops.concatenate([inputs, fast], axis=-1))
        slow = self.leak * slow + (1.0 - self.leak) * fast * self.gain
        return fast + slow, [fast, slow]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "leak": self.leak}


def np_minimal(x, K, R):
    return np_loop(lambda xt, s: ((lambda o: (o, [o]))(xt @ K + s[0] @ R)), x,
                   [np.zeros((x.shape[0], K.shape[1]))])


def np_leaky(x, Wd, bd, gain, leak):
    def step(xt, s):
        fast, slow = s
        fast = np.tanh(np.concatenate([xt, fast], -1) @ Wd + bd)
        slow = leak * slow + (1 - leak) * fast * gain
        return fast + slow, [fast, slow]
    u = Wd.shape[1]
    return np_loop(step, x, [np.zeros((x.shape[0], u))] * 2)
