"""LSTM, GRU, SimpleRNN: Keras' recurrent layers, each holding its cell (`layer.cell`,
with Keras' weights and weight paths `lstm/lstm_cell/kernel`) and running it fused.

As in cuDNN-style implementations, the input projection x_t W + b of all time
steps is one matrix product before the loop; the scanned body does only the
recurrent product h U and the gate arithmetic (one fused kernel). Dropout masks are
drawn once per sequence, as Keras does; input dropout is applied before the
projection, recurrent dropout inside the body.
"""
from __future__ import annotations

from .rnn import Recurrent
from .rnn_cells import GRUCell, LSTMCell, SimpleRNNCell, fused_loop_parts

# Options that live on the cell; the layer reads them through (Keras' properties).
_CELL_OPTIONS = ("units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
                 "recurrent_initializer", "bias_initializer", "unit_forget_bias",
                 "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                 "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
                 "recurrent_dropout", "seed", "reset_after", "implementation", "kernel",
                 "recurrent_kernel", "bias")
_LOOP_OPTIONS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                 "zero_output_for_mask")


class _FusedRNN(Recurrent):
    cell_class: type

    def __init__(self, arguments, **kwargs):
        """`arguments`: the subclass constructor's own (its locals())."""
        arguments = {k: v for k, v in arguments.items() if k not in ("self", "kwargs",
                                                                    "__class__")}
        loop = {k: arguments.pop(k) for k in _LOOP_OPTIONS if k in arguments}
        loop.setdefault("zero_output_for_mask", kwargs.pop("zero_output_for_mask", False))
        use_cudnn = arguments.pop("use_cudnn", "auto")
        implementation = kwargs.pop("implementation", 2)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"Invalid valid received for argument `use_cudnn`. Expected one of "
                             f"{{'auto', True, False}}. Received: use_cudnn={use_cudnn}")
        super().__init__(activity_regularizer=arguments.pop("activity_regularizer", None),
                         **kwargs)
        self.use_cudnn = use_cudnn
        if self.cell_class is not SimpleRNNCell:
            arguments["implementation"] = implementation
        self.cell = self.cell_class(name=_cell_name(self.cell_class), dtype=self.dtype,
                                    trainable=self.trainable, **arguments)
        self._set_loop_options(**loop)

    def __getattr__(self, name):
        if name in _CELL_OPTIONS and "cell" in vars(self):
            return getattr(self.cell, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def _state_sizes(self):
        s = self.cell.state_size
        return list(s) if isinstance(s, list) else [s]

    @property
    def _output_size(self):
        return self.cell.units

    def _output_state_index(self):
        return 0

    def build(self, input_shape):
        self._check_rank(input_shape)
        if not self.cell.built:
            self.cell._maybe_build((input_shape[0], input_shape[-1]))
            self._nest_cell_paths()
        self._build_states(input_shape)
        self.built = True

    def _check_rank(self, shape):
        if len(shape) != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r} expects inputs of shape "
                             f"(batch, timesteps, features), received input_shape="
                             f"{(None, *tuple(shape)[1:])}")

    def _keras_saved_children(self):
        return [("cell", self.cell)]

    def _loop_parts(self, x, training):
        return fused_loop_parts(self.cell, x, training)

    def get_config(self):
        cell_cfg = self.cell.get_config()
        for key in ("name", "trainable", "dtype", "implementation"):
            cell_cfg.pop(key, None)
        return {**super().get_config(), **self._loop_config(), **cell_cfg}


def _cell_name(cls):
    from .layer import snake_case
    return snake_case(cls.__name__)


class SimpleRNN(_FusedRNN):
    cell_class = SimpleRNNCell

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, seed=None, **kwargs):
        super().__init__(dict(locals()), **kwargs)


class LSTM(_FusedRNN):
    cell_class = LSTMCell

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 use_cudnn="auto", **kwargs):
        super().__init__(dict(locals()), **kwargs)


class GRU(_FusedRNN):
    cell_class = GRUCell

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, reset_after=True,
                 use_cudnn="auto", **kwargs):
        super().__init__(dict(locals()), **kwargs)
