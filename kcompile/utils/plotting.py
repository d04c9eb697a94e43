"""plot_history: training curves of a `History` to a PNG (needs matplotlib)."""
from __future__ import annotations

import os


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plot_history needs matplotlib, which is not installed: "
                          "pip install matplotlib") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def plot_history(history, path, metrics=None, title=None):
    """Draw each logged quantity of a fit (loss, accuracy, ...) against the epoch, training
    and validation (`val_` prefix) curves on the same axes, one panel per quantity, and
    save the figure to `path` (PNG). `history` is what `fit` returns, or its `.history`
    dict. Returns `path`."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError("plot_history expects a History (the return value of fit) or a "
                         "non-empty dict of per-epoch values")
    epochs_of = getattr(history, "epoch", None)
    names = metrics or [k for k in logs if not k.startswith("val_")] or list(logs)
    unknown = [m for m in names if m not in logs and f"val_{m}" not in logs]
    if unknown:
        raise ValueError(f"plot_history: no values logged for {unknown}; the history has "
                         f"{sorted(logs)}")
    plt = _import_pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(len(names), 1, figsize=(6.4, 3.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            values = logs.get(key)
            if not values:
                continue
            xs = [e + 1 for e in epochs_of] if epochs_of and len(epochs_of) == len(values) \
                else list(range(1, len(values) + 1))
            ax.plot(xs, values, marker="o" if len(values) < 30 else None, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path
