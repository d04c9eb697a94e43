"""Lowering of kernels to LLVM IR, one file per family.

elementwise.py  the scalar rule of every elementwise primitive (float lanes)
emitter.py      computes any fused value at an index (the elemental emitter)
loop.py         loop kernels; reduce.py reduction kernels; matmul.py matrix products
"""
