"""Metrics with Keras 3's names, arguments and results.

Every metric is a stateful `Metric` (kcompile/metrics/metric.py): `compile(metrics=...)`
traces its `update_state` into the train and eval steps, so its variables are updated
by the compiled code; the trainer resets them at each epoch's start and reads
`result()`. They also work on arrays outside a model, as in Keras.
"""
from __future__ import annotations

from .metric import Metric
from .reduction import Mean, MeanMetricWrapper, Sum
from .accuracy import (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
                       SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy, accuracy,
                       binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
                       sparse_top_k_categorical_accuracy, top_k_categorical_accuracy)
from .loss_metrics import (BinaryCrossentropy, CategoricalCrossentropy, CategoricalHinge,
                           CosineSimilarity, Hinge, KLDivergence, LogCoshError,
                           MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredError,
                           MeanSquaredLogarithmicError, Poisson, RootMeanSquaredError,
                           SparseCategoricalCrossentropy, SquaredHinge, cosine_similarity)
from .confusion import (FalseNegatives, FalsePositives, Precision, Recall, TrueNegatives,
                        TruePositives)
from .auc import AUC
from .at_constraint import (PrecisionAtRecall, RecallAtPrecision, SensitivityAtSpecificity,
                            SpecificityAtSensitivity)
from .f_score import F1Score, FBetaScore
from .iou import BinaryIoU, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from .r2 import R2Score
from .correlation import (ConcordanceCorrelation, PearsonCorrelation, concordance_correlation,
                          pearson_correlation)
from .. import losses as _losses
from ..losses import (hinge, huber, kl_divergence, log_cosh, mean_absolute_error,  # noqa: F401
                      mean_absolute_percentage_error, mean_squared_error,
                      mean_squared_logarithmic_error, poisson, squared_hinge, categorical_hinge,
                      binary_crossentropy, categorical_crossentropy,
                      sparse_categorical_crossentropy)

_FUNCTIONS = {
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "mse": _losses.mean_squared_error, "mean_squared_error": _losses.mean_squared_error,
    "mae": _losses.mean_absolute_error, "mean_absolute_error": _losses.mean_absolute_error,
    "mape": _losses.mean_absolute_percentage_error,
    "mean_absolute_percentage_error": _losses.mean_absolute_percentage_error,
    "msle": _losses.mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error": _losses.mean_squared_logarithmic_error,
    "binary_crossentropy": _losses.binary_crossentropy,
    "categorical_crossentropy": _losses.categorical_crossentropy,
    "sparse_categorical_crossentropy": _losses.sparse_categorical_crossentropy,
    "kl_divergence": _losses.kl_divergence, "kld": _losses.kl_divergence,
    "poisson": _losses.poisson, "hinge": _losses.hinge, "squared_hinge": _losses.squared_hinge,
    "categorical_hinge": _losses.categorical_hinge, "log_cosh": _losses.log_cosh,
    "logcosh": _losses.log_cosh, "cosine_similarity": cosine_similarity,
    "pearson_correlation": pearson_correlation,
    "concordance_correlation": concordance_correlation,
}
_CLASSES = {c.__name__: c for c in [
    Metric, Mean, Sum, MeanMetricWrapper, Accuracy, BinaryAccuracy, CategoricalAccuracy,
    SparseCategoricalAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    MeanSquaredError, RootMeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, CosineSimilarity, LogCoshError, R2Score, KLDivergence,
    Poisson, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy, Hinge,
    SquaredHinge, CategoricalHinge, TruePositives, FalsePositives, TrueNegatives,
    FalseNegatives, Precision, Recall, AUC, PrecisionAtRecall, RecallAtPrecision,
    SensitivityAtSpecificity, SpecificityAtSensitivity, F1Score, FBetaScore, IoU, BinaryIoU, MeanIoU,
    OneHotIoU, OneHotMeanIoU, PearsonCorrelation, ConcordanceCorrelation]}


def get_function(name):
    """A metric function by its Keras name."""
    if name in ("accuracy", "acc"):
        return accuracy
    if name not in _FUNCTIONS:
        raise ValueError(f"Unknown metric function: {name!r}")
    return _FUNCTIONS[name]


def get(identifier, y_true_shape=None, y_pred_shape=None) -> Metric:
    """A Metric object for a compile() entry. 'accuracy'/'acc' picks binary, sparse or
    categorical accuracy from the label and output shapes, as Keras' compile does; a
    string is also the metric's name in the logs."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            if y_pred_shape is None:
                return MeanMetricWrapper(accuracy, name=identifier)
            pred_last = y_pred_shape[-1]
            is_binary = pred_last == 1
            is_sparse = len(y_true_shape) < len(y_pred_shape) or (
                y_true_shape[-1] == 1 and pred_last > 1)
            fn = binary_accuracy if is_binary else (
                sparse_categorical_accuracy if is_sparse else categorical_accuracy)
            kw = {"threshold": 0.5} if is_binary else {}
            return MeanMetricWrapper(fn, name=identifier, **kw)
        if identifier in _FUNCTIONS:
            return MeanMetricWrapper(_FUNCTIONS[identifier], name=identifier)
        if identifier in _CLASSES and identifier not in ("Metric", "MeanMetricWrapper"):
            return _CLASSES[identifier]()
        snake = {_snake(k): c for k, c in _CLASSES.items()}
        if identifier in snake and identifier not in ("metric", "mean_metric_wrapper"):
            metric = snake[identifier]()
            metric.name = identifier
            return metric
    elif callable(identifier):
        return MeanMetricWrapper(identifier, name=getattr(identifier, "__name__", "metric"))
    raise ValueError(f"Unknown metric: {identifier!r}. Valid names: "
                     f"{sorted(['accuracy', 'acc', *_FUNCTIONS, *_CLASSES])}")


def _snake(name):
    from .metric import to_snake_case
    return to_snake_case(name)


def serialize(metric):
    from ..saving.training import serialize_metrics
    return serialize_metrics(metric)


def deserialize(config, custom_objects=None):
    from ..saving.serialization import custom_object_scope
    from ..saving.training import deserialize_metrics
    with custom_object_scope(custom_objects):
        return get(deserialize_metrics(config))
