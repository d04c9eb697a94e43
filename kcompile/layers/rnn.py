"""The recurrent loop shared by every recurrent layer, and Keras' `RNN(cell)`.

`Recurrent` runs a step function over the time axis as one `scan` (its body traced
once, whatever the sequence length) and does what Keras' RNN layer does around it:
zero or given initial states, `stateful` states kept as model state across batches
(`reset_states()` zeroes them), masked steps carrying the states through (the output
too, or zeros with `zero_output_for_mask`), `go_backwards`, `return_sequences`,
`return_state`. Subclasses say what a step is: `RNN` calls a cell's
`call(inputs, states)` (Keras' built-in cells or a user's), LSTM/GRU/SimpleRNN
(recurrent.py) run a fused step after one input projection for all time steps.

A cell's call is traced inside the loop body, a graph of its own: the cell's
variables (and its sublayers') enter the body as the loop's constants, so layer code
written for one time step reads them as it would anywhere else.
"""
from __future__ import annotations

import contextlib

import numpy as np

from kcompile.ir import builder as F
from ..tracing import current
from .layer import Layer


class Recurrent(Layer):
    """The loop and Keras' RNN options; subclasses give `state_size`, `output_size`
    and `_loop_parts`."""

    def _set_loop_options(self, return_sequences=False, return_state=False, go_backwards=False,
                          stateful=False, unroll=False, zero_output_for_mask=False):
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)     # a scan computes what unrolling would
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True
        self.states = None             # the stateful layer's state variables

    def _loop_config(self):
        return {"return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "stateful": self.stateful,
                "unroll": self.unroll, "zero_output_for_mask": self.zero_output_for_mask}

    # -- what a subclass provides ---------------------------------------------------
    @property
    def _state_sizes(self) -> list[int]:
        raise NotImplementedError

    @property
    def _output_size(self) -> int:
        raise NotImplementedError

    @property
    def _state_shapes(self) -> list[tuple]:
        """Each state's shape without the batch axis (a ConvLSTM's are images)."""
        return [(n,) for n in self._state_sizes]

    @property
    def _output_shape(self) -> tuple:
        return (self._output_size,)

    def _output_state_index(self):
        """Which new state each step outputs, if it outputs one (Keras' own cells)."""
        return None

    def _prev_output(self, states):
        """What a masked step outputs (Keras: the first state, taken as the previous
        output), from the step's incoming states (flat)."""
        return states[0]

    def _loop_parts(self, x, training):
        """(seqs (T, B, ...) time-major, consts, step(consts, states, seq_items) ->
        (output, new_states)) for the inputs x (B, T, ...)."""
        raise NotImplementedError

    # -- states ---------------------------------------------------------------------------
    def _build_states(self, input_shape, when_called=False):
        """A stateful layer's state variables, for the batch size of `input_shape`. A
        Sequential model builds its layers for a None batch: then the first compiled
        call's batch size is the states' (Keras would need it known at build)."""
        if not self.stateful or self.states is not None:
            return
        batch = input_shape[0]
        if batch is None:
            if not when_called:
                return
            raise ValueError(f"When using `stateful=True` in a RNN, the batch size must be "
                             f"static. Found dynamic batch size: sequence.shape="
                             f"{tuple(input_shape)}")
        self.states = [self._add_state_variable(f"rnn_state_{i}", (int(batch), *shape),
                                                "float32")
                       for i, shape in enumerate(self._state_shapes)]

    def reset_states(self, states=None):
        """Zero the states of a stateful layer (or set them to `states`, as Keras 2 did)."""
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        if self.states is None:
            return
        values = states if states is not None else [None] * len(self.states)
        values = values if isinstance(values, (list, tuple)) else [values]
        if len(values) != len(self.states):
            raise ValueError(f"Layer {self.name!r} expects {len(self.states)} state(s), but it "
                             f"received {len(values)} state value(s)")
        for var, value in zip(self.states, values):
            var.assign(np.zeros(var.shape, np.float32) if value is None
                       else np.asarray(value, np.float32))

    def reset_state(self):
        self.reset_states()

    def _initial_state(self, initial_state, x):
        B = x.shape[0]
        shapes = self._state_shapes
        if initial_state is None:
            if self.stateful and self.states is not None and not current().shape_only:
                if self.states[0].shape[0] != B:
                    raise ValueError(f"If an RNN is stateful, the batch size of the input "
                                     f"sequences must be the same as the batch size of the "
                                     f"initial state. \n- Expected batch size: "
                                     f"{self.states[0].shape[0]}\n- Received batch size: {B}")
                trace = current()
                return [trace.read(v) for v in self.states]
            initial_state = self._cell_initial_state(B)
            if initial_state is None:
                return [F.broadcast_to(F.lift(x.g, 0.0), (B, *shape)) for shape in shapes]
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else \
            [initial_state]
        if len(states) != len(shapes):
            raise ValueError(f"Layer {self.name!r} expects {len(shapes)} state(s) in "
                             f"`initial_state`, but it received {len(states)} initial state(s)")
        out = []
        for s, shape in zip(states, shapes):
            s = s.__sym__(x.g) if hasattr(s, "__sym__") else s
            if not isinstance(s, F.Sym):
                s = F.lift(x.g, np.asarray(s, np.float32))
            if tuple(s.shape) != (B, *shape):
                raise ValueError(f"Layer {self.name!r}: an initial state has shape "
                                 f"{(None, *s.shape[1:])}, expected {(None, *shape)}")
            out.append(F.cast(s, "float32") if s.dtype != "float32" else s)
        return out

    def _nest_cell_paths(self):
        """The cell's variables under this layer's name (Keras' paths: lstm/lstm_cell/kernel),
        so that two layers with cells of one name keep distinct variables."""
        cell = getattr(self, "cell", None)
        if isinstance(cell, Layer):
            for v in cell.variables:
                if not v.path.startswith(self.name + "/"):
                    v.path = f"{self.name}/{v.path}"

    def _cell_initial_state(self, batch_size):
        """The states a user's cell starts from (its `get_initial_state`), or None."""
        return None

    def get_initial_state(self, batch_size):
        """Keras' zero states for a batch of `batch_size` (numpy arrays)."""
        return [np.zeros((batch_size, *shape), np.float32) for shape in self._state_shapes]

    # -- the loop -----------------------------------------------------------------------
    def build(self, input_shape):
        self._check_rank(input_shape)
        self._build_states(input_shape)
        self.built = True

    def _check_rank(self, shape):
        if len(shape) < 3:
            raise ValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                             f"expected ndim=3, found ndim={len(shape)}. Full shape received: "
                             f"{(None, *tuple(shape)[1:])}")

    def call(self, sequences, initial_state=None, mask=None, training=None):
        x = sequences
        self._check_rank(x.shape)
        trace = current()
        if self.stateful and self.states is None and not trace.shape_only:
            self._build_states(x.shape, when_called=True)
        if mask is None:
            mask = trace.masks.get(x.id)
        T = x.shape[1]
        init = self._initial_state(initial_state, x)
        seqs, consts, cell_step = self._loop_parts(x, training)
        n_seq = len(seqs)
        if mask is not None:
            m = F.cast(mask, "float32") if mask.dtype != "float32" else mask
            seqs = seqs + [F.reshape(F.transpose(m, (1, 0)), (T, x.shape[0], 1))]
        if self.go_backwards:
            order = F.lift(x.g, np.arange(T - 1, -1, -1, dtype=np.int32), "int32")
            seqs = [F.gather(s, order) for s in seqs]
        zero_out = self.zero_output_for_mask

        def step(k, carry, xs):
            out, new = cell_step(k, list(carry), xs[:n_seq])
            new = list(new)
            if len(new) != len(carry):
                raise ValueError(f"Layer {self.name!r}: the cell returned {len(new)} state(s), "
                                 f"its state_size lists {len(carry)}")
            if mask is not None:       # masked steps carry the states through
                keep = xs[n_seq]
                new = [F.select(_rank_of(keep, a), a, b) for a, b in zip(new, carry)]
                keep = _rank_of(keep, out)
                out = out * keep if zero_out else F.select(keep, out, self._prev_output(carry))
            return new, ([out] if keep_outputs else [])

        # The last output is the first state's final value when the step outputs that
        # state: then the loop keeps no (T, batch, ...) outputs.
        out_state = self._output_state_index()
        keep_outputs = self.return_sequences or out_state is None or \
            (mask is not None and zero_out)
        finals, ys = F.scan(step, consts, init, seqs)
        if not keep_outputs:
            out = finals[out_state]
        elif self.return_sequences:
            ys = ys[0]
            # After go_backwards the outputs stay in processing order, as Keras returns them.
            out = F.transpose(ys, (1, 0, *range(2, ys.ndim)))
            if mask is not None:
                trace.masks[out.id] = mask
        else:
            ys = ys[0]
            out = F.reshape(F.slice_axis(ys, 0, T - 1, T), ys.shape[1:])
        if self.stateful and self.states is not None and not trace.shape_only:
            for var, value in zip(self.states, finals):
                self.add_update(var, value)
        if self.return_state:
            return [out, *finals]
        return out

    def compute_mask(self, inputs, previous_mask=None):
        out = previous_mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * len(self._state_shapes)
        return out

    def compute_output_shape(self, input_shape):
        b, t = input_shape[0], input_shape[1]
        out = (b, t, *self._output_shape) if self.return_sequences else \
            (b, *self._output_shape)
        if self.return_state:
            return [out] + [(b, *shape) for shape in self._state_shapes]
        return out


