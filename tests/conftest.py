"""Settings for the whole suite.

GEMM tilings are tuned by timing candidates the first time a shape is compiled on a
CPU (codegen/tuning.py): which tiling a model test then runs would depend on the
machine's load. The suite keeps today's constants, so every run takes the same code
paths; tests/test_gemm_tiling.py turns tuning back on where it tests it, and checks
every candidate tiling against the reference interpreter."""
import os

os.environ.setdefault("KCOMPILE_TUNE", "0")
