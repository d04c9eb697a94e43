"""Graph -> Graph passes. The compile pipeline, in order:

1. autodiff        gradients of the loss for every param      (training only)
2. optimizer_step  the optimizer's update rule as graph ops   (training only)
3. simplify        constant folding, algebraic rewrites, CSE, dead code; then
                   hoist_scan (loop-invariant transposes out of scan bodies)
4. fuse            group ops into kernels, then fuse_rows (row-wise chains, e.g.
                   softmax + cross-entropy + gradient, and same-shape loops: one
                   kernel each), fuse_updates (the remaining parameter updates:
                   one kernel) and schedule (kernels in dependency levels)
5. plan_memory     arena offsets from liveness
"""
from .autodiff import autodiff, GRAD_PREFIX
from .optimizer_step import optimizer_step
from .simplify import simplify

__all__ = ["autodiff", "optimizer_step", "simplify", "GRAD_PREFIX"]
