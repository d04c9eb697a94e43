"""AUC: the area under the ROC, PR or PR-gain curve, from confusion counts at
`num_thresholds` thresholds (Keras 3's AUC, with its Riemann sums and, for PR with
interpolation, Davis & Goadrich's interpolation between thresholds)."""
from __future__ import annotations

import numpy as np

from kcompile.ir import builder as F
from .. import config
from .confusion import confusion_counts
from .metric import Metric, as_tensor
from .reduction import _divide_no_nan

CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
SUMMATIONS = ("interpolation", "majoring", "minoring")


class AUC(Metric):
    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        if str(curve).lower() not in CURVES:
            raise ValueError(f'Invalid AUC curve value: "{curve}". Expected values are '
                             f'["PR", "ROC", "PRGAIN"]')
        if str(summation_method).lower() not in SUMMATIONS:
            raise ValueError(f'Invalid AUC summation method value: "{summation_method}". '
                             f'Expected values are ["interpolation", "majoring", "minoring"]')
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
            self._evenly = bool(np.allclose([0.0] + inner + [1.0],
                                            np.arange(len(inner) + 2) / (len(inner) + 1),
                                            atol=config.epsilon())) and len(inner) + 2 >= 3
        else:
            if not isinstance(num_thresholds, (int, np.integer)) or num_thresholds <= 1:
                raise ValueError("Argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly = True
        eps = config.epsilon()
        self._thresholds = np.array([0.0 - eps] + inner + [1.0 + eps])
        self.curve = CURVES[str(curve).lower()]
        self.summation_method = str(summation_method).lower()
        super().__init__(name=name, dtype=dtype)
        self.multi_label = multi_label
        self.num_labels = num_labels
        self.label_weights = None if label_weights is None else \
            np.asarray(label_weights, np.float32)
        self._from_logits = from_logits
        self._built = False
        if multi_label:
            if num_labels:
                self._build((None, num_labels))
        else:
            if num_labels:
                raise ValueError("`num_labels` is needed only when `multi_label` is True.")
            self._build(None)

    @property
    def thresholds(self):
        return list(self._thresholds)

    def _build(self, shape):
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError("`y_pred` must have rank 2 when `multi_label=True`. Found rank "
                                 f"{len(shape)}. Full shape received for `y_pred`: {shape}")
            self._num_labels = shape[1]
            var_shape = (self.num_thresholds, self._num_labels)
        else:
            var_shape = (self.num_thresholds,)
        for name in ("true_positives", "false_positives", "true_negatives", "false_negatives"):
            setattr(self, name, self.add_variable(shape=var_shape, initializer="zeros",
                                                  name=name))
        self._built = True

    def _counts(self):
        return [self.true_positives, self.false_positives, self.true_negatives,
                self.false_negatives]

    def _increments(self, y_true, y_pred, sample_weight=None):
        if self._from_logits:
            y_pred = F.sigmoid(y_pred)
        counts = confusion_counts(y_true, y_pred, sample_weight, self._thresholds,
                                  ("tp", "fp", "tn", "fn"), multi_label=self.multi_label,
                                  label_weights=None if self.multi_label else self.label_weights,
                                  clip=self._evenly)
        return counts["tp"], counts["fp"], counts["tn"], counts["fn"]

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
        if not self._built:
            self._build(tuple(y_pred.shape))
        args = [y_true, y_pred] + ([as_tensor(sample_weight)] if sample_weight is not None
                                   else [])
        self.accumulate(self._counts(), self.stateless(self._increments, *args))

    def result(self):
        if not self._built:     # multi_label, nothing seen yet
            return np.float32(0.0)
        return self.stateless(self._result, *self._counts())

    def _by_label(self, per_label):
        if not self.multi_label:
            return F.sum(per_label)
        by_label = F.sum(per_label, axis=0)
        if self.label_weights is None:
            return F.mean(by_label)
        lw = F.lift(by_label.g, self.label_weights)
        return _divide_no_nan(F.sum(by_label * lw), F.sum(lw))

    def _interpolate_pr_auc(self, tp, fp, fn):
        n = self.num_thresholds
        head = lambda x: F.slice_axis(x, 0, 0, n - 1)      # noqa: E731
        tail = lambda x: F.slice_axis(x, 0, 1, n)          # noqa: E731
        dtp = head(tp) - tail(tp)
        p = tp + fp
        dp = head(p) - tail(p)
        prec_slope = _divide_no_nan(dtp, F.maximum(dp, 0.0))
        intercept = tail(tp) - prec_slope * tail(p)
        both = F.greater(head(p), 0.0) * F.greater(tail(p), 0.0)
        safe_ratio = F.select(both, _divide_no_nan(head(p), F.maximum(tail(p), 0.0)), 1.0)
        increment = _divide_no_nan(prec_slope * (dtp + intercept * F.log(safe_ratio)),
                                   F.maximum(tail(tp) + tail(fn), 0.0))
        return self._by_label(increment)

    def _result(self, tp, fp, tn, fn):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc(tp, fp, fn)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:
            scale = _divide_no_nan(tp + fn, tn + fp)
            no_tp = F.equal(tp, 0.0)
            recall_gain = F.select(no_tp, 0.0, 1.0 - scale * _divide_no_nan(fn, tp))
            precision_gain = F.select(no_tp, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
            x, y = F.maximum(recall_gain, 0.0), precision_gain
        n = self.num_thresholds
        y0, y1 = F.slice_axis(y, 0, 0, n - 1), F.slice_axis(y, 0, 1, n)
        if self.summation_method == "interpolation":
            heights = (y0 + y1) / 2.0
        elif self.summation_method == "minoring":
            heights = F.minimum(y0, y1)
        else:
            heights = F.maximum(y0, y1)
        widths = F.slice_axis(x, 0, 0, n - 1) - F.slice_axis(x, 0, 1, n)
        return self._by_label(widths * heights)

    def reset_state(self):
        if self._built:
            super().reset_state()

    def get_config(self):
        config = {**super().get_config(), "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": self.multi_label, "num_labels": self.num_labels,
                  "label_weights": None if self.label_weights is None
                  else self.label_weights.tolist(),
                  "from_logits": self._from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config
