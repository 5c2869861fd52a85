"""Training curves compare like with like: a label-smoothed training loss is named as such, with the
floor it cannot go below, and no legend covers a curve (PNG and HTML alike)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnlab.report import html
from cnnlab.train.plots import curves_figure, plot_curves, smoothing_floor

# The demo's shape: the smoothed training loss ends near 0.52, the plain validation loss near 0.12.
HISTORY = [{"epoch": e, "train_loss": 0.5 + 0.5 / e**2, "train_acc": 0.9 + 0.0198 * e,
            "val_loss": 0.1 + 0.3 / e**2, "val_acc": 0.95 + 0.0084 * e} for e in range(1, 6)]


@pytest.mark.parametrize("eps, k", [(0.1, 10), (0.2, 100), (0.05, 2)])
def test_smoothing_floor_is_the_loss_of_a_model_predicting_the_smoothed_targets(eps: float, k: int) -> None:
    target = torch.tensor([3 % k])
    smoothed = torch.full((1, k), eps / k)
    smoothed[0, target] += 1 - eps
    best = F.cross_entropy(smoothed.log(), target, label_smoothing=eps).item()
    assert smoothing_floor(eps, k) == pytest.approx(best, rel=1e-6)
    assert smoothing_floor(0.0, k) == 0.0


def test_smoothing_floor_explains_the_demo_gap() -> None:
    # 0.1 over MNIST's 10 classes: -(0.91 ln 0.91 + 9 x 0.01 ln 0.01) = 0.5003
    assert smoothing_floor(0.1, 10) == pytest.approx(-(0.91 * math.log(0.91) + 0.09 * math.log(0.01)))
    assert f"{smoothing_floor(0.1, 10):.4f}" == "0.5003"


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_png_curves_name_a_smoothed_training_loss_and_keep_legends_off_the_curves(tmp_path: Path) -> None:
    fig = curves_figure(HISTORY, "lenet5-relu on mnist", label_smoothing=0.1, num_classes=10)
    loss, acc = fig.axes
    assert _legend(loss) == ["training loss (label smoothing 0.1)", "validation loss (plain cross-entropy)",
                             "least training loss with smoothing (0.50)"]
    assert _legend(acc) == ["training accuracy", "validation accuracy"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in (loss, acc):
        box, plot = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
        assert box.y0 >= plot.y1  # above the axes: no curve underneath
    plot_curves(HISTORY, tmp_path / "curves.png", "t", label_smoothing=0.1, num_classes=10)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_curves_without_smoothing_keep_the_plain_labels() -> None:
    loss, _ = curves_figure(HISTORY).axes
    assert _legend(loss) == ["training loss", "validation loss"]
    # a run whose metrics rows record the smoothing is labelled from them
    rows = [{**h, "label_smoothing": 0.1, "num_classes": 10} for h in HISTORY]
    loss, _ = curves_figure(rows).axes
    assert _legend(loss)[0] == "training loss (label smoothing 0.1)" and len(_legend(loss)) == 3


def _texts(svg: str) -> list[tuple[float, str]]:
    return [(float(y), t) for y, t in re.findall(r'<text x="[\d.]+" y="([\d.]+)" fill="#[0-9a-f]{6}">([^<]+)</text>',
                                                    svg)]


def test_html_curves_label_the_smoothing_and_put_legends_below_the_plot() -> None:
    loss, acc = html.curves(HISTORY, label_smoothing=0.1, num_classes=10).split("</svg>")[:2]
    h, mb, mt = 240, 30, 24
    names = [t for y, t in _texts(loss) if y > h]
    assert names == ["train (label smoothing 0.1)", "validation (plain cross-entropy)",
                     "least training loss with smoothing (0.50)"]
    assert [t for y, t in _texts(acc) if y > h] == ["train", "validation"]
    for svg in (loss, acc):
        ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
        assert ys and all(mt <= y <= h - mb for y in ys)  # every point inside the plot area
        legend_rows = {y for y, t in _texts(svg) if y > h}
        axis_labels = {y for y, t in _texts(svg) if y <= h}
        assert min(legend_rows) >= max(axis_labels) + 12  # a line below the axis labels (10 px font)
        height = float(re.search(r'height="([\d.]+)"', svg).group(1))
        assert max(legend_rows) < height
    # the floor is drawn as a dashed guide at 0.50
    assert 'stroke-dasharray="4 3"><title>least training loss with smoothing (0.50)</title>' in loss


def test_html_curves_without_smoothing() -> None:
    loss = html.curves(HISTORY).split("</svg>")[0]
    assert [t for y, t in _texts(loss) if y > 240] == ["train", "validation"] and "<title>" not in loss