@contextlib.contextmanager
def body_scope(trace, graph, variables, consts):
    """While a loop body is traced: layer code reads `variables` as the body's `consts`,
    new values land in the body `graph`, and masks or assignments of the outer graph are
    out of sight."""
    saved = trace.graph, trace._leaves, trace._assigned, trace.masks, trace.call_depth
    n_losses, n_updates = len(trace.losses), len(trace.updates)
    trace.graph = graph
    trace._leaves = {id(v): k for v, k in zip(variables, consts)}
    trace._assigned, trace.masks = {}, {}
    try:
        yield
        # Values of one step cannot leave the loop as losses or variable updates.
        if len(trace.losses) != n_losses:
            raise ValueError("An RNN cell's call() added a loss (add_loss or an activity "
                             "regularizer): a step's values cannot be losses; add the loss "
                             "on the RNN layer's outputs instead")
        if len(trace.updates) != n_updates:
            raise ValueError("An RNN cell's call() assigned a variable (or drew random "
                             "numbers from a SeedGenerator): a step's values cannot update "
                             "variables; draw random masks once per sequence, as "
                             "DropoutRNNCell does")
    finally:
        trace.graph, trace._leaves, trace._assigned, trace.masks, trace.call_depth = saved


def cell_variables(cell) -> list:
    """The variables a cell's step may read: its weights and its sublayers'."""
    return list(cell.weights) if isinstance(cell, Layer) else []


