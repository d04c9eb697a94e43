"""Subclassed models: `class M(Model)` with `__init__` and `call`, no `Input`.

Such a model learns its inputs from the first data it sees (`fit`, `predict`,
`evaluate`, `train_on_batch`, `model(x)`) or from `build(input_shape)`: one
trace of `call` on a batch of 1 builds its layers and records the structure
and shapes of its inputs and outputs (a `Spec`). From then on it is compiled
like any model.

Later data must fit what it was built for. An axis whose size changes (a
sequence length) is accepted when `call` traces at the new size, and becomes a
variable axis; a change the layers cannot take (another feature size under a
Dense) raises, naming both shapes: a built model never silently turns into a
different one.

Keras' custom training steps (`train_step` with GradientTape, `compute_loss`,
...) cannot be compiled here: a model that overrides them fails with
NotImplementedError when the step would run, instead of being ignored.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from .layers.tracking import writes_own
from .functional import rebuild_structure
from .tracing import Trace, tracing

NOT_BUILT = ("This model has not yet been built. Build the model first by calling `build()` "
             "or by calling the model on a batch of data.")

# The Keras methods a custom training loop overrides, by the call that would need them.
_CUSTOM_STEPS = {"fit": ("train_step", "compute_loss", "compute_metrics"),
                 "train_on_batch": ("train_step", "compute_loss", "compute_metrics"),
                 "evaluate": ("test_step", "compute_loss", "compute_metrics"),
                 "test_on_batch": ("test_step", "compute_loss", "compute_metrics"),
                 "predict": ("predict_step",)}


@dataclass
class Spec:
    input_kind: str              # "single", "list", "tuple" or "dict"
    input_keys: list | None      # the dict keys of dict inputs
    input_specs: list            # [(per-sample shape, dtype)]; None for a variable axis
    output_kind: str
    output_keys: list | None
    output_shapes: list          # [(None, ...)] per output

    @property
    def output_names(self) -> list[str]:
        if self.output_keys:
            return list(self.output_keys)
        return [f"output_{i + 1}" for i in range(len(self.output_shapes))]


def spec(model) -> Spec:
    if model._subclass_spec is None:
        raise ValueError(NOT_BUILT)
    return model._subclass_spec


def check_overrides(model, what: str) -> None:
    """NotImplementedError for a custom training step the compiled `what` cannot run."""
    for name in _CUSTOM_STEPS.get(what, ()):
        if getattr(type(model), name, None) is not None:
            raise NotImplementedError(
                f"{type(model).__name__} overrides `{name}()`: kcompile compiles the step of "
                f"`{what}()` from `call()`, the loss and metrics given to compile() and the "
                f"optimizer, and cannot run a custom `{name}()` (Keras' GradientTape / "
                f"stateless_call training loops). Remove `{name}()`: extra loss terms go in "
                f"`call()` with `self.add_loss(...)`, a custom loss function in "
                f"`compile(loss=...)`.")


# -- structure of data and shapes ---------------------------------------------------------------
def _data_structure(x):
    """(kind, keys, [(per-sample shape, dtype)]) of the data given to a model."""
    def one(a):
        arr = a if hasattr(a, "shape") and hasattr(a, "dtype") else np.asarray(a)
        kind = np.dtype(arr.dtype).kind
        if len(arr.shape) == 0:
            raise ValueError(f"model inputs need a batch axis, received a scalar {a!r}")
        return tuple(int(d) for d in arr.shape[1:]), "int32" if kind in "biu" else "float32"
    if isinstance(x, dict):
        return "dict", list(x), [one(v) for v in x.values()]
    if isinstance(x, (list, tuple)) and x and all(hasattr(v, "shape") for v in x):
        return type(x).__name__, None, [one(v) for v in x]
    return "single", None, [one(x)]


def _shape_structure(input_shape):
    """(kind, keys, [per-sample shape]) of a build() input_shape (batch axis included)."""
    def one(s):
        s = tuple(s)
        if not s:
            raise ValueError(f"build(): an input shape needs the batch axis, received {s}")
        return tuple(None if d is None else int(d) for d in s[1:])
    if isinstance(input_shape, dict):
        return "dict", list(input_shape), [one(s) for s in input_shape.values()]
    if isinstance(input_shape, (list, tuple)) and input_shape and \
            isinstance(input_shape[0], (list, tuple)):
        return "list", None, [one(s) for s in input_shape]
    return "single", None, [one(input_shape)]


def _flatten(out, where):
    from kcompile.ir.builder import Sym
    if isinstance(out, dict):
        kind, keys, items = "dict", list(out), list(out.values())
    elif isinstance(out, (list, tuple)):
        kind, keys, items = type(out).__name__, None, list(out)
    else:
        kind, keys, items = "single", None, [out]
    syms = []
    for o in items:
        if hasattr(o, "__sym__"):
            o = o.__sym__(None)
        if not isinstance(o, Sym):
            raise TypeError(f"{where}: call() must return tensors (or a list / dict of them), "
                            f"received {type(o).__name__}")
        syms.append(o)
    return kind, keys, syms


# -- building -------------------------------------------------------------------------------------
def build(model, input_shape) -> None:
    """Model.build(input_shape) of a subclassed model."""
    if getattr(model, "_building", False):
        return                  # super().build() inside the model's own build()
    kind, keys, shapes = _shape_structure(input_shape)
    dtypes = getattr(model, "_build_dtypes", None) or ["float32"] * len(shapes)
    _build(model, kind, keys, list(zip(shapes, dtypes)))


def build_from_data(model, x) -> None:
    kind, keys, specs = _data_structure(x)
    if model._subclass_spec is None:
        _build(model, kind, keys, specs)
    else:
        _check(model, kind, keys, specs)


def _batch_shapes(kind, keys, specs):
    return rebuild_structure(kind, keys, [(None, *shape) for shape, _ in specs])


def _build(model, kind, keys, specs) -> None:
    from .models import Model
    model._building = True
    try:
        if writes_own(model, "build", Model):
            model.build(_batch_shapes(kind, keys, specs))
        model.built = True
        model._subclass_spec = _trace_spec(model, kind, keys, specs)
    finally:
        model._building = False
    model._invalidate()


def _trace_spec(model, kind, keys, specs, fill=1) -> Spec:
    """Trace call() on a batch of 1 (building the layers); the Spec it shows."""
    trace = Trace(shape_only=True)
    with tracing(trace):
        xs = [trace.input(f"x{i}", (1, *(fill if d is None else d for d in shape)), dtype)
              for i, (shape, dtype) in enumerate(specs)]
        out = model._call_traced(rebuild_structure(kind, keys, xs), (), False, None, {})
    out_kind, out_keys, syms = _flatten(out, f"Model {model.name!r}")
    return Spec(kind, keys, [(tuple(s), d) for s, d in specs], out_kind, out_keys,
                [(None, *o.shape[1:]) for o in syms])


def _check(model, kind, keys, specs) -> None:
    """Data after the first: the same structure, and shapes the model takes."""
    built = model._subclass_spec
    where = f"Model {model.name!r} (type {type(model).__name__})"
    expected = _batch_shapes(built.input_kind, built.input_keys, built.input_specs)
    received = _batch_shapes(kind, keys, specs)
    same_structure = (kind == built.input_kind or {kind, built.input_kind} <= {"list", "tuple"}) \
        and keys == built.input_keys and len(specs) == len(built.input_specs)
    if not same_structure:
        raise ValueError(f"{where} was built for inputs {expected}, but received data "
                         f"structured as {received}")
    new_specs, changed = [], False
    for (shape, dtype), (old, old_dtype) in zip(specs, built.input_specs):
        if len(shape) != len(old):
            raise ValueError(f"{where} was built for inputs of shape {expected}, but received "
                             f"data of shape {received}")
        if any(o is not None and o != d for o, d in zip(old, shape)):
            changed = True
            new_specs.append((tuple(None if o != d else o for o, d in zip(old, shape)),
                              old_dtype))
        else:
            new_specs.append((old, old_dtype))
    if not changed:
        return
    try:
        # Axes that change size become variable, if call() takes the new size.
        _trace_spec(model, kind, keys, [(s, d) for (s, _), (_, d) in zip(specs, new_specs)])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where} was built for inputs of shape {expected} and cannot take "
                         f"data of shape {received}: a built model keeps its input shape "
                         f"(make a new model for the new shape).\n\n{e}") from e
    built.input_specs = new_specs
    model._invalidate()


def build_config(model) -> dict | None:
    """The `build_config` of a .keras file: the input shapes (and kcompile's dtypes)."""
    s = model._subclass_spec
    if s is None:
        return None
    shapes = [[None, *shape] for shape, _ in s.input_specs]
    shape = shapes[0] if s.input_kind == "single" else (
        dict(zip(s.input_keys, shapes)) if s.input_kind == "dict" else shapes)
    return {"input_shape": shape, "input_dtypes": [d for _, d in s.input_specs]}


def build_from_config(model, config) -> None:
    shape = (config or {}).get("input_shape")
    if shape is None:
        return
    model._build_dtypes = config.get("input_dtypes")
    try:
        build(model, shape)
    finally:
        model._build_dtypes = None


def forward(model, xs, training):
    """The model's call() on traced inputs; a list of traced outputs."""
    s = spec(model)
    out = model._call_traced(rebuild_structure(s.input_kind, s.input_keys, xs), (), training, None, {})
    kind, keys, syms = _flatten(out, f"Model {model.name!r}")
    if len(syms) != len(s.output_shapes):
        raise ValueError(f"Model {model.name!r}: call() returned {len(syms)} outputs, but "
                         f"{len(s.output_shapes)} when the model was built")
    return syms


def layer_rows(model):
    """summary(): one row per layer the model's attributes hold (shape '?' if unknown)."""
    if model._subclass_spec is None and not model.built:
        raise ValueError(NOT_BUILT)
    return [(l, l.output_shape if l.output_shape is not None else "?", l.count_params())
            for l in model.layers]


# -- config -------------------------------------------------------------------------------------
def functional_like_constructor(cls) -> bool:
    from .models import Model
    args = inspect.getfullargspec(cls.__init__).args[1:]
    return args == inspect.getfullargspec(Model.__init__).args[1:]


def is_functional_config(cls, config) -> bool:
    """Keras' rule: a functional graph config revives as a functional model when the
    class takes the functional constructor's arguments."""
    from .models import Model
    if not all(k in config for k in ("name", "layers", "input_layers", "output_layers")):
        return False
    spec_ = inspect.getfullargspec(cls.__init__)
    return cls is Model or functional_like_constructor(cls) or (
        spec_.varargs == "args" and spec_.varkw == "kwargs")


def get_config(model) -> dict:
    """Keras' config of a subclassed model: name and trainable, then (when the class
    writes no get_config of its own) the constructor's plain-valued arguments."""
    from .models import Model
    config = {"name": model.name, "trainable": model.trainable, "dtype": model.dtype}
    if writes_own(model, "get_config", Model):
        return config               # the subclass's get_config extends this
    auto = getattr(model, "_auto_config", None)
    if auto is None:
        raise NotImplementedError(
            f"Model {type(model).__name__} cannot make its config automatically: its "
            f"`__init__()` takes arguments that are not plain values (str, int, float, bool, "
            f"None, lists and dicts of them). Override `get_config()` (and `from_config()` "
            f"if needed) to save it with its architecture, or save only its weights with "
            f"`save_weights()`.")
    config.update(auto)
    params = inspect.signature(model.__init__).parameters
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for key in ("name", "trainable", "dtype"):
        if key not in params and not takes_kwargs:
            config.pop(key, None)
    return config


def from_config(cls, config):
    from .saving.serialization import dtype_name
    config = dict(config)
    if "dtype" in config:
        config["dtype"] = dtype_name(config["dtype"])
    try:
        return cls(**config)
    except TypeError as e:
        raise TypeError(
            f"Unable to revive model from config. When overriding the `get_config()` method, "
            f"make sure that the returned config contains all items used as arguments in the "
            f"constructor to {cls}, which is the default behavior. You can override this "
            f"default behavior by defining a `from_config(cls, config)` class method to "
            f"specify how to create an instance of {cls.__name__} from its config.\n\n"
            f"Received config={config}\n\nError encountered during deserialization: {e}") from e
