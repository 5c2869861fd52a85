"""A user's ``nn.Module`` from ``file.py:NAME`` or ``package.module:NAME``.

This imports and runs the user's code, so every failure inside it becomes one line naming the
user's file, line and exception (see :func:`cnnlab.measure.user_code_error`), never a traceback
through cnnlab. NAME is a module instance, a class, or a factory; ``kwargs`` go to the latter two.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import CnnlabError


def is_module_ref(ref: str) -> bool:
    """``file.py:NAME`` or ``pkg.module:NAME`` (not a spec file nor a zoo name)."""
    from .models import is_spec

    return isinstance(ref, str) and ":" in ref and not is_spec(ref)


def _error(e: BaseException, what: str) -> CnnlabError:
    from .measure import user_code_error

    return user_code_error(e, what)


def load_object(ref: str) -> Any:
    """The object NAME of ``ref``, its module imported (a file by path, a package by name)."""
    where, _, attr = ref.rpartition(":")
    if not where or not attr:
        raise CnnlabError(f"module reference '{ref}': give file.py:NAME or package.module:NAME")
    try:
        if where.endswith(".py"):
            if not Path(where).is_file():
                raise CnnlabError(f"cannot load {ref}: no file {where}")
            spec = importlib.util.spec_from_file_location(Path(where).stem, where)
            if spec is None or spec.loader is None:
                raise CnnlabError(f"cannot load {ref}: {where} is not a Python file")
            mod = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(spec.name, mod)  # dataclasses and pickling look modules up by name
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(where)
    except CnnlabError:
        raise
    except ModuleNotFoundError as e:
        raise CnnlabError(f"cannot load {ref}: {e}; give file.py:NAME or package.module:NAME") from None
    except Exception as e:  # the user's module failed while importing
        raise _error(e, f"importing {where}") from None
    if not hasattr(mod, attr):
        names = sorted(n for n, v in vars(mod).items() if not n.startswith("_") and callable(v))
        raise CnnlabError(f"cannot load {ref}: {where} has no '{attr}' (it has {', '.join(names[:8]) or 'nothing callable'})")
    return getattr(mod, attr)


def missing_arguments(fn: Any, kwargs: Mapping[str, Any]) -> list[str]:
    """The required parameters of ``fn`` that ``kwargs`` does not give."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [n for n, p in sig.parameters.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in kwargs]


def load_module(ref: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """The ``nn.Module`` that ``ref`` names, built with ``kwargs`` when NAME is a class or a factory."""
    from torch import nn

    obj = load_object(ref)
    kwargs = dict(kwargs or {})
    if isinstance(obj, nn.Module):
        if kwargs:
            raise CnnlabError(f"{ref} is a module instance: --kwargs applies to a class or a factory")
        return obj
    if not callable(obj):
        raise CnnlabError(f"{ref} is a {type(obj).__name__}, not a module, class or factory")
    missing = missing_arguments(obj, kwargs)
    if missing:
        raise CnnlabError(f"{ref} needs arguments {', '.join(missing)}: give them with --kwargs "
                          f"{','.join(f'{n}=...' for n in missing)} (kwargs= in Python)")
    try:
        model = obj(**kwargs)
    except Exception as e:  # the user's constructor
        raise _error(e, f"building {ref}") from None
    if not isinstance(model, nn.Module):
        raise CnnlabError(f"{ref}() returned a {type(model).__name__}, not an nn.Module")
    return model
