"""keras.io examples (Keras 3) in examples/keras_io/, run on kcompile.

Each script is the example's code with only its imports changed and small synthetic
data in place of downloads (fewer samples and epochs), plus asserts on what the
example states. A script passes when it runs to the end: every assert in it holds and
no call raises. Each runs in its own temporary working directory with a fixed numpy
seed.
"""
from __future__ import annotations

import pathlib
import runpy

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples" / "keras_io"

SCRIPTS = [
    "text_classification_with_transformer",
    "timeseries_classification_transformer",
]


def test_every_example_script_is_listed():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(0)
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
