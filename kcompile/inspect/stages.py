"""What can be inspected: the entry points, the stages shown of each, the document format."""
from __future__ import annotations

ENTRIES = ("train_step", "eval_step", "predict")
STAGES = ("trace", "grad", "update", "optimized", "fused", "memory", "llvm", "asm")
GRAPH_STAGES = ("trace", "grad", "update", "optimized")
KERNEL_STAGES = ("fused", "memory", "llvm", "asm")
TRAIN_ONLY_STAGES = ("grad", "update")
FORMAT = "kcompile-inspect"
VERSION = 1


class InspectError(ValueError):
    """A request that cannot be served (unknown stage or entry, uncompiled model, ...)."""


def check_request(entry, stage):
    if entry not in ENTRIES:
        raise InspectError(f"unknown entry {entry!r}; expected one of {', '.join(ENTRIES)}")
    if stage not in STAGES:
        raise InspectError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if stage in TRAIN_ONLY_STAGES and entry != "train_step":
        raise InspectError(f"stage {stage!r} exists only for the train_step entry "
                           f"({entry} is not differentiated)")
