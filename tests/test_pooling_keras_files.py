"""Files written by real Keras 3 (tests/fixtures/make_pooling_fixtures.py, JAX backend)
with the pooling, reshaping and activation layers: each loads with
kcompile.models.load_model, predicts Keras' outputs (compiled), and for the models
without weights the gradient of sum_i <y_i, r_i> with respect to the input equals
Keras' (inputs with ties: max pooling routes each window's gradient as Keras does)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from kcompile import models
from kcompile.ir import builder as F
from kcompile.ir.interpret import interpret
from kcompile.ir.passes import autodiff
from kcompile.tracing import Trace, tracing

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "pooling")
WITHOUT_WEIGHTS = ["pool2d", "pool2d_first", "pool1d", "reshaping2d", "reshaping1d",
                   "activations"]
FILES = [(n, "keras") for n in WITHOUT_WEIGHTS] + [
    ("small_net", "keras"), ("small_net", "h5"), ("masked_average", "keras"),
    ("masked_average", "h5")]


def _data(name):
    with np.load(os.path.join(HERE, f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def _outputs(data, prefix):
    return [data[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in data))]


@pytest.mark.parametrize("name,ext", FILES, ids=[f"{n}.{e}" for n, e in FILES])
def test_keras_file_predicts_keras_outputs(name, ext):
    data = _data(name)
    model = models.load_model(os.path.join(HERE, f"{name}.{ext}"))
    got = model.predict(data["x"], verbose=0)
    got = got if isinstance(got, list) else [got]
    want = _outputs(data, "y")
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, (i, model.layers[i + 1].name, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5,
                                   err_msg=f"output {i} ({model.output_names[i] if hasattr(model, 'output_names') else i})")


@pytest.mark.parametrize("name", WITHOUT_WEIGHTS)
def test_keras_file_input_gradient_matches_keras(name):
    data = _data(name)
    model = models.load_model(os.path.join(HERE, f"{name}.keras"))
    trace = Trace()
    with tracing(trace):
        x = trace.input("x", data["x"].shape)
        ys = model.forward([x])
        rs = _outputs(data, "r")
        loss = None
        for y, r in zip(ys, rs):
            term = F.sum(y * F.lift(x.g, r))
            loss = term if loss is None else loss + term
        trace.graph.outputs["loss"] = loss.id
    outs, _ = interpret(autodiff(trace.graph, wrt_role="input"), {"x": data["x"]})
    np.testing.assert_allclose(outs["grad/x"], data["grad"], rtol=1e-5, atol=1e-5)
