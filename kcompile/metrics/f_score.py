"""F-scores (Keras 3's FBetaScore and F1Score): per-class true/false positive and
false negative counts, combined as (1 + beta^2) * P * R / (beta^2 * P + R)."""
from __future__ import annotations

from kcompile.ir import builder as F
from .. import config
from .metric import Metric, as_tensor


class FBetaScore(Metric):
    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("Invalid `average` argument value. Expected one of: "
                             f"{{None, 'micro', 'macro', 'weighted'}}. Received: average={average}")
        if not isinstance(beta, float):
            raise ValueError("Invalid `beta` argument value. It should be a Python float. "
                             f"Received: beta={beta} of type '{type(beta)}'")
        if beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be > 0. Received: "
                             f"beta={beta}")
        if threshold is not None:
            if not isinstance(threshold, float):
                raise ValueError("Invalid `threshold` argument value. It should be a Python "
                                 f"float. Received: threshold={threshold} of type "
                                 f"'{type(threshold)}'")
            if threshold > 1.0 or threshold <= 0.0:
                raise ValueError("Invalid `threshold` argument value. It should verify "
                                 f"0 < threshold <= 1. Received: threshold={threshold}")
        self.average, self.beta, self.threshold = average, beta, threshold
        self.axis = None if average == "micro" else 0
        self._built = False

    def _build(self, y_true_shape, y_pred_shape):
        if len(y_pred_shape) != 2 or len(y_true_shape) != 2:
            raise ValueError("FBetaScore expects 2D inputs with shape (batch_size, output_dim). "
                             f"Received input shapes: y_pred.shape={y_pred_shape} and "
                             f"y_true.shape={y_true_shape}.")
        shape = () if self.average == "micro" else (y_pred_shape[-1],)
        for name in ("true_positives", "false_positives", "false_negatives",
                     "intermediate_weights"):
            setattr(self, name, self.add_variable(shape=shape, initializer="zeros", name=name))
        self._built = True

    def _increments(self, y_true, y_pred, sample_weight=None):
        y_true = F.cast(y_true, "float32")
        y_pred = F.cast(y_pred, "float32")
        if self.threshold is None:
            top = F.max(y_pred, axis=-1, keepdims=True)
            y_pred = F.greater_equal(y_pred, top) * F.greater(F.abs(y_pred), 1e-9)
        else:
            y_pred = F.greater(y_pred, self.threshold)

        def weighted_sum(v):
            if sample_weight is not None:
                v = v * F.expand_dims(F.cast(sample_weight, "float32"), 1)
            return F.sum(v, axis=self.axis)
        return (weighted_sum(y_pred * y_true), weighted_sum(y_pred * (1.0 - y_true)),
                weighted_sum((1.0 - y_pred) * y_true), weighted_sum(y_true))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
        if not self._built:
            self._build(tuple(y_true.shape), tuple(y_pred.shape))
        args = [y_true, y_pred] + ([as_tensor(sample_weight)] if sample_weight is not None
                                   else [])
        self.accumulate(self._vars(), self.stateless(self._increments, *args))

    def _vars(self):
        return [self.true_positives, self.false_positives, self.false_negatives,
                self.intermediate_weights]

    def _result(self, tp, fp, fn, weights):
        eps = config.epsilon()
        precision = tp / (tp + fp + eps)
        recall = tp / (tp + fn + eps)
        b2 = self.beta ** 2
        f = precision * recall / (b2 * precision + recall + eps) * (1.0 + b2)
        if self.average == "weighted":
            return F.sum(f * (weights / (F.sum(weights) + eps)))
        if self.average is not None:
            return F.mean(f)
        return f

    def result(self):
        if not self._built:
            raise ValueError(f"{type(self).__name__}: result() before any update_state()")
        return self.stateless(self._result, *self._vars())

    def reset_state(self):
        if self._built:
            super().reset_state()

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config
