"""Keras' own guides and examples (keras.io, Keras 3), run on kcompile.

Each script in examples/guides/ is the guide's code with only its imports changed
(`import kcompile as keras`, ...), small synthetic data in place of downloads, and the
guide's asserts plus a few on what its prose states. A script passes when it runs to
the end: every assert in it holds and no call raises. Each runs in its own temporary
working directory (the files it saves go there) with a fixed numpy seed.
"""
from __future__ import annotations

import pathlib
import runpy

import numpy as np
import pytest

from kcompile.saving import get_custom_objects

GUIDES = pathlib.Path(__file__).resolve().parent.parent / "examples" / "guides"

SCRIPTS = [
    "making_new_layers_and_models_via_subclassing",
    "sequential_model",
    "functional_api",
    "training_with_built_in_methods",
    "understanding_masking_and_padding",
    "working_with_rnns",
    "serialization_and_saving",
    "addition_rnn",
    "lstm_seq2seq",
    "antirectifier",
    "bidirectional_lstm_imdb",
    "mnist_convnet",
]


def test_every_guide_script_is_listed():
    assert sorted(p.stem for p in GUIDES.glob("*.py")) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_guide_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(0)
    # A guide may clear the global custom-object registry (the saving guide does):
    # the other tests' registered classes come back after it.
    registered = dict(get_custom_objects())
    try:
        runpy.run_path(str(GUIDES / f"{name}.py"), run_name="__main__")
    finally:
        get_custom_objects().clear()
        get_custom_objects().update(registered)
