"""Metrics: per-sample values computed in the compiled step, averaged by the trainer.

Every metric here is a Keras MeanMetricWrapper: the compiled step returns the
sum of its per-sample values over the real samples of a batch, and the trainer
keeps the running total and count, so an epoch's value is the mean over all
samples (as Keras reports it).
"""
from __future__ import annotations

from kcompile.ir import builder as F
from . import losses


def _mean_rest(v):
    """Average all but the batch axis (a metric is one value per sample)."""
    return F.mean(v, axis=tuple(range(1, v.ndim))) if v.ndim > 1 else v


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = losses._align_ranks(F.cast(y_true, "float32"), y_pred)
    pred = F.greater(y_pred, threshold)
    return F.mean(F.equal(y_true, pred), axis=-1)


def categorical_accuracy(y_true, y_pred):
    return F.equal(F.argmax(F.cast(y_true, "float32")), F.argmax(y_pred))


def sparse_categorical_accuracy(y_true, y_pred):
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = F.squeeze(y_true, -1)
    return F.equal(F.cast(y_true, "float32"), F.cast(F.argmax(y_pred), "float32"))


class Metric:
    def __init__(self, fn, name, **kwargs):
        self.fn, self.name, self.kwargs = fn, name, kwargs

    def values(self, y_true, y_pred):
        return _mean_rest(self.fn(y_true, y_pred, **self.kwargs))

    def raw_values(self, y_true, y_pred):
        """The metric per entry, before averaging over the non-batch axes."""
        return self.fn(y_true, y_pred, **self.kwargs)

    def get_config(self):
        return {"name": self.name, **self.kwargs}


def _metric_class(cls_name, fn, default_name, **defaults):
    def __init__(self, name=default_name, dtype=None, **kwargs):
        Metric.__init__(self, fn, name, **{**defaults, **kwargs})
    return type(cls_name, (Metric,), {"__init__": __init__})


BinaryAccuracy = _metric_class("BinaryAccuracy", binary_accuracy, "binary_accuracy", threshold=0.5)
CategoricalAccuracy = _metric_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy")
SparseCategoricalAccuracy = _metric_class("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                          "sparse_categorical_accuracy")
MeanSquaredError = _metric_class("MeanSquaredError", losses.mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _metric_class("MeanAbsoluteError", losses.mean_absolute_error, "mean_absolute_error")
MeanAbsolutePercentageError = _metric_class("MeanAbsolutePercentageError",
                                            losses.mean_absolute_percentage_error,
                                            "mean_absolute_percentage_error")
BinaryCrossentropy = _metric_class("BinaryCrossentropy", losses.binary_crossentropy,
                                   "binary_crossentropy")
CategoricalCrossentropy = _metric_class("CategoricalCrossentropy", losses.categorical_crossentropy,
                                        "categorical_crossentropy")
SparseCategoricalCrossentropy = _metric_class("SparseCategoricalCrossentropy",
                                              losses.sparse_categorical_crossentropy,
                                              "sparse_categorical_crossentropy")

_FUNCTIONS = {
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mse": losses.mean_squared_error, "mean_squared_error": losses.mean_squared_error,
    "mae": losses.mean_absolute_error, "mean_absolute_error": losses.mean_absolute_error,
    "mape": losses.mean_absolute_percentage_error,
    "mean_absolute_percentage_error": losses.mean_absolute_percentage_error,
    "binary_crossentropy": losses.binary_crossentropy,
    "categorical_crossentropy": losses.categorical_crossentropy,
    "sparse_categorical_crossentropy": losses.sparse_categorical_crossentropy,
}
_CLASSES = {c.__name__: c for c in [
    BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, MeanSquaredError,
    MeanAbsoluteError, MeanAbsolutePercentageError, BinaryCrossentropy, CategoricalCrossentropy,
    SparseCategoricalCrossentropy]}


def get(identifier, y_true_shape=None, y_pred_shape=None) -> Metric:
    """Resolve a metric. 'accuracy'/'acc' picks binary, sparse or categorical accuracy from
    the label and output shapes, as Keras' compile does."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            pred_last = y_pred_shape[-1]
            is_binary = pred_last == 1
            is_sparse = len(y_true_shape) < len(y_pred_shape) or (
                y_true_shape[-1] == 1 and pred_last > 1)
            fn = binary_accuracy if is_binary else (
                sparse_categorical_accuracy if is_sparse else categorical_accuracy)
            kw = {"threshold": 0.5} if is_binary else {}
            return Metric(fn, identifier, **kw)
        if identifier in _FUNCTIONS:
            return Metric(_FUNCTIONS[identifier], identifier)
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    elif callable(identifier):
        return Metric(identifier, getattr(identifier, "__name__", "metric"))
    raise ValueError(f"Unknown metric: {identifier!r}. Valid names: "
                     f"{sorted(['accuracy', 'acc', *_FUNCTIONS])}")
