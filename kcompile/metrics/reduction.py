"""Sum, Mean and MeanMetricWrapper: running totals over weighted values (Keras 3's
reduction metrics). A MeanMetricWrapper holds a function giving one value per sample
(or per entry); its result is the weighted mean over every sample seen since the
last reset."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .metric import Metric, as_tensor, is_symbolic


def _expand_or_squeeze(values, weight):
    """Keras' squeeze_or_expand_to_same_rank for a weight against values."""
    if weight.ndim == values.ndim + 1 and weight.shape[-1] == 1:
        return F.squeeze(weight, -1)
    if values.ndim == weight.ndim + 1 and values.shape[-1] == 1:
        return F.expand_dims(weight, -1)
    return weight


def samplewise(values, sample_weight, mean=True):
    """(values reduced to one per sample and weighted, the weights per sample), as
    Keras' reduce_to_samplewise_values: the weight may cover the leading axes only."""
    values = F.cast(values, "float32")
    reduce = F.mean if mean else F.sum
    if sample_weight is not None:
        w = _expand_or_squeeze(values, F.cast(sample_weight, "float32"))
        if w.ndim > values.ndim:
            # per-entry weights (an output's mask over time steps) for a metric giving one
            # value per sample: the sample counts if any of its entries does
            w = F.max(w, axis=tuple(range(values.ndim, w.ndim)))
        if values.ndim > w.ndim:
            values = reduce(values, axis=tuple(range(w.ndim, values.ndim)))
        w = F.broadcast_to(w, values.shape)
        values = values * w
        if w.ndim > 1:
            w = reduce(w, axis=tuple(range(1, w.ndim)))
        sample_weight = w
    if values.ndim > 1:
        values = reduce(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


def _sum_increment(values, sample_weight=None):
    values, _ = samplewise(values, sample_weight, mean=False)
    return F.sum(values)


def _mean_increments(values, sample_weight=None):
    values, weight = samplewise(values, sample_weight)
    if weight is not None:
        count = F.sum(weight)
    else:
        count = F.lift(values.g, float(values.shape[0] if values.ndim else 1))
    return F.sum(values), count


class Sum(Metric):
    """The weighted sum of the given values."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, values, sample_weight=None):
        args = [as_tensor(values)] + ([as_tensor(sample_weight)] if sample_weight is not None
                                      else [])
        inc = self.stateless(_sum_increment, *args)
        self.total.assign(self.total + inc)

    def result(self):
        return self.stateless(lambda t: t * 1.0, self.total)


class Mean(Metric):
    """The weighted mean of the given values: total / count."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, values, sample_weight=None):
        args = [as_tensor(values)] + ([as_tensor(sample_weight)] if sample_weight is not None
                                      else [])
        self.accumulate([self.total, self.count], self.stateless(_mean_increments, *args))

    # The trainer reads this result after the step: one float32 division here keeps the
    # step free of a scalar kernel after the batch's sums.
    _eager_result = True

    def result(self):
        if is_symbolic(self.total):
            return self.stateless(_divide_no_nan, self.total, self.count)
        total, count = np.float32(self.total.value), np.float32(self.count.value)
        return np.float32(0.0) if count == 0 else total / count


def _divide_no_nan(a, b):
    """a / b, 0 where b is 0 (Keras' ops.divide_no_nan)."""
    nonzero = F.not_equal(b, 0.0)
    return F.select(nonzero, a / F.select(nonzero, b, 1.0), 0.0)


class MeanMetricWrapper(Mean):
    """The mean of `fn(y_true, y_pred, **kwargs)` over the samples (and entries) seen."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "mean_metric_wrapper"),
                         dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    @property
    def fn(self):
        return self._fn

    def _increments(self, y_true, y_pred, sample_weight=None):
        return _mean_increments(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def update_state(self, y_true, y_pred, sample_weight=None):
        args = [as_tensor(y_true), as_tensor(y_pred)]
        if sample_weight is not None:
            args.append(as_tensor(sample_weight))
        self.accumulate([self.total, self.count], self.stateless(self._increments, *args))

    def get_config(self):
        from ..saving.serialization import get_registered_name
        config = {**super().get_config(), **self._fn_kwargs}
        if type(self) is MeanMetricWrapper:
            config["fn"] = get_registered_name(self._fn)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if cls is MeanMetricWrapper and isinstance(config.get("fn"), str):
            from . import get_function
            config["fn"] = get_function(config["fn"])
        return cls(**config)
