"""cnnlab: analyze, adapt, build, train and report convolutional neural networks.

The names below load on first use, so ``import cnnlab`` stays as light as the analysis path it
serves (no torch until a network is built). Having this file also makes ``cnnlab`` a regular
package: a stray ``cnnlab/`` folder elsewhere on ``sys.path`` cannot merge into it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {"analyze": "analysis", "build": "torch_backend", "diagnose": "adapt", "apply": "adapt",
            "load_model": "models", "list_models": "models", "fit": "train.run",
            "analyze_module": "measure", "export_model": "export",
            "load_keras": "importers.keras", "load_caffe": "importers.caffe", "CnnlabError": "errors"}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
