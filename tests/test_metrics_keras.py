"""Stateful metrics against Keras 3's own results (tests/fixtures/metrics/, written by
make_metric_fixtures.py with real Keras): after each of three batches (streaming
state), with and without sample weights, and after reset_state."""
import json
import os

import numpy as np
import pytest

from kcompile import metrics

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "metrics", "keras_metrics.json")
with open(FIXTURE) as f:
    CASES = json.load(f)["cases"]


def _id(case):
    return f"{case['class']}-{json.dumps(case['config'], sort_keys=True)}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_streaming_result_matches_keras(case):
    metric = getattr(metrics, case["class"])(**case["config"])
    for (y, p, w), want in zip(case["batches"], case["results"]):
        metric.update_state(np.asarray(y, np.float32), np.asarray(p, np.float32),
                            sample_weight=None if w is None else np.asarray(w, np.float32))
        np.testing.assert_allclose(np.asarray(metric.result()), np.asarray(want, np.float32),
                                   rtol=2e-5, atol=2e-6)
    metric.reset_state()
    if case["after_reset"] is not None:
        np.testing.assert_allclose(np.asarray(metric.result()), case["after_reset"], atol=1e-7)
