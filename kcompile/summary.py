"""model.summary(): Keras' table of layers, output shapes and parameter counts."""
from __future__ import annotations

import numpy as np


def _bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024


def format_summary(model) -> str:
    rows = [(f"{layer.name} ({type(layer).__name__})", str(shape), f"{params:,}")
            for layer, shape, params in model._layer_rows()]
    cols = [max(31, *(len(r[0]) + 2 for r in rows)) if rows else 31, 24, 15]
    heads = ("Layer (type)", "Output Shape", "Param #")

    def line(l, m, r, fill):
        return l + m.join(fill * c for c in cols) + r

    def row(cells, sep="\u2502"):
        text = [f" {cells[0]:<{cols[0] - 2}} ", f" {cells[1]:<{cols[1] - 2}} ",
                f" {cells[2]:>{cols[2] - 2}} "]
        return sep + sep.join(text) + sep

    out = [f'Model: "{model.name}"', line("\u250f", "\u2533", "\u2513", "\u2501"),
           row(heads, "\u2503"), line("\u2521", "\u2547", "\u2529", "\u2501")]
    for i, r in enumerate(rows):
        out.append(row(r))
        if i < len(rows) - 1:
            out.append(line("\u251c", "\u253c", "\u2524", "\u2500"))
    out.append(line("\u2514", "\u2534", "\u2518", "\u2500"))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    out += [f" Total params: {total:,} ({_bytes(total * 4)})",
            f" Trainable params: {trainable:,} ({_bytes(trainable * 4)})",
            f" Non-trainable params: {total - trainable:,} ({_bytes((total - trainable) * 4)})"]
    return "\n".join(out)
