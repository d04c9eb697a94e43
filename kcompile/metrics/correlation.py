"""Correlation metrics (Keras 3's correlation_metrics): per-sample Pearson and
concordance coefficients along an axis, averaged over the samples."""
from __future__ import annotations

from kcompile.ir import builder as F
from .. import config
from .accuracy import _wrapper
from .confusion import _same_rank


def pearson_correlation(y_true, y_pred, axis=-1):
    y_true, y_pred = _same_rank(F.cast(y_true, "float32"), F.cast(y_pred, "float32"))
    t = y_true - F.mean(y_true, axis=axis, keepdims=True)
    p = y_pred - F.mean(y_pred, axis=axis, keepdims=True)
    t = t / F.sqrt(F.mean(F.square(t), axis=axis, keepdims=True))
    p = p / F.sqrt(F.mean(F.square(p), axis=axis, keepdims=True))
    return F.mean(t * p, axis=axis)


def concordance_correlation(y_true, y_pred, axis=-1):
    y_true, y_pred = _same_rank(F.cast(y_true, "float32"), F.cast(y_pred, "float32"))
    t_mean = F.mean(y_true, axis=axis, keepdims=True)
    p_mean = F.mean(y_pred, axis=axis, keepdims=True)

    def var(x):
        c = x - F.mean(x, axis=axis, keepdims=True)
        return F.mean(F.square(c), axis=axis, keepdims=True)
    # Keras centres y_true on the predictions' mean in the covariance term; kept as is
    covar = (y_true - p_mean) * (y_pred - p_mean)
    norm = var(y_true - t_mean) + var(y_pred - p_mean) + F.square(t_mean - p_mean)
    return F.mean(2.0 * covar / (norm + config.epsilon()), axis=axis)


PearsonCorrelation = _wrapper("PearsonCorrelation", pearson_correlation, "pearson_correlation",
                              "Mean Pearson correlation of labels and predictions along `axis`.",
                              axis=-1)
ConcordanceCorrelation = _wrapper("ConcordanceCorrelation", concordance_correlation,
                                  "concordance_correlation",
                                  "Mean concordance correlation along `axis`.", axis=-1)
