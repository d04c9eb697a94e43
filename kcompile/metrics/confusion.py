"""Metrics on confusion-matrix counts at thresholds (Keras 3's confusion_metrics):
TruePositives / FalsePositives / TrueNegatives / FalseNegatives, Precision, Recall
(with `thresholds`, `top_k`, `class_id`) and AUC (ROC, PR, PRGAIN curves).

A prediction counts as positive at threshold t when it is > t; a label is positive
when it is nonzero. When the thresholds are evenly spaced over [0, 1] (AUC's), Keras
buckets clipped predictions; comparing the clipped predictions with each threshold
gives the same counts.
"""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .. import config
from .metric import Metric, as_tensor
from .reduction import _divide_no_nan

NEG_INF = -1e10


def _to_list(x):
    return list(x) if isinstance(x, (list, tuple, np.ndarray)) else [x]


def parse_thresholds(thresholds, default):
    if thresholds is not None:
        bad = [t for t in _to_list(thresholds) if t is None or t < 0 or t > 1]
        if bad:
            raise ValueError(f"Threshold values must be in [0, 1]. Received: {bad}")
    return [float(t) for t in _to_list(default if thresholds is None else thresholds)]


def evenly_distributed(thresholds) -> bool:
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=config.epsilon()))


def _same_rank(x1, x2, expand_rank_1=True):
    """Keras' squeeze_or_expand_to_same_rank: a trailing axis of 1 squeezed (or the
    rank-1 partner expanded)."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            return x1, F.expand_dims(x2, -1)
        return F.squeeze(x1, -1), x2
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            return F.expand_dims(x1, -1), x2
        return x1, F.squeeze(x2, -1)
    return x1, x2


def filter_top_k(x, k):
    """x where it is among the k largest of its row, NEG_INF elsewhere."""
    from kcompile import ops
    _, idx = ops.top_k(x, k)
    keep = F.sum(F.one_hot(idx, x.shape[-1]), axis=-2)
    return x * keep + NEG_INF * (1.0 - keep)


def confusion_counts(y_true, y_pred, sample_weight, thresholds, which, top_k=None,
                     class_id=None, multi_label=False, label_weights=None, clip=False):
    """{"tp"|"fp"|"tn"|"fn": weighted count per threshold} for the batch: shape
    (thresholds,), or (thresholds, labels) with multi_label."""
    y_true = F.cast(y_true, "float32")
    y_pred = F.cast(y_pred, "float32")
    y_pred, y_true = _same_rank(y_pred, y_true)
    if sample_weight is not None:
        w = F.expand_dims(F.cast(sample_weight, "float32"), -1)
        _, w = _same_rank(y_true, w, expand_rank_1=False)
        sample_weight = w
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError("When class_id is provided, y_pred must be a 2D array with shape "
                             f"(num_samples, num_classes), found shape: {y_pred.shape}")
        if not 0 <= class_id < y_pred.shape[-1]:
            raise ValueError(f"class_id={class_id} is out of range for predictions with "
                             f"{y_pred.shape[-1]} classes")
        y_true = F.slice_axis(y_true, -1, class_id, class_id + 1)
        y_pred = F.slice_axis(y_pred, -1, class_id, class_id + 1)
    if clip:
        y_pred = F.clip(y_pred, 0.0, 1.0)
    weight = None
    if sample_weight is not None:
        weight = F.broadcast_to(sample_weight, y_pred.shape)
    if label_weights is not None and not multi_label:
        lw = F.broadcast_to(F.lift(y_pred.g, np.asarray(label_weights, np.float32)),
                            y_pred.shape)
        weight = lw if weight is None else weight * lw
    label = F.not_equal(y_true, 0.0)
    label = F.broadcast_to(label, y_pred.shape)
    if not multi_label:
        y_pred, label = F.reshape(y_pred, (-1,)), F.reshape(label, (-1,))
        weight = F.reshape(weight, (-1,)) if weight is not None else None
    thr = np.asarray(thresholds, np.float32).reshape((-1,) + (1,) * y_pred.ndim)
    pred_pos = F.greater(F.expand_dims(y_pred, 0), F.lift(y_pred.g, thr))   # (T, N[, L])
    label = F.expand_dims(label, 0)
    if weight is not None:
        weight = F.expand_dims(weight, 0)
    pairs = {"tp": (label, pred_pos), "fn": (label, 1.0 - pred_pos),
             "fp": (1.0 - label, pred_pos), "tn": (1.0 - label, 1.0 - pred_pos)}
    out = {}
    for key in which:
        lab, pred = pairs[key]
        hit = lab * pred
        if weight is not None:
            hit = hit * weight
        out[key] = F.sum(hit, axis=1)
    return out


class _ThresholdCounts(Metric):
    """Shared by the metrics counting confusion-matrix entries at thresholds."""
    _counts = ()            # which of tp/fp/tn/fn the metric keeps, in variable order

    def _init_thresholds(self, thresholds, top_k=None, class_id=None):
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        self.thresholds = parse_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        self._thresholds_distributed_evenly = evenly_distributed(self.thresholds)

    def _count_variables(self):
        return [getattr(self, _NAMES[c]) for c in self._counts]

    def _increments(self, y_true, y_pred, sample_weight=None):
        counts = confusion_counts(y_true, y_pred, sample_weight, self.thresholds, self._counts,
                                  top_k=self.top_k, class_id=self.class_id,
                                  clip=self._thresholds_distributed_evenly)
        return tuple(counts[c] for c in self._counts)

    def update_state(self, y_true, y_pred, sample_weight=None):
        args = [as_tensor(y_true), as_tensor(y_pred)]
        if sample_weight is not None:
            args.append(as_tensor(sample_weight))
        self.accumulate(self._count_variables(), self.stateless(self._increments, *args))

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


_NAMES = {"tp": "true_positives", "fp": "false_positives", "tn": "true_negatives",
          "fn": "false_negatives"}


def _first_if_single(values, n):
    return values[0] if n == 1 else values * 1.0


class _ConfusionMatrixConditionCount(_ThresholdCounts):
    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._init_thresholds(thresholds)
        self.accumulator = self.add_variable(shape=(len(self.thresholds),),
                                             initializer="zeros", name="accumulator")

    def _count_variables(self):
        return [self.accumulator]

    def result(self):
        return self.stateless(self._result, self.accumulator)

    def _result(self, acc):
        return _first_if_single(acc, len(self.thresholds))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds}


def _count_class(cls_name, count, doc):
    return type(cls_name, (_ConfusionMatrixConditionCount,),
                {"_counts": (count,), "__doc__": doc, "__module__": __name__})


TruePositives = _count_class("TruePositives", "tp", "The weighted number of true positives.")
FalsePositives = _count_class("FalsePositives", "fp", "The weighted number of false positives.")
TrueNegatives = _count_class("TrueNegatives", "tn", "The weighted number of true negatives.")
FalseNegatives = _count_class("FalseNegatives", "fn", "The weighted number of false negatives.")


class Precision(_ThresholdCounts):
    """tp / (tp + fp) at each threshold (of the top_k predictions, of class_id)."""
    _counts = ("tp", "fp")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._init_thresholds(thresholds, top_k, class_id)
        n = len(self.thresholds)
        self.true_positives = self.add_variable(shape=(n,), initializer="zeros",
                                                name="true_positives")
        self.false_positives = self.add_variable(shape=(n,), initializer="zeros",
                                                 name="false_positives")

    def result(self):
        return self.stateless(self._result, self.true_positives, self.false_positives)

    def _result(self, tp, other):
        return _first_if_single(_divide_no_nan(tp, tp + other), len(self.thresholds))


class Recall(Precision):
    """tp / (tp + fn) at each threshold (of the top_k predictions, of class_id)."""
    _counts = ("tp", "fn")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        _ThresholdCounts.__init__(self, name=name, dtype=dtype)
        self._init_thresholds(thresholds, top_k, class_id)
        n = len(self.thresholds)
        self.true_positives = self.add_variable(shape=(n,), initializer="zeros",
                                                name="true_positives")
        self.false_negatives = self.add_variable(shape=(n,), initializer="zeros",
                                                 name="false_negatives")

    def result(self):
        return self.stateless(self._result, self.true_positives, self.false_negatives)
