"""Metric arithmetic kept on the device: sums accumulate as tensors and are read once per display,
so a GPU is not synchronised every step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..files import write_text


class Meter:
    """Running loss sum, top-1 hits and count of one pass."""

    def __init__(self, device: Any) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n

    def add(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        n = target.shape[0]
        correct = (logits.argmax(1) == target).sum()
        self.sums += torch.stack([loss.detach().double() * n, correct.double(),
                                  torch.tensor(float(n), dtype=torch.float64, device=self.sums.device)])

    def read(self) -> tuple[float, float, int]:
        """(mean loss, accuracy, count)."""
        loss, correct, n = self.sums.tolist()
        return (loss / n, correct / n, int(n)) if n else (float("nan"), float("nan"), 0)


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """How many targets are among the ``k`` highest scores (k capped at the class count)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, 1).indices == target[:, None]).any(1).sum()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``m[t, p]`` = images of true class t predicted as p."""
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def write_json(path: Path, obj: Any) -> None:
    """Atomic write: readers see the old file or the new one, never half of one; a failed write
    (a full disk) leaves no temporary file behind."""
    write_text(path, json.dumps(obj, indent=2) + "\n")
