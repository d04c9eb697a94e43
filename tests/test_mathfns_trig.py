"""Accuracy of the compiled sin, cos and erf (codegen/mathfns.py) against float64.

Measured bounds: sin/cos 7.7e-8 absolute over |x| <= 8192 (Cephes' accurate range),
erf 1.7e-7 relative (about 2 ulp) over [-10, 10] and tiny arguments. Special values
follow numpy: sin/cos(+-inf) and nan are nan, erf(+-inf) = +-1.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from kcompile.ir import builder as F
from kcompile.ir.builder import Sym
from kcompile.ir.graph import Graph, TensorType
from kcompile.runtime.executable import NativeExecutable
from kcompile.runtime.state import State

N = 1_000_000


@pytest.fixture(scope="module")
def exe():
    g = Graph()
    x = Sym(g, g.leaf("input", TensorType((N,)), "x"))
    for fn in ("sin", "cos", "erf", "floor", "round"):
        g.outputs[fn] = getattr(F, fn)(x).id
    return NativeExecutable({"math": g}, State([]))


def _run(exe, values):
    x = np.zeros(N, np.float32)
    x[:len(values)] = values
    return {k: v[:len(values)].astype(np.float64) for k, v in exe.run("math", {"x": x}).items()}


def test_sin_cos_accuracy(exe):
    x = np.linspace(-8192, 8192, N).astype(np.float32)
    out = _run(exe, x)
    t = x.astype(np.float64)
    assert np.max(np.abs(out["sin"] - np.sin(t))) < 1e-7
    assert np.max(np.abs(out["cos"] - np.cos(t))) < 1e-7
    small = np.geomspace(1e-30, 1.0, 1000).astype(np.float32)
    o = _run(exe, small)
    rel = np.abs(o["sin"] - np.sin(small.astype(np.float64))) / np.sin(small.astype(np.float64))
    assert rel.max() < 2e-7          # sin(x) ~ x keeps its relative accuracy near 0


def test_erf_accuracy(exe):
    x = np.concatenate([np.linspace(-10, 10, N // 2), np.geomspace(1e-30, 1.0, N // 4),
                        -np.geomspace(1e-30, 1.0, N // 4)]).astype(np.float32)
    o = _run(exe, x)["erf"]
    t = np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64))
    rel = np.abs(o - t) / np.maximum(np.abs(t), 1e-38)
    assert rel.max() < 2.5e-7, (rel.max(), x[rel.argmax()])


def test_special_values_follow_numpy(exe):
    x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 0.5, 1.5, 2.5, -0.5, -2.5])
    o = _run(exe, x)
    with np.errstate(invalid="ignore"):
        for fn in ("sin", "cos"):
            ref = getattr(np, fn)(x.astype(np.float64))
            np.testing.assert_array_equal(np.isnan(o[fn]), np.isnan(ref), err_msg=fn)
            assert np.all(np.abs(o[fn][np.isfinite(x)]) <= 1.0)
    np.testing.assert_array_equal(o["erf"][:5], [0.0, 0.0, 1.0, -1.0, np.nan])
    np.testing.assert_array_equal(o["floor"], np.floor(x))
    np.testing.assert_array_equal(o["round"], np.round(x))      # halves to even
