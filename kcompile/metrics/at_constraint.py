"""One rate at the best threshold where another rate meets a bound (Keras 3's
SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall,
RecallAtPrecision): confusion counts at `num_thresholds` thresholds spread over
[0, 1]; the result is the largest dependent rate among the thresholds whose
constrained rate is >= the given value (0 when none is)."""
from __future__ import annotations

from kcompile.ir import builder as F
from .confusion import confusion_counts
from .metric import Metric, as_tensor
from .reduction import _divide_no_nan


class SensitivitySpecificityBase(Metric):
    _argument = "value"

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        if value < 0 or value > 1:
            raise ValueError(f"Argument `{self._argument}` must be in the range [0, 1]. "
                             f"Received: {self._argument}={value}")
        if num_thresholds <= 0:
            raise ValueError("Argument `num_thresholds` must be an integer > 0. "
                             f"Received: num_thresholds={num_thresholds}")
        super().__init__(name=name, dtype=dtype)
        self.value = value
        self.num_thresholds = num_thresholds
        self.class_id = class_id
        if num_thresholds == 1:
            self.thresholds, self._evenly = [0.5], False
        else:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.thresholds, self._evenly = [0.0] + inner + [1.0], True
        n = len(self.thresholds)
        for var in ("true_positives", "false_positives", "true_negatives", "false_negatives"):
            setattr(self, var, self.add_variable(shape=(n,), initializer="zeros", name=var))

    def _counts(self):
        return [self.true_positives, self.false_positives, self.true_negatives,
                self.false_negatives]

    def _increments(self, y_true, y_pred, sample_weight=None):
        c = confusion_counts(y_true, y_pred, sample_weight, self.thresholds,
                             ("tp", "fp", "tn", "fn"), class_id=self.class_id,
                             clip=self._evenly)
        return c["tp"], c["fp"], c["tn"], c["fn"]

    def update_state(self, y_true, y_pred, sample_weight=None):
        args = [as_tensor(y_true), as_tensor(y_pred)]
        if sample_weight is not None:
            args.append(as_tensor(sample_weight))
        self.accumulate(self._counts(), self.stateless(self._increments, *args))

    def result(self):
        return self.stateless(self._result, *self._counts())

    def _result(self, tp, fp, tn, fn):
        constrained, dependent = self._rates(tp, fp, tn, fn)
        feasible = F.greater_equal(constrained, self.value)
        return F.max(F.maximum(F.select(feasible, dependent, 0.0), 0.0))

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id,
                "num_thresholds": self.num_thresholds, self._argument: self.value}


def _sensitivity(tp, fp, tn, fn):
    return _divide_no_nan(tp, tp + fn)


def _specificity(tp, fp, tn, fn):
    return _divide_no_nan(tn, tn + fp)


def _precision(tp, fp, tn, fn):
    return _divide_no_nan(tp, tp + fp)


def _at(cls_name, argument, constrained, dependent, doc):
    def __init__(self, *args, **kwargs):
        if args:
            kwargs[argument] = args[0]
            args = args[1:]
        names = ["num_thresholds", "class_id", "name", "dtype"]
        kwargs.update(zip(names, args))
        if argument not in kwargs:
            raise TypeError(f"{cls_name}() missing required argument: '{argument}'")
        SensitivitySpecificityBase.__init__(self, kwargs.pop(argument), **kwargs)

    def _rates(self, tp, fp, tn, fn):
        return constrained(tp, fp, tn, fn), dependent(tp, fp, tn, fn)
    return type(cls_name, (SensitivitySpecificityBase,),
                {"__init__": __init__, "_rates": _rates, "_argument": argument,
                 "__doc__": doc, "__module__": __name__})


SensitivityAtSpecificity = _at("SensitivityAtSpecificity", "specificity", _specificity,
                               _sensitivity, "Best sensitivity where specificity >= a value.")
SpecificityAtSensitivity = _at("SpecificityAtSensitivity", "sensitivity", _sensitivity,
                               _specificity, "Best specificity where sensitivity >= a value.")
PrecisionAtRecall = _at("PrecisionAtRecall", "recall", _sensitivity, _precision,
                        "Best precision where recall >= a value.")
RecallAtPrecision = _at("RecallAtPrecision", "precision", _precision, _sensitivity,
                        "Best recall where precision >= a value.")
