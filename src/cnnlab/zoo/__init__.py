"""Model registry: every architecture is a function returning a :class:`Network`.

Zoo modules register their builders with :func:`register` and other spellings of a name with
:func:`alias`; every module in this package is loaded on first lookup (plain Python, no torch).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import CnnlabError
from ..layers import Shape
from ..network import Network


@dataclass(frozen=True)
class ModelInfo:
    name: str
    fn: Callable[..., Network]
    paper: str
    year: int
    input: Shape
    description: str = ""
    accuracy: str | None = None  # as the paper reports it
    kwargs: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}  # alias -> registered name
_loaded = False


def register(name: str, *, paper: str, year: int, input: Shape, description: str = "",
             accuracy: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Network]], Callable[..., Network]]:
    """Register ``fn`` under ``name``; ``kwargs`` are fixed arguments for variants of one builder."""

    def deco(fn: Callable[..., Network]) -> Callable[..., Network]:
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = ModelInfo(name, fn, paper, year, tuple(input), description, accuracy, kwargs)
        return fn

    return deco


def alias(name: str, of: str) -> None:
    """Accept ``name`` for the registered model ``of``: a name users know from elsewhere, or a
    model's former name, resolves to the same builder without a second row in the zoo."""
    if name in _REGISTRY or name in _ALIASES:
        raise ValueError(f"model '{name}' registered twice")
    if of not in _REGISTRY:
        raise ValueError(f"alias '{name}': no model '{of}'")
    _ALIASES[name] = of


def aliases(name: str) -> list[str]:
    """The other names of the registered model ``name``."""
    _load()
    return [a for a, of in _ALIASES.items() if of == name]


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for m in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{m.name}")


def names() -> list[str]:
    """Registered models, one name each (aliases apart: see :func:`aliases`)."""
    _load()
    return list(_REGISTRY)


def info(name: str) -> ModelInfo:
    """The registered model ``name`` (or the one it is an alias of)."""
    _load()
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, [*_REGISTRY, *_ALIASES], n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'cnnlab zoo' for the list"
        raise CnnlabError(f"unknown model '{name}': {hint}")
    return _REGISTRY[name]


def get(name: str, **kwargs: Any) -> Network:
    """Build the description of a zoo model; ``kwargs`` such as ``num_classes`` or ``in_channels``
    go to its builder. An alias builds the model under its registered name. Arguments the builder
    does not take are the caller's mistake (one line); a TypeError raised inside the builder is a bug
    and propagates."""
    mi = info(name)
    name = mi.name
    args = {**mi.kwargs, **kwargs}
    try:
        inspect.signature(mi.fn).bind(**args)
    except TypeError as e:
        takes = ", ".join(p for p in inspect.signature(mi.fn).parameters if p not in mi.kwargs) or "no options"
        raise CnnlabError(f"model '{name}': {e} (it takes: {takes})") from None
    net = mi.fn(**args)
    meta = {"paper": mi.paper, "year": mi.year, "description": mi.description, **net.meta}
    if mi.accuracy:
        meta["accuracy"] = mi.accuracy
    return replace(net, name=name, meta=meta)
