"""Intersection-over-union metrics (Keras 3's iou_metrics): a confusion matrix of
labels (rows) against predicted classes (columns) accumulated over the batches;
IoU of a class = tp / (tp + fp + fn), averaged over the target classes present."""
from __future__ import annotations

from kcompile.ir import builder as F
from .. import config
from .metric import Metric, as_tensor


def confusion_matrix(labels, predictions, num_classes, weights):
    """Weighted counts of (label, prediction) pairs; pairs out of [0, num_classes) or with
    weight 0 add nothing."""
    rows = F.one_hot(F.cast(labels, "int32"), num_classes) * F.expand_dims(weights, -1)
    cols = F.one_hot(F.cast(predictions, "int32"), num_classes)
    return F.matmul(F.transpose(rows), cols)


class _IoUBase(Metric):
    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.sparse_y_true = sparse_y_true
        self.sparse_y_pred = sparse_y_pred
        self.axis = axis
        self.total_cm = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                          name="total_confusion_matrix")

    def _increments(self, y_true, y_pred, sample_weight=None):
        if not self.sparse_y_true:
            y_true = F.argmax(y_true, axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = F.argmax(y_pred, axis=self.axis)
        y_true = F.reshape(F.cast(y_true, "int32"), (-1,))
        y_pred = F.reshape(F.cast(y_pred, "int32"), (-1,))
        if sample_weight is None:
            w = F.broadcast_to(F.lift(y_true.g, 1.0), y_true.shape)
        else:
            w = F.cast(sample_weight, "float32")
            w = F.broadcast_to(F.reshape(w, (-1,)) if w.ndim > 1 else w, y_true.shape)
        t, p = F.cast(y_true, "float32"), F.cast(y_pred, "float32")
        n = float(self.num_classes)
        valid = F.greater_equal(t, 0.0) * F.less(t, n) * F.greater_equal(p, 0.0) * F.less(p, n)
        if self.ignore_class is not None:
            valid = valid * F.not_equal(t, float(self.ignore_class))
        return (confusion_matrix(y_true, y_pred, self.num_classes, w * valid),)

    def update_state(self, y_true, y_pred, sample_weight=None):
        args = [as_tensor(y_true), as_tensor(y_pred)]
        if sample_weight is not None:
            args.append(as_tensor(sample_weight))
        self.accumulate([self.total_cm], self.stateless(self._increments, *args))

    def _iou(self, cm, target_class_ids):
        eps = config.epsilon()
        tp = F.sum(cm * F.lift(cm.g, _eye(self.num_classes)), axis=1)
        denominator = F.sum(cm, axis=0) + F.sum(cm, axis=1) - tp
        pick = F.lift(cm.g, _eye(self.num_classes)[list(target_class_ids)].T)
        tp, denominator = F.matmul(tp[None], pick)[0], F.matmul(denominator[None], pick)[0]
        valid = F.greater(denominator, 1e-9)
        iou = F.select(valid, tp / (denominator + eps), 0.0)
        return F.sum(iou) / (F.sum(valid) + eps)



def _eye(n):
    import numpy as np
    return np.eye(n, dtype=np.float32)


class IoU(_IoUBase):
    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)
        if max(target_class_ids) >= num_classes:
            raise ValueError(f"Target class id {max(target_class_ids)} is out of range, which "
                             f"is [0, {num_classes}).")
        self.target_class_ids = list(target_class_ids)

    def result(self):
        return self.stateless(self._result, self.total_cm)

    def _result(self, cm):
        return self._iou(cm, self.target_class_ids)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "target_class_ids": self.target_class_ids, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}


class BinaryIoU(IoU):
    """IoU of binary predictions thresholded at `threshold`, for `target_class_ids` of 0/1."""

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        super().__init__(2, list(target_class_ids), name=name, dtype=dtype)
        self.threshold = threshold

    def _increments(self, y_true, y_pred, sample_weight=None):
        # as Keras: predictions >= threshold are class 1; labels taken as integers
        y_pred = F.greater_equal(F.cast(y_pred, "float32"), self.threshold)
        return super()._increments(y_true, y_pred, sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype,
                "target_class_ids": self.target_class_ids, "threshold": self.threshold}


class MeanIoU(IoU):
    """IoU averaged over all `num_classes` classes."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, list(range(num_classes)), name=name, dtype=dtype,
                         ignore_class=ignore_class, sparse_y_true=sparse_y_true,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class OneHotIoU(IoU):
    """IoU for one-hot labels and per-class scores (argmax taken on both)."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None,
                 sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, target_class_ids, name=name, dtype=dtype,
                         ignore_class=ignore_class, sparse_y_true=False,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "target_class_ids": self.target_class_ids,
                "name": self.name, "dtype": self.dtype, "ignore_class": self.ignore_class,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class OneHotMeanIoU(MeanIoU):
    """MeanIoU for one-hot labels and per-class scores (argmax taken on both)."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=False, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}
