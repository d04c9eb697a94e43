"""ConvLSTM1D and ConvLSTM2D: Keras 3's convolutional LSTMs, an RNN over a ConvLSTMCell.

The cell is an LSTM whose products are convolutions: the input's with `kernel`
(*kernel_size, channels, 4*filters) at the layer's strides, padding and dilation, the
previous output's with `recurrent_kernel` (*kernel_size, filters, 4*filters) at stride 1
with "same" padding; gates i, f, c, o in Keras' order, states images of the output's
shape. Computed channels-last (a "channels_first" step is transposed in and out).
Without dropout each step is two convolutions with all four gates' filters at once;
Keras' per-gate dropout masks (drawn once per sequence) need one per gate.
"""
from __future__ import annotations

from kcompile.ir import builder as F
from ..utils.argument_validation import (standardize_data_format, standardize_padding,
                                         standardize_tuple)
from .convolutional.base_conv import (check_input_shape, check_output_size,
                                      from_channels_last, spatial_dims, to_channels_last)
from .convolutional.conv_utils import conv_output_length, conv_padding
from .layer import Layer
from .rnn import RNN
from .rnn_cells import (GATED_OPTIONS, DropoutRNNCell, ForgetBiasInit, _mask, _part,
                        cell_options_config, lstm_gates, set_cell_options)

_CELL_ARGS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
              "activation", "recurrent_activation", "use_bias", "kernel_initializer",
              "recurrent_initializer", "bias_initializer", "unit_forget_bias",
              "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
              "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
              "recurrent_dropout", "seed")


