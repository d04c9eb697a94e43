"""Stateful metrics across ranks.

A compiled metric keeps its accumulators (totals, counts, confusion matrices...) as
model state the step updates. Each step, every rank's change to them is summed over
ranks (in the step's allreduce when they fit its log slot) and added to the values
before the step, so every rank holds
the accumulators of all ranks' samples; the metric's result is then computed from
them (as a single process would from its own), and every rank logs the same number.
A model without such metrics costs nothing here.
"""
from __future__ import annotations

import numpy as np


class MetricStates:
    def __init__(self, model, world):
        self.model, self.world = model, world
        self.variables = list(getattr(model, "metrics_variables", None) or [])
        self._before = None
        self._results = None        # log name -> (metric, key in its result dict or None)

    def __bool__(self):
        return bool(self.variables)

    def mark(self) -> None:
        """Remember the accumulators before a step."""
        self._before = [np.array(v.value) for v in self.variables]

    def changes(self) -> np.ndarray:
        """This rank's change to the accumulators since `mark`, flat."""
        return np.concatenate([(np.asarray(v.value, np.float32) - b).ravel()
                               for v, b in zip(self.variables, self._before)])

    def combine(self, summed: np.ndarray) -> None:
        """Accumulators <- before + the sum over ranks of the changes (`summed`)."""
        at = 0
        for v, b in zip(self.variables, self._before):
            np.copyto(v.value, (b + summed[at:at + b.size].reshape(b.shape)).astype(b.dtype))
            at += b.size

    def results(self, out: dict) -> dict:
        """out with the metric results the step computed from this rank's accumulators
        replaced by those of the combined ones."""
        table = self._table()
        for name, (kind, *rest) in self.model._log_kinds.items():
            if kind == "state" and name in table:
                metric, key = table[name]
                value = metric.result()
                out[rest[0]] = np.asarray(value[key] if key is not None else value, np.float32)
        return out

    def _table(self):
        """Log name -> (metric, result key), named as the trainer names them: the
        output's name as prefix when the model has several, `weighted_` for a weighted
        metric whose name a plain one took, the keys of a result that is a dict."""
        if self._results is None:
            names = list(self.model.output_names)
            table = {}
            for (kind, i, _), metric in self.model._metric_objects.items():
                result = metric.result()
                if isinstance(result, dict):
                    table.update({k: (metric, k) for k in result})
                    continue
                prefix = f"{names[i]}_" if len(names) > 1 else ""
                name = prefix + metric.name
                if kind == "weighted" and name in table:
                    name = prefix + "weighted_" + metric.name
                table[name] = (metric, None)
            self._results = table
        return self._results