class RNN(Recurrent):
    """Keras' `RNN(cell)`: `cell` is a layer with `state_size` (an int or a list of
    ints, one per state) and `call(inputs, states)` returning `(output, new_states)`;
    a list of cells is a StackedRNNCells."""

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        from .rnn_cells import StackedRNNCells
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        if "call" not in dir(cell):
            raise ValueError(f"Argument `cell` should have a `call` method. Received: cell={cell}")
        if "state_size" not in dir(cell):
            raise ValueError("The RNN cell should have a `state_size` attribute (single integer "
                             "or list of integers, one integer per RNN state). "
                             f"Received: cell={cell}")
        super().__init__(**kwargs)
        self.cell = cell
        self._set_loop_options(return_sequences, return_state, go_backwards, stateful, unroll,
                               zero_output_for_mask)
        state_size = getattr(cell, "state_size", None)
        if state_size is None:
            raise ValueError("state_size must be specified as property on the RNN cell.")
        if not isinstance(state_size, (list, tuple, int, np.integer)):
            raise ValueError("state_size must be an integer, or a list/tuple of integers "
                             "(one for each state tensor).")
        self.single_state = isinstance(state_size, (int, np.integer))

    @property
    def state_size(self):
        s = self.cell.state_size
        return [int(s)] if isinstance(s, (int, np.integer)) else list(s)

    @property
    def _state_sizes(self):
        return _flat_sizes(self.cell.state_size)

    @property
    def _output_size(self):
        size = getattr(self.cell, "output_size", None)
        if size is None:
            size = self._state_sizes[0]
        if not isinstance(size, (int, np.integer)):
            raise ValueError("output_size must be an integer.")
        return int(size)

    def _cell_initial_state(self, batch_size):
        fn = getattr(self.cell, "get_initial_state", None)
        if fn is None or type(self.cell).__module__.startswith("kcompile."):
            return None
        return _flatten_states(fn(batch_size=batch_size))

    def _output_state_index(self):
        from .rnn_cells import StackedRNNCells
        if not isinstance(self.cell, StackedRNNCells):
            return 0 if getattr(self.cell, "outputs_first_state", False) else None
        last = self.cell.cells[-1]
        if not getattr(last, "outputs_first_state", False):
            return None
        return len(_flat_sizes([c.state_size for c in self.cell.cells[:-1]]))

    def _prev_output(self, states):
        # Keras takes states[0], and when that is a list (a stacked cell's states that are
        # a list or come from its get_initial_state, as Keras' own cells' do), the last
        # cell's first state.
        from .rnn_cells import StackedRNNCells
        if not isinstance(self.cell, StackedRNNCells):
            return states[0]
        first = self.cell.cells[0]
        if isinstance(first.state_size, (list, tuple)) or hasattr(first, "get_initial_state") \
                or getattr(first, "outputs_first_state", False):
            return states[len(_flat_sizes(self.cell.state_size[:-1]))]
        return states[0]

    def build(self, input_shape):
        self._check_rank(input_shape)
        step_shape = (input_shape[0], *tuple(input_shape)[2:])
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell._maybe_build(step_shape)
            self._nest_cell_paths()
        self._build_states(input_shape)
        self.built = True

    def _loop_parts(self, x, training):
        from .rnn_cells import GRUCell, LSTMCell, SimpleRNNCell, fused_loop_parts
        cell = self.cell
        if type(cell) in (LSTMCell, GRUCell, SimpleRNNCell) and x.ndim == 3:
            return fused_loop_parts(cell, x, training)      # as the LSTM/GRU layers run
        trace = current()
        B = x.shape[0]
        masks = prepare_dropout(cell, B, x.shape[2:], training)
        variables = cell_variables(cell)
        consts = [trace.read(v) for v in variables] + [m for _, _, m in masks]
        seq = F.transpose(x, (1, 0, *range(2, x.ndim)))
        nested = _nested_sizes(cell.state_size)
        kw = {"training": training} if _call_takes(cell, "training") else {}

        def step(k, states, xs):
            nv = len(variables)
            for (owner, attr, _), m in zip(masks, k[nv:]):
                setattr(owner, attr, m)
            try:
                with body_scope(trace, xs[0].g, variables, k[:nv]):
                    out, new = cell(xs[0], _pack_states(states, nested), **kw)
            finally:
                for owner, attr, _ in masks:
                    setattr(owner, attr, None)
            new = _flatten_states(new)
            return _as_float(out), [_as_float(s) for s in new]
        return [seq], consts, step

    def get_config(self):
        from ..saving.serialization import serialize_layer
        cfg = {**super().get_config(), **self._loop_config()}
        cfg["cell"] = serialize_layer(self.cell, for_model=False)
        return cfg

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving.serialization import deserialize_layer, layer_kwargs
        config = dict(config)
        cell = config.pop("cell")
        if isinstance(cell, dict):
            cell = deserialize_layer(cell, custom_objects)
        return cls(cell, **layer_kwargs(cls, config))

    def _keras_saved_children(self):
        return [("cell", self.cell)] if isinstance(self.cell, Layer) else []