class ConvLSTMCell(DropoutRNNCell, Layer):
    outputs_first_state = True

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if rank not in (1, 2):
            raise ValueError(f"Rank {rank} convolutions are not currently implemented. "
                             f"Received: rank={rank}")
        self.rank = rank
        self.filters = filters
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides", allow_zero=True)
        self.padding = standardize_padding(padding)
        self.data_format = standardize_data_format(data_format)
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"Specifying `strides > 1` is not compatible with "
                             f"`dilation_rate > 1`. Please provide `strides=1` or "
                             f"`dilation_rate=1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.unit_forget_bias = unit_forget_bias
        set_cell_options(self, {k: v for k, v in locals().items()
                                if k in GATED_OPTIONS + ("recurrent_activation",)})
        self.dropout_mask_count = 4
        self.state_size = -1        # as Keras: the states are images, see state_shape
        self.state_shape = None

    def output_shape_for(self, step_shape):
        """The output (= state) shape, without batch, of a step input of `step_shape`."""
        step_shape = tuple(step_shape)
        check_input_shape(self, step_shape, self.rank)
        spatial = tuple(conv_output_length(n, k, s, self.padding, d) for n, k, s, d in
                        zip(spatial_dims(step_shape, self.data_format), self.kernel_size,
                            self.strides, self.dilation_rate))
        check_output_size(self, step_shape, spatial)
        return (*spatial, self.filters) if self.data_format == "channels_last" else \
            (self.filters, *spatial)

    def build(self, input_shape):
        channels = check_input_shape(self, input_shape, self.rank)
        if None in spatial_dims(input_shape, self.data_format):
            raise ValueError(f"ConvLSTM layers only support static input shapes for the "
                             f"spatial dimension. Received invalid input shape: "
                             f"input_shape={tuple(input_shape)}")
        self.state_shape = self.output_shape_for(input_shape)
        n = 4 * self.filters
        self.kernel = self.add_weight(self.kernel_size + (channels, n), self.kernel_initializer,
                                      name="kernel", regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(self.kernel_size + (self.filters, n),
                                                self.recurrent_initializer,
                                                name="recurrent_kernel",
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        init = ForgetBiasInit(self.bias_initializer, self.filters) if self.unit_forget_bias \
            else self.bias_initializer
        self.bias = self.add_weight((n,), init, name="bias", regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.built = True

    def _recurrent_mask_dims(self):
        return self.state_shape

    def _conv(self, x, kernel, strides, padding, dilation):
        pads = [conv_padding(n, k, s, padding, d) for n, k, s, d in
                zip(x.shape[1:-1], self.kernel_size, strides, dilation)]
        return F.conv(x, kernel, strides, tuple(pads), rhs_dilation=dilation)

    def call(self, inputs, states, training=False):
        h, c = states[0], states[1]
        f, fmt = self.filters, self.data_format
        W, R = self.kernel.__sym__(None), self.recurrent_kernel.__sym__(None)
        dm = self._dropout_mask if training else None
        rm = self._recurrent_dropout_mask if training else None
        ones = (1,) * self.rank

        def input_conv(x, w):
            return self._conv(to_channels_last(x, fmt), w, self.strides, self.padding,
                              self.dilation_rate)

        def recurrent_conv(s, w):
            return self._conv(to_channels_last(s, fmt), w, ones, "same", ones)
        if dm is None:
            xz = input_conv(inputs, W)
            xs = [_part(xz, j, f) for j in range(4)]
        else:
            xs = [input_conv(inputs * _mask(dm, j), _part(W, j, f)) for j in range(4)]
        if rm is None:
            hz = recurrent_conv(h, R)
            hs = [_part(hz, j, f) for j in range(4)]
        else:
            hs = [recurrent_conv(h * _mask(rm, j), _part(R, j, f)) for j in range(4)]
        if self.bias is not None:
            b = self.bias.__sym__(None)
            xs = [x + _part(b, j, f) for j, x in enumerate(xs)]
        h_new, c_new = lstm_gates(xs, hs, to_channels_last(c, fmt), self.activation,
                                  self.recurrent_activation)
        h_new, c_new = from_channels_last(h_new, fmt), from_channels_last(c_new, fmt)
        return h_new, [h_new, c_new]

    def get_config(self):
        return {**super().get_config(), "rank": self.rank,
                **cell_options_config(self, _CELL_ARGS)}


class ConvLSTM(RNN):
    """The RNN of a ConvLSTMCell; `rank` 1 or 2 (ConvLSTM1D, ConvLSTM2D)."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, **kwargs):
        cell_args = {k: v for k, v in locals().items() if k in _CELL_ARGS}
        cell = ConvLSTMCell(rank, name="conv_lstm_cell", dtype=kwargs.get("dtype"), **cell_args)
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful,
                         activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank

    def __getattr__(self, name):
        if name in _CELL_ARGS and "cell" in vars(self):
            return getattr(self.cell, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _check_rank(self, shape):
        if len(shape) != self.rank + 3:
            raise ValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                             f"expected ndim={self.rank + 3}, found ndim={len(shape)}. Full "
                             f"shape received: {(None, *tuple(shape)[1:])}")

    @property
    def _state_shapes(self):
        return [self.cell.state_shape] * 2

    @property
    def _output_shape(self):
        return self.cell.state_shape

    def _output_state_index(self):
        return 0

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        b, t = input_shape[0], input_shape[1]
        state = self.cell.output_shape_for((b, *input_shape[2:]))
        out = (b, t, *state) if self.return_sequences else (b, *state)
        return [out, (b, *state), (b, *state)] if self.return_state else out

    def get_config(self):
        cfg = {**super().get_config()}
        cfg.pop("cell")
        cell_cfg = self.cell.get_config()
        return {**cfg, **{k: cell_cfg[k] for k in _CELL_ARGS}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return Layer.from_config.__func__(cls, config)


class ConvLSTM1D(ConvLSTM):
    """Keras' ConvLSTM1D: inputs (batch, time, steps, channels) (channels_last), an LSTM
    whose products are 1-D convolutions."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, **kwargs):
        super().__init__(1, filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, **kwargs)


class ConvLSTM2D(ConvLSTM):
    """Keras' ConvLSTM2D: inputs (batch, time, rows, cols, channels) (channels_last), an
    LSTM whose products are 2-D convolutions."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, **kwargs):
        super().__init__(2, filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, **kwargs)
