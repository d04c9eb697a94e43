"""R2Score (Keras 3's): the coefficient of determination per output column,
1 - sum((y - p)^2) / sum((y - mean(y))^2) from streaming sums, aggregated over the
columns; with `num_regressors`, the adjusted R^2."""
from __future__ import annotations

import warnings

import numpy as np

from kcompile.ir import builder as F
from .confusion import _same_rank
from .metric import Metric, as_tensor


class R2Score(Metric):
    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        valid = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in valid:
            raise ValueError("Invalid value for argument `class_aggregation`. Expected one of "
                             f"{valid}. Received: class_aggregation={class_aggregation}")
        if num_regressors < 0:
            raise ValueError("Invalid value for argument `num_regressors`. Expected a value "
                             f">= 0. Received: num_regressors={num_regressors}")
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self.num_samples = self.add_variable(shape=(), initializer="zeros", name="num_samples")
        self._built = False

    @property
    def _eager_result(self):
        # the adjusted score branches on the sample count: computed outside the step
        return self.num_regressors != 0

    def _build(self, y_true_shape, y_pred_shape):
        if len(y_pred_shape) != 2 or len(y_true_shape) != 2:
            raise ValueError("R2Score expects 2D inputs with shape (batch_size, output_dim). "
                             f"Received input shapes: y_pred.shape={y_pred_shape} and "
                             f"y_true.shape={y_true_shape}.")
        n = y_pred_shape[-1]
        self.squared_sum = self.add_variable(name="squared_sum", shape=(n,), initializer="zeros")
        self.sum = self.add_variable(name="sum", shape=(n,), initializer="zeros")
        self.total_mse = self.add_variable(name="residual", shape=(n,), initializer="zeros")
        self.count = self.add_variable(name="count", shape=(n,), initializer="zeros")
        self._built = True

    def _vars(self):
        return [self.sum, self.squared_sum, self.total_mse, self.count, self.num_samples]

    def _increments(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _same_rank(F.cast(y_true, "float32"), F.cast(y_pred, "float32"))
        if sample_weight is None:
            w = F.broadcast_to(F.lift(y_true.g, 1.0), y_true.shape)
        else:
            w = F.cast(sample_weight, "float32")
            if w.ndim == 1:
                w = F.expand_dims(w, 1)
            w = F.broadcast_to(w, y_true.shape)
        wy = y_true * w
        return (F.sum(wy, axis=0), F.sum(y_true * wy, axis=0),
                F.sum(F.square(y_true - y_pred) * w, axis=0), F.sum(w, axis=0),
                F.lift(y_true.g, float(y_true.type.size)))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
        if not self._built:
            shapes = [tuple(y_true.shape), tuple(y_pred.shape)]
            if len(shapes[0]) == 1 and len(shapes[1]) == 2 and shapes[1][-1] == 1:
                shapes[0] = shapes[0] + (1,)
            self._build(*shapes)
        args = [y_true, y_pred] + ([as_tensor(sample_weight)] if sample_weight is not None
                                   else [])
        self.accumulate(self._vars(), self.stateless(self._increments, *args))

    def _raw(self, total_sum, squared_sum, total_mse, count):
        mean = total_sum / count
        total = squared_sum - total_sum * mean
        raw = 1.0 - total_mse / total
        raw = F.select(F.greater(F.abs(raw), 3.4e38), 0.0, raw)   # inf -> 0
        if self.class_aggregation == "uniform_average":
            return F.mean(raw)
        if self.class_aggregation == "variance_weighted_average":
            return F.sum(total * raw) / F.sum(total)
        return raw

    def result(self):
        if not self._built:
            raise ValueError("R2Score: result() before any update_state()")
        r2 = self.stateless(self._raw, self.sum, self.squared_sum, self.total_mse, self.count)
        if self.num_regressors == 0:
            return r2
        # The adjustment needs the sample count as a number: computed on the values now.
        n, p = float(np.asarray(self.num_samples)), float(self.num_regressors)
        if p > n - 1:
            warnings.warn("More independent predictors than datapoints in adjusted R2 score. "
                          "Falling back to standard R2 score.", stacklevel=2)
            return r2
        if p == n - 1:
            warnings.warn("Division by zero in Adjusted R2 score. Falling back to standard "
                          "R2 score.", stacklevel=2)
            return r2
        return 1.0 - (1.0 - np.asarray(r2)) * (n - 1.0) / (n - p - 1.0)

    def get_config(self):
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}
