"""Training curves and confusion matrices as PNG files (matplotlib, Agg: no display needed).

The training loss is the loss the optimizer sees: with label smoothing it is measured against the
smoothed targets and cannot fall below their entropy, while the validation loss is plain
cross-entropy. The curves say so, and draw that floor, so the gap is not read as overfitting.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..files import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:  # a full disk must not keep a partial image
        fig.savefig(tmp, dpi=110)


def smoothing_floor(label_smoothing: float, num_classes: int) -> float:
    """The entropy of label-smoothed targets: the least training loss a perfect model reaches
    (0.50 at smoothing 0.1 over 10 classes), against 0 for plain cross-entropy."""
    if label_smoothing <= 0:
        return 0.0
    hit = 1 - label_smoothing + label_smoothing / num_classes
    miss = label_smoothing / num_classes
    return -(hit * math.log(hit) + (num_classes - 1) * miss * math.log(miss))


def loss_setup(history: list[dict[str, Any]], label_smoothing: float | None = None,
               num_classes: int | None = None) -> tuple[float, int | None]:
    """(label smoothing, classes) of a run: as given, else as its metrics rows record them."""
    last = history[-1] if history else {}
    ls = label_smoothing if label_smoothing is not None else last.get("label_smoothing") or 0.0
    k = num_classes if num_classes is not None else last.get("num_classes")
    return float(ls), k


def train_loss_label(label_smoothing: float) -> str:
    """What the training loss measures, when it is not what the validation loss measures."""
    return f"label smoothing {label_smoothing:g}" if label_smoothing > 0 else ""


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "", *,
                label_smoothing: float | None = None, num_classes: int | None = None) -> None:
    """Loss and accuracy per epoch, training against validation (the notebooks' two panels).

    ``label_smoothing`` and ``num_classes`` (default: as the metrics rows record them) label a
    smoothed training loss as such and draw its floor. Legends sit above the panels, off the curves.
    """
    plt = _pyplot()
    fig = curves_figure(history, title, label_smoothing=label_smoothing, num_classes=num_classes)
    _save(fig, path)
    plt.close(fig)


def curves_figure(history: list[dict[str, Any]], title: str = "", *, label_smoothing: float | None = None,
                  num_classes: int | None = None) -> Any:
    """The figure :func:`plot_curves` saves."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ls, k = loss_setup(history, label_smoothing, num_classes)
    note = train_loss_label(ls)
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, key, label in ((a1, "loss", "loss"), (a2, "acc", "accuracy")):
        train_label = f"training {label} ({note})" if key == "loss" and note else f"training {label}"
        ax.plot(ep, [h[f"train_{key}"] for h in history], "o-", label=train_label)
        val = [h.get(f"val_{key}") for h in history]
        if any(v is not None for v in val):
            val_label = "validation loss (plain cross-entropy)" if key == "loss" and note else f"validation {label}"
            ax.plot(ep, [float("nan") if v is None else v for v in val], "s-", label=val_label)
        if key == "loss" and note and k:
            floor = smoothing_floor(ls, k)
            ax.axhline(floor, color="gray", linestyle="--", linewidth=1,
                       label=f"least training loss with smoothing ({floor:.2f})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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
