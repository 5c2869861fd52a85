"""A user's ``nn.Module`` from ``file.py:NAME`` or ``package.module:NAME``.

This imports and runs the user's code, so every failure inside it becomes one line naming the
user's file, line and exception (see :func:`cnnlab.measure.user_code_error`), never a traceback
through cnnlab. NAME is a module instance, a class, or a factory; ``kwargs`` go to the latter two.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CnnlabError


def is_module_ref(ref: str) -> bool:
    """``file.py:NAME`` or ``pkg.module:NAME`` (not a spec file nor a zoo name)."""
    from .models import is_spec

    return isinstance(ref, str) and ":" in ref and not is_spec(ref)


def _error(e: BaseException, what: str) -> CnnlabError:
    from .measure import user_code_error, user_frames

    err = user_code_error(e, what)
    frames = user_frames(e) if isinstance(e, NameError) else []
    where = frames[-1].filename.rpartition(", cell ")[0] if frames else ""
    left = _LEFT_OUT.get(where, {}).get(getattr(e, "name", None) or "")
    if left:  # a name the notebook binds by running code, which loading its definitions does not run
        return CnnlabError(f"{err}; {left} sets it by calling code, which loading a notebook's definitions does "
                           "not run: give it a plain value there (numbers, strings, lists of them)")
    return err


def _package_of(path: Path) -> tuple[Path, str] | None:
    """(folder to import from, dotted name) of a file inside a package (folders holding ``__init__.py``)."""
    parts, d = [path.stem], path.parent
    while (d / "__init__.py").is_file() and d.name.isidentifier():
        parts.insert(0, d.name)
        d = d.parent
    return (d, ".".join(parts)) if len(parts) > 1 and path.stem.isidentifier() else None


_FILES: dict[tuple[str, int, int], Any] = {}  # a file runs once per process while it is unchanged
_LEFT_OUT: dict[str, dict[str, str]] = {}  # notebook -> the names it binds by a call -> where ("nb.ipynb, cell 2,")
MAX_NOTEBOOK_BYTES = 64 * 2**20


def _is_source(where: str) -> bool:
    """A file of Python code: a ``.py`` module or a Jupyter notebook."""
    return where.endswith((".py", ".ipynb"))


def _kept(node: ast.stmt) -> bool:
    """A notebook statement that defines rather than does: imports, functions, classes, and names bound to
    values made without calls (``num_classes = 10``). Training loops, data loading and ``model = Net()``
    are left out, so loading a notebook runs no experiment."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        return not any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Lambda))
                       for n in ast.walk(node.value))
    if isinstance(node, ast.Try):  # try: import x / except ImportError: ...
        return all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body)
    return False


def _notebook_module(path: Path) -> Any:
    """A Jupyter notebook's definitions as a module: its code cells in order, IPython's magics and shell lines
    dropped, each cell's kept statements run with the cell named in tracebacks (``nb.ipynb, cell 3``)."""
    import json
    import types

    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise CnnlabError(f"{path.name}: over {MAX_NOTEBOOK_BYTES >> 20} MiB; is it a notebook?")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CnnlabError(f"{path.name} is not a Jupyter notebook ({type(e).__name__}); give a .ipynb file") from None
    mod = types.ModuleType(path.stem.replace("-", "_").replace(".", "_"))
    mod.__file__ = str(path)
    for number, cell in enumerate(cells, 1):
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        if text.lstrip().startswith("%%"):  # a cell magic: the cell is not Python
            continue
        lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines()]
        name = f"{path}, cell {number}"
        try:
            tree = ast.parse("\n".join(lines), name)
        except SyntaxError as e:
            raise CnnlabError(f"{path.name}, cell {number}, line {e.lineno}: {e.msg}; fix the cell or give a .py "
                              "file") from None
        for node in tree.body:
            if not _kept(node):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for t in targets:
                    if isinstance(t, ast.Name):
                        _LEFT_OUT.setdefault(str(path), {})[t.id] = f"{path.name}, cell {number},"
                continue
            code = compile(ast.Module(body=[node], type_ignores=[]), name, "exec")
            try:
                exec(code, mod.__dict__)  # noqa: S102 - the user's own code, as the CLI warns
            except ImportError:
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    raise
                # a package for the notebook's data or plots (torchvision, matplotlib) that this environment
                # lacks: the model may not need it, and if it does, the NameError names it
    return mod