# -- helpers --------------------------------------------------------------------------------
def prepare_dropout(cell, batch, feature_shape, training):
    """The dropout masks of `cell` (and of the cells it stacks) for this sequence, drawn
    once outside the loop as Keras draws them: [(cell, attribute, mask)]."""
    from .rnn_cells import StackedRNNCells
    if isinstance(cell, StackedRNNCells):
        out, dim = [], None
        for c in cell.cells:
            shape = feature_shape if dim is None else (dim,)
            out += prepare_dropout(c, batch, shape, training)
            dim = getattr(c, "output_size", None) or _flat_sizes(c.state_size)[0]
        return out
    draw = getattr(cell, "_draw_dropout_masks", None)
    if draw is None or not training:
        return []
    return draw(batch, tuple(feature_shape))


def _rank_of(keep, like):
    """The (batch, 1) step mask shaped to broadcast against `like`."""
    return keep if like.ndim == 2 else F.reshape(keep, (keep.shape[0],) + (1,) * (like.ndim - 1))


def _flat_sizes(state_size) -> list[int]:
    if isinstance(state_size, (int, np.integer)):
        return [int(state_size)]
    out = []
    for s in state_size:
        out += _flat_sizes(s)
    return out


def _nested_sizes(state_size):
    """None for a single int state, else the list structure (ints or nested lists)."""
    if isinstance(state_size, (int, np.integer)):
        return None
    return [s if isinstance(s, (int, np.integer)) else list(s) for s in state_size]


def _pack_states(flat, nested):
    if nested is None:         # as Keras: a cell always receives a list of states
        return list(flat)
    out, i = [], 0
    for s in nested:
        n = len(_flat_sizes(s))
        out.append(flat[i] if isinstance(s, (int, np.integer)) else list(flat[i:i + n]))
        i += n
    return out


def _flatten_states(states):
    if isinstance(states, (list, tuple)):
        out = []
        for s in states:
            out += _flatten_states(s)
        return out
    return [states]


def _as_float(s):
    s = s.__sym__(None) if hasattr(s, "__sym__") else s
    return F.cast(s, "float32") if s.dtype != "float32" else s


def _call_takes(layer, name):
    import inspect
    try:
        return name in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False
