"""Graph -> Graph passes. The compile pipeline, in order:

1. autodiff        gradients of the loss for every param      (training only)
2. optimizer_step  the optimizer's update rule as graph ops   (training only)
3. simplify        constant folding, algebraic rewrites, CSE, dead code
4. fuse            group ops into kernels (codegen.kernels)
5. plan_memory     arena offsets from liveness
"""
from .autodiff import autodiff, GRAD_PREFIX
from .optimizer_step import optimizer_step
from .simplify import simplify

__all__ = ["autodiff", "optimizer_step", "simplify", "GRAD_PREFIX"]
