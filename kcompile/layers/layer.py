"""The Layer base class: weights, building from an input shape, calling on traced values."""
from __future__ import annotations

import inspect
import re

import numpy as np

from kcompile.ir.builder import Sym
from .. import initializers
from . import tracking
from ..tracing import Trace, tracing
from ..variables import Variable

_name_counts: dict[str, int] = {}


def unique_name(base: str) -> str:
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def snake_case(name: str) -> str:
    """Keras' to_snake_case: LSTM -> lstm, SimpleRNN -> simple_rnn, BatchNormalization ->
    batch_normalization."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_BASE_KWARGS = ("input_shape", "input_dim", "batch_input_shape", "batch_size", "dtype",
                "name", "trainable", "input_length", "weights", "activity_regularizer")


class Layer:
    """Keras' Layer: weights made in `build(input_shape)` by `add_weight`, the computation
    in `call(inputs, training=None, mask=None)`, traced into the model's graph.

    Layers assigned as attributes (also in lists and dicts) are sublayers: their weights
    follow the layer's own (kcompile/layers/tracking.py). Called on arrays, a layer
    computes now and returns arrays (kcompile/eager_calls.py)."""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._auto_config = tracking.auto_config(cls, args, kwargs)
        return obj

    def __init__(self, *, name=None, trainable=True, dtype=None, activity_regularizer=None,
                 **kwargs):
        unknown = set(kwargs) - set(_BASE_KWARGS)
        if unknown:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                            f"{sorted(unknown)}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.trainable = trainable
        self.dtype = dtype or "float32"
        self.built = False
        self._weights: list[Variable] = []
        self._state_vars: list[Variable] = []     # RNG counters: state, never weights
        self._last_losses: list = []               # add_loss values of the last eager call
        if activity_regularizer is not None or not hasattr(self, "activity_regularizer"):
            from .. import regularizers
            self.activity_regularizer = regularizers.get(activity_regularizer)
        shape = kwargs.get("input_shape")
        if kwargs.get("batch_input_shape") is not None:
            shape = tuple(kwargs["batch_input_shape"])[1:]
        if kwargs.get("input_dim") is not None:
            shape = (kwargs["input_dim"],)
        self._input_shape_arg = tuple(shape) if shape is not None else None
        # A first layer's batch size (`batch_size=`, `batch_input_shape=`): a stateful
        # RNN's states need it.
        self._batch_size_arg = kwargs.get("batch_size") if kwargs.get("batch_size") is not None \
            else (tuple(kwargs["batch_input_shape"])[0]
                  if kwargs.get("batch_input_shape") is not None else None)
        self._initial_weights = kwargs.get("weights")
        params = inspect.signature(self.call).parameters
        self._call_has_training = "training" in params
        self._call_has_mask = "mask" in params
        self.input_shape = None     # (None, ...) once built
        self.output_shape = None

    # -- weights ------------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True,
                   autocast=True, regularizer=None, constraint=None, aggregation="none",
                   overwrite_with_gradient=False, name=None):
        """A new variable of this layer (Keras 3's arguments and defaults: glorot_uniform
        for floats, zeros for integers)."""
        from .. import constraints, regularizers
        if "_weights" not in vars(self):
            raise RuntimeError(f"{type(self).__name__}.add_weight() was called before "
                               f"super().__init__(): call the base constructor first")
        if isinstance(shape, str):
            raise TypeError(f"add_weight() takes the shape first; pass the name as "
                            f"`name={shape!r}` (received shape={shape!r})")
        try:
            shape = tuple(int(d) for d in (shape if shape is not None else ()))
        except TypeError:
            shape = (int(shape),)
        except ValueError:
            raise ValueError(f"Layer {self.name!r}: add_weight() needs a fully known shape, "
                             f"received shape={shape}") from None
        dtype = dtype or "float32"
        if initializer is None:
            initializer = "glorot_uniform" if "float" in str(dtype) else "zeros"
        value = initializers.get(initializer)(shape, dtype)
        if name is None:
            name = f"variable_{len(self._weights)}"
        var = Variable(value, name, trainable=trainable, path=f"{self.name}/{name}")
        var.regularizer = regularizers.get(regularizer)
        var.constraint = constraints.get(constraint)
        self._weights.append(var)
        return var

    def _add_state_variable(self, name, shape=(), dtype="int32", initializer="zeros"):
        """Model state that is not a weight (a random-number counter, as Keras'
        SeedGenerator state): saved by kcompile, absent from `weights`."""
        value = initializers.get(initializer)(tuple(shape), dtype)
        var = Variable(value, name, trainable=False, path=f"{self.name}/{name}")
        self._state_vars.append(var)
        return var

    def add_update(self, variable, value) -> None:
        """While traced: `variable` takes `value` after the step."""
        from ..tracing import current
        current().assign(variable, value)

    def add_loss(self, loss) -> None:
        """Inside `call()`: a scalar added to the training loss (a tensor is summed),
        listed in `layer.losses` after an eager call."""
        from kcompile.ir import builder as F
        from .. import tracing as tracing_mod
        terms = loss if isinstance(loss, (list, tuple)) else [loss]
        if not tracing_mod._active or not all(isinstance(t, Sym) for t in terms):
            raise ValueError("`add_loss()` can only be called from inside `build()` or "
                             f"`call()`, on a tensor input. Received invalid value: {loss!r}")
        trace = tracing_mod.current()
        for t in terms:
            t = F.sum(t) if t.ndim else t
            trace.losses.append(t)
            trace.loss_owners.append((self, t))

    @property
    def losses(self) -> list:
        """The add_loss values of the last eager call (this layer's and its sublayers'),
        then the weight regularization penalties, as numpy scalars."""
        from ..eager_calls import regularization_losses
        out = list(self._last_losses)
        for layer in self._sublayers(recursive=True):
            out += layer._last_losses
        return out + regularization_losses(self.weights)

    def _sublayers(self, recursive=False) -> list:
        """The layers this layer owns, in Keras' tracking order."""
        direct = tracking.child_layers(self)
        if not recursive:
            return direct
        out, seen = [], set()
        for layer in direct:
            for l in [layer, *layer._sublayers(recursive=True)]:
                if id(l) not in seen:
                    seen.add(id(l))
                    out.append(l)
        return out

    @property
    def weights(self) -> list[Variable]:
        """Keras 3's order: own trainable, own non-trainable, then each sublayer's weights."""
        own = [w for w in self._weights if w.trainable] + \
              [w for w in self._weights if not w.trainable]
        return _unique(own + [w for l in self._sublayers() for w in l.weights])

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return []
        own = [w for w in self._weights if w.trainable]
        return _unique(own + [w for l in self._sublayers() for w in l.trainable_weights])

    @property
    def non_trainable_weights(self) -> list[Variable]:
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    @property
    def variables(self) -> list[Variable]:
        """All the layer's state: its weights, then random-number state."""
        return _unique(self.weights + self._all_state_variables())

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_variables(self):
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.variables if id(w) not in trainable]

    def _all_state_variables(self) -> list[Variable]:
        own = self._state_vars + tracking.seed_state_variables(self)
        return _unique(own + [v for l in self._sublayers() for v in l._all_state_variables()])

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        targets = self.weights
        if len(weights) != len(targets):
            raise ValueError(f"Layer {self.name!r} expects {len(targets)} weights, "
                             f"but the weights list has {len(weights)} elements")
        for var, w in zip(targets, weights):
            w = np.asarray(w)
            if w.shape != var.shape:
                raise ValueError(f"Layer {self.name!r} weight {var.name!r}: expected shape "
                                 f"{var.shape}, received {w.shape}")
        for var, w in zip(targets, weights):
            var._assign_array(w)

    def count_params(self) -> int:
        return int(sum(np.prod(w.shape) for w in self.weights))

    # -- building and calling ----------------------------------------------
    def build(self, input_shape):
        self.built = True

    def build_from_config(self, config):
        """Keras' build_config: build for the saved input shape."""
        shape = (config or {}).get("input_shape")
        if shape is not None and not self.built:
            self._maybe_build(_shape_tuple(shape))

    def call(self, inputs, training=None):
        return inputs

    def compute_mask(self, inputs, previous_mask=None):
        """The mask of the outputs: the input's when the layer supports masking."""
        return previous_mask if self.supports_masking else None

    def _maybe_build(self, input_shape):
        if not self.built:
            from .. import tracing as tracing_mod
            trace = tracing_mod.current() if tracing_mod._active else None
            depth = trace.call_depth if trace is not None else 0
            if trace is not None:
                trace.call_depth = 0          # assigns in build() are not step updates
            try:
                self.build(input_shape if isinstance(input_shape, dict) else tuple(input_shape))
            except (ValueError, TypeError) as e:
                if _is_builtin(self) or getattr(e, "_kc_context", False):
                    raise
                raise _with_context(e, f"Exception encountered when building layer "
                                       f"{self.name!r} (type {type(self).__name__}) for "
                                       f"input_shape={_shape_text(input_shape)}.") from e
            finally:
                if trace is not None:
                    trace.call_depth = depth
            self.built = True
            if self._initial_weights is not None:
                self.set_weights(self._initial_weights)
                self._initial_weights = None
        if self.input_shape is None:
            self.input_shape = input_shape if isinstance(input_shape, dict) \
                else tuple(input_shape)

    @property
    def _inbound(self) -> list:
        """(inputs, outputs) of each call on KerasTensors, in call order."""
        if "_inbound_calls" not in self.__dict__:
            self.__dict__["_inbound_calls"] = []
        return self.__dict__["_inbound_calls"]

    def _first_call(self, what):
        calls = self._inbound
        if not calls:
            raise AttributeError(f"Layer {self.name!r} has never been called on symbolic "
                                 f"inputs and thus has no defined {what}.")
        return calls[0]

    @property
    def input(self):
        """The KerasTensor(s) of the layer's first call on KerasTensors (as Keras: node 0)."""
        return self._first_call("input")[0]

    @property
    def output(self):
        """The KerasTensor(s) its first call on KerasTensors returned."""
        return self._first_call("output")[1]

    def _positional_as_keywords(self, args) -> dict:
        """call()'s arguments after `inputs` given by position (`layer(targets, logits)`),
        by name: the functional API records a call's extra arguments by keyword."""
        names = [p.name for p in inspect.signature(self.call).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
        if len(args) > len(names):
            raise TypeError(f"Layer {self.name!r}: call() takes {len(names) + 1} positional "
                            f"arguments, received {len(args) + 1}")
        return dict(zip(names, args))

    def __call__(self, inputs, *args, training=None, mask=None, **kwargs):
        from .. import tracing as tracing_mod
        if _all_syms(inputs):
            return self._call_traced(inputs, args, training, mask, kwargs)
        from ..functional import call_symbolic
        if _any_keras_tensor(inputs):
            if training is not None:
                kwargs["training"] = training
            if mask is not None:
                kwargs["mask"] = mask
            if args:
                kwargs = {**self._positional_as_keywords(args), **kwargs}
            return call_symbolic(self, inputs, kwargs)
        from .. import eager_calls as eager
        if tracing_mod._active and eager.is_array_structure(inputs):
            # Arrays inside traced layer code are constants of the graph.
            consts = eager.lift_structure(tracing_mod.current(), inputs)
            return self._call_traced(consts, args, training, mask, kwargs)
        if eager.is_array_structure(inputs):
            if args:
                kwargs = {**self._positional_as_keywords(args), **kwargs}
            return eager.call(self, inputs, training=training, mask=mask, kwargs=kwargs)
        raise TypeError(f"Layer {self.name!r} was called on {type(inputs).__name__}; call it on "
                        f"arrays, on a `layers.Input` tensor, or on traced tensors inside "
                        f"another layer's call()")

    def _call_traced(self, inputs, args, training, mask, kwargs):
        from ..tracing import current
        trace = current()
        self._maybe_build(_shape_of(inputs))
        if training is None:
            training = trace.call_training        # as Keras: the outer call's value
        if self._call_has_training:
            kwargs["training"] = training
        if self._call_has_mask:
            kwargs["mask"] = mask if mask is not None else _input_mask(trace, inputs)
        prev = trace.call_training
        trace.call_training = training
        trace.call_depth += 1
        try:
            outputs = self.call(inputs, *args, **kwargs)
        except (ValueError, TypeError) as e:
            if _is_builtin(self) or getattr(e, "_kc_context", False):
                raise
            raise _with_context(e, f"Exception encountered when calling layer {self.name!r} "
                                   f"(type {type(self).__name__}).", _args_text(inputs)) from e
        finally:
            trace.call_depth -= 1
            trace.call_training = prev
        outputs = _traced_values(outputs)
        self._after_call(inputs, outputs, kwargs.get("mask", mask))
        if self.output_shape is None and isinstance(outputs, Sym):
            self.output_shape = (None, *outputs.shape[1:])
        return outputs

    supports_masking = False

    def _after_call(self, inputs, outputs, mask=None):
        """Keras' bookkeeping after a traced call: mask propagation and activity losses."""
        from ..tracing import current
        trace = current()
        if tracking.writes_own(self, "compute_mask", Layer):
            out_mask = self.compute_mask(inputs, mask if mask is not None
                                         else _input_mask(trace, inputs))
            if isinstance(outputs, Sym) and isinstance(out_mask, Sym):
                trace.masks[outputs.id] = out_mask
            elif isinstance(outputs, (list, tuple)) and isinstance(out_mask, (list, tuple)):
                for out, m in zip(outputs, out_mask):      # a mask per output
                    if isinstance(out, Sym) and isinstance(m, Sym):
                        trace.masks[out.id] = m
        elif isinstance(inputs, Sym) and isinstance(outputs, Sym):
            mask = trace.masks.get(inputs.id)
            if mask is not None and self.supports_masking and outputs.id not in trace.masks \
                    and outputs.shape[:mask.ndim] == mask.shape:
                trace.masks[outputs.id] = mask
        reg = getattr(self, "activity_regularizer", None)
        if reg is not None:
            for out in (outputs if isinstance(outputs, (list, tuple)) else [outputs]):
                # As Keras 3: the penalty of the activations, per sample of the batch.
                trace.losses.append(reg(out) / float(out.shape[0]))

    def compute_output_shape(self, input_shape):
        """Output shape (with None batch) found by tracing the layer on a batch of 1;
        axes given as None are traced at two sizes, and the output axes that follow
        them are None."""
        shapes = []
        from ..functional import VARIABLE_FILLS
        for fill in (VARIABLE_FILLS if _has_none(input_shape) else VARIABLE_FILLS[:1]):
            trace = Trace(shape_only=True)
            with tracing(trace):
                x = _placeholder(trace, input_shape, fill)
                shapes.append(_none_batch(self(x, training=False)))
        return _merge_shapes(shapes[0], shapes[-1])

    def get_config(self) -> dict:
        """name, trainable, dtype; for a custom layer without its own get_config, also its
        constructor's arguments when they are plain values (Keras' automatic config)."""
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            cfg["batch_input_shape"] = (None, *self._input_shape_arg)
        if getattr(self, "activity_regularizer", None) is not None:
            from .. import regularizers
            cfg["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if not tracking.writes_own(self, "get_config", Layer) and not _is_builtin(self):
            auto = getattr(self, "_auto_config", None)
            if auto is None:
                raise NotImplementedError(
                    f"Layer {type(self).__name__} has arguments in `__init__()` that are not "
                    f"plain values (str, int, float, bool, None and lists/dicts of them), so "
                    f"its config cannot be made automatically: override `get_config()` (and "
                    f"`from_config()` if needed) to make it serializable")
            cfg.update(auto)
            params = inspect.signature(self.__init__).parameters
            takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
            for key in ("name", "trainable", "dtype"):
                if key not in params and not takes_kwargs:
                    cfg.pop(key, None)
        return cfg

    @classmethod
    def from_config(cls, config):
        """The layer from `get_config()`'s dict, or from a Keras config of the same class
        (dtype policies, nested initializer / regularizer / constraint configs and
        Keras-only keys are translated: kcompile/saving/serialization.py)."""
        from ..saving.serialization import layer_kwargs
        kwargs = layer_kwargs(cls, config)
        if _is_builtin_class(cls):
            return cls(**kwargs)
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise TypeError(f"Error when deserializing class {cls.__name__!r} using "
                            f"config={config}.\n\nException encountered: {e}") from e

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _traced_values(outputs):
    """A call's outputs with variables (`return self.total`) read as traced values."""
    if hasattr(outputs, "__sym__"):
        return outputs.__sym__(None)
    if isinstance(outputs, (list, tuple)) and any(hasattr(o, "__sym__") for o in outputs):
        return type(outputs)(_traced_values(o) for o in outputs)
    if isinstance(outputs, dict) and any(hasattr(o, "__sym__") for o in outputs.values()):
        return {k: _traced_values(v) for k, v in outputs.items()}
    return outputs


def _unique(items):
    seen, out = set(), []
    for v in items:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _is_builtin_class(cls) -> bool:
    return cls.__module__.startswith("kcompile.")


def _is_builtin(layer) -> bool:
    return _is_builtin_class(type(layer))


def _with_context(e, head, args_text=None):
    """`e` again, its message prefixed with which layer raised it (Keras' wording)."""
    msg = f"{head}\n\n{e}"
    if args_text:
        msg += f"\n\n{args_text}"
    new = type(e)(msg)
    new._kc_context = True
    return new


def _describe(x):
    if isinstance(x, Sym):
        return f"tensor of shape {(None, *x.shape[1:])}, dtype {x.dtype}"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_describe(v) for v in x) + "]"
    return repr(x)


def _args_text(inputs):
    return f"Call arguments received:\n  \u2022 inputs={_describe(inputs)}"


def _shape_text(shape):
    return str(shape)


def _shape_tuple(shape):
    if isinstance(shape, dict):
        return {k: _shape_tuple(v) for k, v in shape.items()}
    if shape and isinstance(shape[0], (list, tuple)):
        return [tuple(s) for s in shape]
    return tuple(shape)


def _input_mask(trace, inputs):
    if isinstance(inputs, Sym):
        return trace.masks.get(inputs.id)
    if isinstance(inputs, dict):
        masks = {k: trace.masks.get(v.id) for k, v in inputs.items()}
        return masks if any(m is not None for m in masks.values()) else None
    masks = [trace.masks.get(v.id) for v in inputs]
    return masks if any(m is not None for m in masks) else None


def _all_syms(x):
    if isinstance(x, Sym):
        return True
    if isinstance(x, dict):
        x = list(x.values())
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(i, Sym) for i in x)


