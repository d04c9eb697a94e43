"""Losses with Keras 3 names and formulas, written on traced values.

A loss gives per-sample values; the trainer reduces them Keras' way
('sum_over_batch_size': the sum over the real samples of a batch divided by
their number), so a padded last batch counts only its real rows.
"""
from __future__ import annotations

import inspect

from kcompile.ir import builder as F
from .config import epsilon
from .input_bounds import bound_input


def _align_ranks(y_true, y_pred):
    """Keras' squeeze_or_expand_to_same_rank for a trailing dimension of 1."""
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = F.expand_dims(y_true, -1)
    elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = F.squeeze(y_true, -1)
    return y_true, y_pred


def _check_same_shape(y_true, y_pred):
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Arguments `target` and `output` must have the same shape. Received: "
                         f"target.shape={(None, *y_true.shape[1:])}, "
                         f"output.shape={(None, *y_pred.shape[1:])}")


def _float(y):
    return F.cast(y, "float32")


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    return F.mean(F.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    return F.mean(F.abs(y_pred - y_true), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    diff = F.abs((y_true - y_pred) / F.maximum(F.abs(y_true), epsilon()))
    return 100.0 * F.mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    a = F.log(F.maximum(y_pred, epsilon()) + 1.0)
    b = F.log(F.maximum(y_true, epsilon()) + 1.0)
    return F.mean(F.square(a - b), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    err = F.abs(y_pred - y_true)
    quad = 0.5 * F.square(err)
    lin = delta * err - 0.5 * delta * delta
    return F.mean(F.select(F.less_equal(err, delta), quad, lin), axis=-1)


def log_cosh(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    x = y_pred - y_true
    # log(cosh(x)) = x + softplus(-2x) - log(2)
    z = -2.0 * x
    softplus = F.relu(z) + F.log(1.0 + F.exp(-F.abs(z)))
    return F.mean(x + softplus - 0.6931471805599453, axis=-1)


def _hinge_labels(y_true):
    """As Keras: 0/1 labels become -1/1, but only when every label is 0 or 1."""
    binary = F.maximum(F.equal(y_true, 0.0), F.equal(y_true, 1.0))
    all_binary = F.equal(F.sum(binary), float(y_true.type.size))
    return F.select(all_binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    y_true = _hinge_labels(y_true)
    return F.mean(F.relu(1.0 - y_true * y_pred), axis=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    y_true = _hinge_labels(y_true)
    return F.mean(F.square(F.relu(1.0 - y_true * y_pred)), axis=-1)


def kl_divergence(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    t = F.clip(y_true, epsilon(), 1.0)
    p = F.clip(y_pred, epsilon(), 1.0)
    return F.sum(t * F.log(t / p), axis=-1)


def poisson(y_true, y_pred):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    return F.mean(y_pred - y_true * F.log(y_pred + epsilon()), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _align_ranks(_float(y_true), y_pred)
    _check_same_shape(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        # -t log sigmoid(x) - (1-t) log sigmoid(-x) = max(x,0) - x t + log(1 + exp(-|x|))
        bce = F.relu(y_pred) - y_pred * y_true + F.log(1.0 + F.exp(-F.abs(y_pred)))
    else:
        p = F.clip(y_pred, epsilon(), 1.0 - epsilon())
        bce = -(y_true * F.log(p) + (1.0 - y_true) * F.log(1.0 - p))
    return F.mean(bce, axis=axis)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true = _float(y_true)
    _check_same_shape(y_true, y_pred)
    if label_smoothing:
        n = y_pred.shape[axis]
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / n
    if from_logits:
        m = F.stop_gradient(F.max(y_pred, axis=axis, keepdims=True))
        s = y_pred - m
        log_prob = s - F.log(F.sum(F.exp(s), axis=axis, keepdims=True))
    else:
        # As Keras: renormalize, clip to [eps, 1-eps], log. simplify rewrites this
        # into a stable log-softmax when y_pred is a softmax.
        p = y_pred / F.sum(y_pred, axis=axis, keepdims=True)
        log_prob = F.log(F.clip(p, epsilon(), 1.0 - epsilon()))
    return -F.sum(y_true * log_prob, axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = F.squeeze(y_true, -1)
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"Sparse labels must have shape (batch, ...) matching the output "
                         f"without its last axis. Received: target.shape="
                         f"{(None, *y_true.shape[1:])}, output.shape={(None, *y_pred.shape[1:])}")
    classes = y_pred.shape[-1]
    if ignore_class is None or 0 <= ignore_class < classes:
        # Checked on the data before the step: a label outside [0, classes) would train
        # on a class the model does not have (one_hot makes it a zero row).
        bound_input(y_true, classes)
    onehot = F.one_hot(F.cast(y_true, "int32"), classes)
    values = categorical_crossentropy(onehot, y_pred, from_logits=from_logits, axis=axis)
    if ignore_class is not None:
        values = values * F.not_equal(F.cast(y_true, "float32"), float(ignore_class))
    return values


def categorical_hinge(y_true, y_pred):
    y_true = _float(y_true)
    _check_same_shape(y_true, y_pred)
    pos = F.sum(y_true * y_pred, axis=-1)
    neg = F.max((1.0 - y_true) * y_pred, axis=-1)
    return F.relu(neg - pos + 1.0)


def cosine_similarity(y_true, y_pred, axis=-1):
    y_true = _float(y_true)
    _check_same_shape(y_true, y_pred)
    def l2n(x):
        return x / F.sqrt(F.maximum(F.sum(F.square(x), axis=axis, keepdims=True), 1e-12))
    return -F.sum(l2n(y_true) * l2n(y_pred), axis=axis)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kl_divergence
logcosh = log_cosh


class Loss:
    """A loss object (Keras' LossFunctionWrapper): a function and its keyword arguments."""
    fn = None

    def __init__(self, reduction="sum_over_batch_size", name=None, **kwargs):
        if reduction not in ("sum_over_batch_size", "sum", "mean", "none", None, "auto"):
            raise ValueError(f"Invalid reduction {reduction!r}; expected one of "
                             f"'sum_over_batch_size', 'sum', 'mean', 'none'")
        self.reduction = "sum_over_batch_size" if reduction in ("auto", "mean") else reduction
        self.name = name or _snake(type(self).__name__)
        self.kwargs = kwargs

    def call(self, y_true, y_pred):
        """The per-sample loss values; a subclass written by a user overrides this."""
        fn = type(self).fn
        if fn is None:
            raise NotImplementedError(f"Loss subclass {type(self).__name__} must implement "
                                      f"`call(y_true, y_pred)`")
        return fn(y_true, y_pred, **self.kwargs)

    def per_sample(self, y_true, y_pred):
        if type(self).fn is None and y_true.dtype != y_pred.dtype:
            # A user's call(): as Keras, the targets come in the outputs' dtype.
            y_true = F.cast(y_true, y_pred.dtype)
        return self.call(y_true, y_pred)

    def valid_samples(self, y_true, y_pred):
        """1/0 per sample entry when some labels are ignored (ignore_class), else None."""
        ignore = self.kwargs.get("ignore_class")
        if ignore is None:
            return None
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = F.squeeze(y_true, -1)
        return F.not_equal(F.cast(y_true, "float32"), float(ignore))

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.per_sample(y_true, y_pred)
        if sample_weight is not None:
            values = values * sample_weight
        if self.reduction in ("none", None):
            return values
        total = F.sum(values)
        if self.reduction == "sum":
            return total
        return total / float(max(values.type.size, 1))

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self.kwargs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _snake(name):
    import re
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _loss_class(cls_name, fn, _after_reduction=(), **defaults):
    """A Loss class with Keras' signature: the loss's own options first (in
    Keras' order), then reduction, (options Keras lists after it), name and dtype,
    positionally or by name."""
    before = [k for k in defaults if k not in _after_reduction]
    order = [*before, "reduction", *_after_reduction, "name", "dtype"]

    def __init__(self, *args, **kwargs):
        if len(args) > len(order):
            raise TypeError(f"{cls_name} takes at most {len(order)} positional arguments")
        for key, value in zip(order, args):
            if key in kwargs:
                raise TypeError(f"{cls_name} got multiple values for argument {key!r}")
            kwargs[key] = value
        unknown = set(kwargs) - set(order)
        if unknown:
            raise TypeError(f"{cls_name} got unexpected arguments {sorted(unknown)}")
        kwargs.pop("dtype", None)
        reduction = kwargs.pop("reduction", "sum_over_batch_size")
        name = kwargs.pop("name", None)
        Loss.__init__(self, reduction=reduction, name=name or _snake(cls_name), **{**defaults, **kwargs})
    P = inspect.Parameter
    default_of = {**defaults, "reduction": "sum_over_batch_size", "name": _snake(cls_name),
                  "dtype": None}
    __init__.__signature__ = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD)]
        + [P(k, P.POSITIONAL_OR_KEYWORD, default=default_of[k]) for k in order])
    return type(cls_name, (Loss,), {"fn": staticmethod(fn), "__init__": __init__})


MeanSquaredError = _loss_class("MeanSquaredError", mean_squared_error)
MeanAbsoluteError = _loss_class("MeanAbsoluteError", mean_absolute_error)
MeanAbsolutePercentageError = _loss_class("MeanAbsolutePercentageError", mean_absolute_percentage_error)
MeanSquaredLogarithmicError = _loss_class("MeanSquaredLogarithmicError", mean_squared_logarithmic_error)
Huber = _loss_class("Huber", huber, delta=1.0)
LogCosh = _loss_class("LogCosh", log_cosh)
Hinge = _loss_class("Hinge", hinge)
SquaredHinge = _loss_class("SquaredHinge", squared_hinge)
CategoricalHinge = _loss_class("CategoricalHinge", categorical_hinge)
KLDivergence = _loss_class("KLDivergence", kl_divergence)
Poisson = _loss_class("Poisson", poisson)
CosineSimilarity = _loss_class("CosineSimilarity", cosine_similarity, axis=-1)
BinaryCrossentropy = _loss_class("BinaryCrossentropy", binary_crossentropy,
                                 from_logits=False, label_smoothing=0.0, axis=-1)
CategoricalCrossentropy = _loss_class("CategoricalCrossentropy", categorical_crossentropy,
                                      from_logits=False, label_smoothing=0.0, axis=-1)
SparseCategoricalCrossentropy = _loss_class("SparseCategoricalCrossentropy",
                                            sparse_categorical_crossentropy,
                                            _after_reduction=("axis",),
                                            from_logits=False, ignore_class=None, axis=-1)

_FUNCTIONS = {
    "mean_squared_error": mean_squared_error, "mse": mse, "MSE": mse,
    "mean_absolute_error": mean_absolute_error, "mae": mae, "MAE": mae,
    "mean_absolute_percentage_error": mape, "mape": mape, "MAPE": mape,
    "mean_squared_logarithmic_error": msle, "msle": msle, "MSLE": msle,
    "huber": huber, "log_cosh": log_cosh, "logcosh": log_cosh, "hinge": hinge,
    "squared_hinge": squared_hinge, "categorical_hinge": categorical_hinge,
    "kl_divergence": kl_divergence, "kld": kld, "KLD": kld, "poisson": poisson,
    "cosine_similarity": cosine_similarity, "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
}
_CLASSES = {c.__name__: c for c in [
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError,
    Huber, LogCosh, Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson, CosineSimilarity,
    BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy]}


class _FunctionLoss(Loss):
    def __init__(self, fn, name):
        super().__init__(name=name)
        self._fn = fn

    def per_sample(self, y_true, y_pred):
        return self._fn(y_true, y_pred)


def get(identifier) -> Loss:
    """A Loss object from a name, a Loss, a class, or a function (y_true, y_pred) -> values."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _FUNCTIONS:
            fn = _FUNCTIONS[identifier]
            return _FunctionLoss(fn, fn.__name__)
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    elif callable(identifier):
        return _FunctionLoss(identifier, getattr(identifier, "__name__", "loss"))
    raise ValueError(f"Unknown loss function: {identifier!r}. Valid names: "
                     f"{sorted(_FUNCTIONS)}")


def serialize(loss):
    if isinstance(loss, _FunctionLoss):
        return loss.name
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
