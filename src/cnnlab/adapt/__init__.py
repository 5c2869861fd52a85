"""Adapt a network to a new input size, channel count or class count.

A network designed for one input runs quietly wrong on another: strides drop the last rows,
the dense head grows with the flattened map, a small input makes a layer's output vanish.
:func:`diagnose` compares the network at its design input with the network at the new input,
layer by layer, and prices concrete fixes with the same analysis; :func:`apply` turns a fix
into the adapted :class:`Network`. Pure arithmetic: torch is imported only by :func:`train_step`.

The parts: ``results`` (what a diagnosis reports), ``edits`` (changing the description),
``runs`` (the network at one input), ``diagnosis``, ``fixes`` (candidates), ``ranking`` and
``check`` (one training step).
"""

from __future__ import annotations

from .check import train_step
from .diagnosis import diagnose
from .edits import apply, leaves
from .results import PADDABLE, POOLS, ROUNDING, UPSAMPLE_AREA, Candidate, Edit, Finding, Fix, Report

__all__ = ["PADDABLE", "POOLS", "ROUNDING", "UPSAMPLE_AREA", "Candidate", "Edit", "Finding", "Fix", "Report",
           "apply", "diagnose", "leaves", "train_step"]
