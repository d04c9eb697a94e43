"""Losses as metrics (Keras 3's regression, probabilistic and hinge metrics): the
mean of a loss function over the samples seen, and RootMeanSquaredError."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .. import losses
from .accuracy import _wrapper
from .reduction import Mean, _mean_increments
from .metric import as_tensor, is_symbolic


def cosine_similarity(y_true, y_pred, axis=-1):
    """The cosine of the angle between labels and predictions (the loss' negative)."""
    return -losses.cosine_similarity(y_true, y_pred, axis=axis)


MeanSquaredError = _wrapper("MeanSquaredError", losses.mean_squared_error,
                            "mean_squared_error", "Mean of squared errors.")
MeanAbsoluteError = _wrapper("MeanAbsoluteError", losses.mean_absolute_error,
                             "mean_absolute_error", "Mean of absolute errors.")
MeanAbsolutePercentageError = _wrapper("MeanAbsolutePercentageError",
                                       losses.mean_absolute_percentage_error,
                                       "mean_absolute_percentage_error",
                                       "Mean of absolute percentage errors.")
MeanSquaredLogarithmicError = _wrapper("MeanSquaredLogarithmicError",
                                       losses.mean_squared_logarithmic_error,
                                       "mean_squared_logarithmic_error",
                                       "Mean of squared logarithmic errors.")
CosineSimilarity = _wrapper("CosineSimilarity", cosine_similarity, "cosine_similarity",
                            "Mean cosine similarity between labels and predictions.", axis=-1)
LogCoshError = _wrapper("LogCoshError", losses.log_cosh, "logcosh",
                        "Mean of the log of the hyperbolic cosine of the errors.")
KLDivergence = _wrapper("KLDivergence", losses.kl_divergence, "kl_divergence",
                        "Mean Kullback-Leibler divergence of predictions from labels.")
Poisson = _wrapper("Poisson", losses.poisson, "poisson", "Mean Poisson loss.")
Hinge = _wrapper("Hinge", losses.hinge, "hinge", "Mean hinge loss.")
SquaredHinge = _wrapper("SquaredHinge", losses.squared_hinge, "squared_hinge",
                        "Mean squared hinge loss.")
CategoricalHinge = _wrapper("CategoricalHinge", losses.categorical_hinge, "categorical_hinge",
                            "Mean categorical hinge loss.")
BinaryCrossentropy = _wrapper("BinaryCrossentropy", losses.binary_crossentropy,
                              "binary_crossentropy", "Mean binary crossentropy.",
                              from_logits=False, label_smoothing=0.0)
CategoricalCrossentropy = _wrapper("CategoricalCrossentropy", losses.categorical_crossentropy,
                                   "categorical_crossentropy", "Mean categorical crossentropy.",
                                   from_logits=False, label_smoothing=0.0, axis=-1)
SparseCategoricalCrossentropy = _wrapper("SparseCategoricalCrossentropy",
                                         losses.sparse_categorical_crossentropy,
                                         "sparse_categorical_crossentropy",
                                         "Mean sparse categorical crossentropy.",
                                         from_logits=False, axis=-1)


def _squared_error_increments(y_true, y_pred, sample_weight=None):
    y_true, y_pred = losses._align_ranks(F.cast(y_true, "float32"), F.cast(y_pred, "float32"))
    return _mean_increments(F.square(y_pred - y_true), sample_weight)


class RootMeanSquaredError(Mean):
    """sqrt(mean((y_pred - y_true)^2)) over every entry seen (Keras' RootMeanSquaredError)."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        args = [as_tensor(y_true), as_tensor(y_pred)]
        if sample_weight is not None:
            args.append(as_tensor(sample_weight))
        self.accumulate([self.total, self.count],
                        self.stateless(_squared_error_increments, *args))

    def result(self):
        return np.sqrt(Mean.result(self)) if not is_symbolic(self.total) else \
            self.stateless(_sqrt_ratio, self.total, self.count)


def _sqrt_ratio(total, count):
    return F.sqrt(_safe_ratio(total, count))


def _safe_ratio(a, b):
    from .reduction import _divide_no_nan
    return _divide_no_nan(a, b)
