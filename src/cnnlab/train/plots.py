"""Training curves and confusion matrices as PNG files (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep a partial image
        raise


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, training against validation (the notebooks' two panels)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((a1, "loss", "loss"), (a2, "acc", "accuracy")):
        ax.plot(ep, [h[f"train_{key}"] for h in history], "o-", label=f"training {label}")
        val = [h.get(f"val_{key}") for h in history]
        if any(v is not None for v in val):
            ax.plot(ep, [float("nan") if v is None else v for v in val], "s-", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_confusion(matrix: Any, classes: list[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix; counts written in the cells while they stay legible."""
    plt = _pyplot()
    m = matrix.double()
    rows = m.sum(1, keepdim=True).clamp_min(1)
    n = len(classes)
    size = min(12, 2 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow((m / rows).numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if m[i, j] > 0:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] / rows[i, 0] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