def _any_keras_tensor(x):
    from ..functional import KerasTensor
    if isinstance(x, KerasTensor):
        return True
    if isinstance(x, dict):
        x = list(x.values())
    return isinstance(x, (list, tuple)) and any(isinstance(i, KerasTensor) for i in x)


def _shape_of(x):
    if isinstance(x, Sym):
        return (None, *x.shape[1:])
    if isinstance(x, dict):
        return {k: (None, *s.shape[1:]) for k, s in x.items()}
    return [(None, *s.shape[1:]) for s in x]


def _has_none(shape):
    if isinstance(shape, list):
        return any(_has_none(s) for s in shape)
    return None in tuple(shape)[1:]


def _merge_shapes(a, b):
    if isinstance(a, list):
        return [_merge_shapes(x, y) for x, y in zip(a, b)]
    return tuple(d if d == e else None for d, e in zip(a, b))


def _placeholder(trace, shape, fill=1):
    if isinstance(shape, list):
        return [_placeholder(trace, s, fill) for s in shape]
    return trace.input(f"x{len(trace.graph)}", (1, *(fill if d is None else d for d in shape[1:])))


def _none_batch(y):
    if isinstance(y, (list, tuple)):
        return [_none_batch(i) for i in y]
    return (None, *y.shape[1:])
