"""Files written by real Keras 3 (tests/fixtures/make_attention_fixtures.py, JAX backend)
with the normalization, EinsumDense and attention layers, every weight drawn at random
first: each loads from .keras and .h5 with kcompile.models.load_model and predicts
Keras' outputs (compiled), weights in Keras' order under Keras' names."""
from __future__ import annotations

import os

import numpy as np
import pytest

from kcompile import models

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "attention")
NAMES = ["normalization", "einsum_dense", "mha_self", "mha_cross", "mha_masks", "mha_axes", "gqa",
         "mha_masked", "attention", "attention_masked"]
FILES = [(n, e) for n in NAMES for e in ("keras", "h5")]


def _data(name):
    with np.load(os.path.join(HERE, f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def _series(data, prefix):
    return [data[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in data))]


@pytest.mark.parametrize("name,ext", FILES, ids=[f"{n}.{e}" for n, e in FILES])
def test_keras_file_predicts_keras_outputs(name, ext):
    data = _data(name)
    model = models.load_model(os.path.join(HERE, f"{name}.{ext}"))
    xs = _series(data, "x")
    got = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    got = got if isinstance(got, list) else [got]
    want = _series(data, "y")
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, (i, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6, err_msg=f"{name} output {i}")


def test_multi_head_attention_weights_have_keras_names_and_shapes():
    model = models.load_model(os.path.join(HERE, "mha_cross.keras"))
    (mha,) = [l for l in model.layers if type(l).__name__ == "MultiHeadAttention"]
    # query (4, 8), value (6, 5), key (6, 7); 3 heads, key_dim 2, value_dim 4, output 9
    assert [(w.path, w.shape) for w in mha.weights] == [
        (f"{mha.name}/query/kernel", (8, 3, 2)), (f"{mha.name}/query/bias", (3, 2)),
        (f"{mha.name}/key/kernel", (7, 3, 2)), (f"{mha.name}/key/bias", (3, 2)),
        (f"{mha.name}/value/kernel", (5, 3, 4)), (f"{mha.name}/value/bias", (3, 4)),
        (f"{mha.name}/attention_output/kernel", (3, 4, 9)),
        (f"{mha.name}/attention_output/bias", (9,))]


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_loaded_models_save_and_load_again(tmp_path, ext):
    for name in ("mha_masks", "normalization", "attention"):
        data = _data(name)
        model = models.load_model(os.path.join(HERE, f"{name}.keras"))
        path = str(tmp_path / f"{name}.{ext}")
        model.save(path)
        again = models.load_model(path)
        xs = _series(data, "x")
        for g, w in zip(again.predict(xs if len(xs) > 1 else xs[0], verbose=0),
                        _series(data, "y")):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6, err_msg=name)
