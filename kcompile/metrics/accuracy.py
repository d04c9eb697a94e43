"""Accuracy metrics (Keras 3's accuracy_metrics): per-sample match functions and the
MeanMetricWrapper classes averaging them."""
from __future__ import annotations

from kcompile.ir import builder as F
from .. import losses
from .reduction import MeanMetricWrapper


def accuracy(y_true, y_pred):
    """1 where the prediction equals the label exactly."""
    y_true, y_pred = losses._align_ranks(F.cast(y_true, "float32"), F.cast(y_pred, "float32"))
    return F.equal(y_true, y_pred)


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


def _in_top_k(labels, y_pred, k):
    """1 where the label's score is among the k largest of its row (ties count as in,
    as Keras' JAX backend does), for labels of any leading shape."""
    from kcompile import ops
    lead = labels.shape
    flat_pred = F.reshape(y_pred, (-1, y_pred.shape[-1]))
    hits = ops.in_top_k(F.reshape(F.cast(labels, "int32"), (-1,)), flat_pred, k)
    return F.reshape(F.cast(hits, "float32"), lead)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    return _in_top_k(F.argmax(F.cast(y_true, "float32")), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = F.squeeze(y_true, -1)
    if from_sorted_ids:
        # y_pred holds the ids of the best classes, best first
        ids = F.slice_axis(F.cast(y_pred, "float32"), -1, 0, k)
        hit = F.equal(F.expand_dims(F.cast(y_true, "float32"), -1), ids)
        return F.max(hit, axis=-1)
    return _in_top_k(y_true, y_pred, k)


def _wrapper(cls_name, fn, default_name, doc, **defaults):
    """A MeanMetricWrapper class with Keras' signature (name, dtype, then fn options)."""
    def __init__(self, name=default_name, dtype=None, **kwargs):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"{cls_name}.__init__() got unexpected keyword arguments "
                            f"{sorted(unknown)}")
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **{**defaults, **kwargs})
    return type(cls_name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": doc,
                                                "__module__": __name__})


Accuracy = _wrapper("Accuracy", accuracy, "accuracy", "How often predictions equal labels.")
BinaryAccuracy = _wrapper("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                          "How often predictions above `threshold` match binary labels.",
                          threshold=0.5)
CategoricalAccuracy = _wrapper("CategoricalAccuracy", categorical_accuracy,
                               "categorical_accuracy",
                               "How often the argmax of predictions matches one-hot labels.")
SparseCategoricalAccuracy = _wrapper("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                     "sparse_categorical_accuracy",
                                     "How often the argmax of predictions matches integer labels.")
TopKCategoricalAccuracy = _wrapper("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                   "top_k_categorical_accuracy",
                                   "How often one-hot labels are in the top `k` predictions.",
                                   k=5)
SparseTopKCategoricalAccuracy = _wrapper(
    "SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy",
    "How often integer labels are in the top `k` predictions.", k=5, from_sorted_ids=False)
