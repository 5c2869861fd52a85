"""Training, evaluation and prediction for the networks the description builds.

Apart from the models (nanoGPT style): a :class:`Recipe` says how weights move, :class:`Trainer`
runs it on in-memory uint8 image sets, :mod:`checkpoint` rebuilds a trained model alone.
"""

from .recipes import PRESETS, Recipe, get_recipe
from .trainer import Options, Trainer, TrainingDiverged, evaluate

__all__ = ["PRESETS", "Options", "Recipe", "Trainer", "TrainingDiverged", "evaluate", "get_recipe"]
