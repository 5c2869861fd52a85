"""Training, evaluation and prediction for the networks the description builds.

Apart from the models (nanoGPT style): a :class:`Recipe` says how weights move, :class:`Trainer`
runs it on in-memory uint8 image sets, :mod:`checkpoint` rebuilds a trained model alone.
Names load on first use, so the CLI can read the recipes without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"PRESETS": "recipes", "Recipe": "recipes", "get_recipe": "recipes", "Options": "trainer",
            "Trainer": "trainer", "TrainingDiverged": "trainer", "evaluate": "trainer", "read_weights": "weights",
            "load_weights": "weights", "save_weights": "weights", "pretrained": "weights"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