def load_object(ref: str) -> Any:
    """The object NAME of ``ref``, its module imported (a file by path, a package by name)."""
    where, _, attr = ref.rpartition(":")
    if not where or not attr:
        raise CnnlabError(f"module reference '{ref}': give file.py:NAME or package.module:NAME")
    try:
        if _is_source(where):
            if not Path(where).is_file():
                raise CnnlabError(f"cannot load {ref}: no file {where}")
            st = Path(where).stat()
            key = (str(Path(where).resolve()), st.st_mtime_ns, st.st_size)
            mod = _FILES.get(key)
            package = _package_of(Path(where).resolve()) if where.endswith(".py") else None
            if mod is None and package is not None:  # relative imports (from .blocks import X) need the package
                root, name = package
                if str(root) not in sys.path:
                    sys.path.append(str(root))
                mod = importlib.import_module(name)
                _FILES[key] = mod
            if mod is None and where.endswith(".ipynb"):
                mod = _FILES[key] = _notebook_module(Path(where))
            if mod is None:
                spec = importlib.util.spec_from_file_location(Path(where).stem, where)
                if spec is None or spec.loader is None:
                    raise CnnlabError(f"cannot load {ref}: {where} is not a Python file")
                mod = importlib.util.module_from_spec(spec)
                sys.modules.setdefault(spec.name, mod)  # dataclasses and pickling look modules up by name
                spec.loader.exec_module(mod)
                _FILES[key] = mod
        else:
            # As `python -m` and `python -c` would: a package in the working folder imports (after installed ones).
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.append(os.getcwd())
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


def parameters_of(fn: Any) -> Mapping[str, inspect.Parameter]:
    """The parameters of ``fn``'s signature (none when it has no signature Python can read)."""
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def missing_arguments(fn: Any, kwargs: Mapping[str, Any]) -> list[str]:
    """The required parameters of ``fn`` that ``kwargs`` does not give."""
    return [n for n, p in parameters_of(fn).items()
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


# --- rebuilding a trained module ------------------------------------------------------------------

JSON_TYPES = (str, int, float, bool, type(None))


def _plain(v: Any) -> bool:
    """JSON-like values only: what a checkpoint may hand to a constructor."""
    if isinstance(v, JSON_TYPES):
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return isinstance(v, dict) and all(isinstance(k, str) and _plain(x) for k, x in v.items())


def _stdlib(name: str) -> bool:
    top = name.split(".", 1)[0]
    return top in sys.stdlib_module_names or top in ("builtins", "__main__")


def _returns_module(fn: Any) -> bool:
    """Whether ``fn`` is annotated to return an ``nn.Module`` (torchvision's builders are)."""
    import typing

    from torch import nn

    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that does not resolve says nothing either way
        return False
    return isinstance(ret, type) and issubclass(ret, nn.Module)


def _takes_arguments(cls: type) -> bool:
    """Whether building ``cls`` needs arguments (or takes its layers as ``*args``, as nn.Sequential does)."""
    try:
        ps = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_POSITIONAL or (p.default is p.empty and p.kind is not p.VAR_KEYWORD) for p in ps)


