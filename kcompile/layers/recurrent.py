"""LSTM, GRU, SimpleRNN: Keras' recurrent layers, each holding its cell (`layer.cell`,
with Keras' weights and weight paths `lstm/lstm_cell/kernel`) and running it fused.

As in cuDNN-style implementations, the input projection x_t W + b of all time
steps is one matrix product before the loop; the scanned body does only the
recurrent product h U and the gate arithmetic (one fused kernel). Dropout masks are
drawn once per sequence, as Keras does; input dropout is applied before the
projection, recurrent dropout inside the body.
"""
from __future__ import annotations

from kcompile.ir import builder as F
from .rnn import Recurrent
from .rnn_cells import (GRUCell, LSTMCell, SimpleRNNCell, _mask, _part, gru_gates, lstm_gates,
                        recurrent_products)

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

    def _input_bias(self):
        b = self.cell.bias
        return b.__sym__(None) if b is not None else None

    def _body_consts(self):
        return [self.cell.recurrent_kernel.__sym__(None)]

    def _loop_parts(self, x, training):
        cell = self.cell
        B, T, D = x.shape
        masks = {attr: m for _, attr, m in cell._draw_dropout_masks(B, (D,))} if training \
            else {}
        dm, rm = masks.get("_dropout_mask"), masks.get("_recurrent_dropout_mask")
        # Time-major before the input projection: the transpose moves D features a
        # step, not the gates' n, and the bias joins the product as its epilogue.
        xt = F.transpose(x, (1, 0, 2))
        W = cell.kernel.__sym__(None)
        n, u = W.shape[1], cell.units
        if dm is not None and dm.ndim == 3:      # a mask per gate
            xw = F.concatenate([F.reshape(xt * _mask(dm, j), (T * B, D)) @ _part(W, j, u)
                                for j in range(cell.gates)], axis=1)
        else:
            xw = F.reshape(xt * dm if dm is not None else xt, (T * B, D)) @ W
        bias = self._input_bias()
        if bias is not None:
            xw = xw + bias
        consts = self._body_consts()
        n_fixed = len(consts)
        if rm is not None:
            consts.append(rm)

        def step(k, states, xs):
            rec_masks = k[n_fixed] if len(k) > n_fixed else None
            new = self._fused_step(k[:n_fixed], states, xs[0], rec_masks)
            return new[0], new
        return [F.reshape(xw, (T, B, n))], consts, step

    def _fused_step(self, consts, states, xw, rec_masks):
        raise NotImplementedError

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

    def _fused_step(self, consts, states, xw, rec_masks):
        (U,) = consts
        (h,) = states
        if rec_masks is not None:
            h = h * rec_masks
        return [self.cell.activation(xw + h @ U)]


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

    def _fused_step(self, consts, states, xw, rec_masks):
        (U,) = consts
        h, c = states
        u = self.cell.units
        xs = [_part(xw, j, u) for j in range(4)]
        h_new, c_new = lstm_gates(xs, recurrent_products(h, U, u, 4, rec_masks), c,
                                  self.cell.activation, self.cell.recurrent_activation)
        return [h_new, c_new]


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

    def _input_bias(self):
        return self.cell.input_bias()

    def _body_consts(self):
        rb = self.cell.recurrent_bias()
        return [self.cell.recurrent_kernel.__sym__(None)] + ([rb] if rb is not None else [])

    def _fused_step(self, consts, states, xw, rec_masks):
        U = consts[0]
        rec_bias = consts[1] if len(consts) > 1 else None
        (h,) = states
        u = self.cell.units
        xs = [_part(xw, j, u) for j in range(3)]
        return [gru_gates(xs, h, U, rec_bias, u, self.cell.activation,
                          self.cell.recurrent_activation, self.cell.reset_after, rec_masks)]
