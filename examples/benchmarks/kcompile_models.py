"""The W7 and W8 models as kcompile builds them, for `kcompile profile` / `inspect`:

    kcompile profile examples/benchmarks/kcompile_models.py:mnist_convnet --batch 128
    kcompile profile examples/benchmarks/kcompile_models.py:conv1d_classifier --batch 32
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kcompile  # noqa: E402
from conv_peers import _compiled  # noqa: E402
from workloads import WORKLOADS  # noqa: E402


def mnist_convnet():
    return _compiled(kcompile, WORKLOADS["W7a"])


def conv1d_classifier():
    return _compiled(kcompile, WORKLOADS["W8"])