@dataclass
class ModuleRef:
    """How a trained user module is built again: its import reference and the keyword arguments of its
    class or factory. A checkpoint of such a run keeps this instead of a network description.

    Rebuilding imports and runs code, so a reference read from a file is held to what a training run
    can have written: a ``file.py`` that exists, or a package outside the standard library; the object an
    ``nn.Module`` class, a function of that file, or a factory annotated to return an ``nn.Module``; the
    arguments plain JSON values. ``module`` is the instance itself when it was given in Python.
    """

    ref: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    module: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, ref: str, kwargs: Mapping[str, Any] | None = None) -> ModuleRef:
        """``ref`` as given on the command line, its file made absolute so the checkpoint finds it from
        anywhere."""
        where, _, attr = ref.rpartition(":")
        if _is_source(where) and Path(where).is_file():
            ref = f"{Path(where).resolve()}:{attr}"
        kwargs = dict(kwargs or {})
        if not _plain(kwargs):
            raise CnnlabError(f"--kwargs for {attr}: give plain values (numbers, strings, booleans, lists), "
                              "which the checkpoint records to build the module again")
        return cls(ref, kwargs, attr)

    @classmethod
    def to_train(cls, ref: str, kwargs: Mapping[str, Any], classes: int) -> ModuleRef:
        """``ref`` for a run on data of ``classes`` classes: ``num_classes`` is set from the data when the
        class or factory takes it and ``kwargs`` does not give it."""
        from torch import nn

        obj = load_object(ref)
        kwargs = dict(kwargs)
        if not isinstance(obj, nn.Module) and "num_classes" not in kwargs:
            params = parameters_of(obj)
            if "num_classes" in params:
                kwargs["num_classes"] = classes
            elif any(p.kind is p.VAR_KEYWORD for p in params.values()):
                # A factory passing **kwargs on (torchvision's): keep num_classes if the module accepts it.
                try:
                    load_module(ref, {**kwargs, "num_classes": classes})
                    kwargs["num_classes"] = classes
                except CnnlabError:
                    pass
        return cls.of(ref, kwargs)

    @classmethod
    def of_instance(cls, model: Any) -> ModuleRef:
        """A module object given in Python: rebuilt later from its class when that class imports by name
        and takes no arguments (otherwise the checkpoint holds the weights alone)."""
        t = type(model)
        ref = None
        if not _stdlib(t.__module__) and "<locals>" not in t.__qualname__ and not _takes_arguments(t):
            ref = f"{t.__module__}:{t.__qualname__}"
        return cls(ref, {}, t.__name__, model)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "kwargs": self.kwargs, "name": self.name}

    @classmethod
    def from_dict(cls, d: Any) -> ModuleRef:
        """Read what :meth:`to_dict` wrote; raises ValueError naming what is wrong."""
        if not isinstance(d, dict):
            raise ValueError("'module' must be a mapping")
        ref, kwargs, name = d.get("ref"), d.get("kwargs", {}), d.get("name", "")
        if ref is not None and (not isinstance(ref, str) or ref.count(":") < 1):
            raise ValueError("'module.ref' must be file.py:NAME or package.module:NAME")
        if not isinstance(kwargs, dict) or not _plain(kwargs):
            raise ValueError("'module.kwargs' must map names to plain values")
        if not isinstance(name, str):
            raise ValueError("'module.name' must be a string")
        return cls(ref, kwargs, name)

    def build(self, source: str = "the checkpoint") -> Any:
        """The module: the instance given in Python, else a new one from the reference."""
        if self.module is not None:
            return self.module
        if self.ref is None:
            raise CnnlabError(f"{source} holds the weights of a module given as a Python object ({self.name}), "
                              "with no reference to build it again: build it yourself and load them with "
                              "model.load_state_dict(cnnlab.train.checkpoint.load(PATH).model)")
        self.check_ref(source)
        return load_module(self.ref, self.kwargs)

    def check_ref(self, source: str) -> None:
        """Refuse what no training run writes: the standard library, callables that build no module."""
        from torch import nn

        where, _, attr = str(self.ref).rpartition(":")
        refuse = f"{source} names {self.ref} to build its model, which "
        if _is_source(where):
            if not Path(where).is_file():
                raise CnnlabError(refuse + f"is not here: put {Path(where).name} back at {where}, or build the "
                                  "module yourself and load the checkpoint's weights")
        elif not where or _stdlib(where):
            raise CnnlabError(refuse + "is not a model: the reference must be a model file or package")
        obj = load_object(str(self.ref))
        ok = isinstance(obj, nn.Module) or (isinstance(obj, type) and issubclass(obj, nn.Module)) or (
            inspect.isfunction(obj) and (_is_source(where) or _returns_module(obj)))
        if not ok:
            raise CnnlabError(refuse + "is not an nn.Module class nor a function returning one")
