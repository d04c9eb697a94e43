"""The persistent state of a model: params, non-trainable state, optimizer slots.

One aligned buffer, laid out once; every compiled executable of the model
(any batch size, train/eval/predict) reads and updates it at the same offsets.
Layers and optimizers hold numpy views into it.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import TensorType
from .arena import aligned_bytes, view, ALIGN


class State:
    def __init__(self, layout: list[tuple[str, TensorType]]):
        self.types = dict(layout)
        if len(self.types) != len(layout):
            raise ValueError("duplicate names in the state layout")
        self.offsets: dict[str, int] = {}
        off = 0
        for name, t in layout:
            self.offsets[name] = off
            off += (t.nbytes + ALIGN - 1) // ALIGN * ALIGN
        self.buffer = aligned_bytes(max(off, ALIGN))
        self.views = {n: view(self.buffer, self.offsets[n], t) for n, t in layout}

    @property
    def address(self) -> int:
        return self.buffer.ctypes.data

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]

    def __contains__(self, name):
        return name in self.views

    def assign(self, name: str, value) -> None:
        value = np.asarray(value)
        if value.shape != self.views[name].shape:
            raise ValueError(f"{name}: expected shape {self.views[name].shape}, got {value.shape}")
        np.copyto(self.views[name], value, casting="unsafe")
