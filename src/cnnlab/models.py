"""One way from a reference to a network, for Python and the CLI alike.

A reference is a zoo name, a YAML/JSON spec file, a Keras config (``.keras`` archive, legacy ``.h5`` or
``model.to_json()`` file), a Caffe ``.prototxt``, or a PyTorch module written ``file.py:NAME`` or
``package.module:NAME`` (traced at ``input_shape``). Only tracing imports torch.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import zoo
from .errors import CnnlabError
from .layers import Shape
from .network import Network, load_spec

SPEC_SUFFIXES = (".yaml", ".yml", ".json", ".keras", ".h5", ".prototxt")


def list_models() -> list[str]:
    """The zoo's model names, in registration order."""
    return zoo.names()


def is_spec(ref: str) -> bool:
    """Whether ``ref`` names a spec file: it has a spec suffix, or it is a file. A zoo name wins over
    a file of the same name in the working directory unless ``ref`` holds a path separator."""
    if ref.lower().endswith(SPEC_SUFFIXES):
        return True
    from . import zoo

    if ref in zoo.names() or ref in _aliases():
        return any(sep and sep in ref for sep in (os.sep, os.altsep))
    return Path(ref).is_file()


def _aliases() -> set[str]:
    from . import zoo

    return {a for n in zoo.names() for a in zoo.aliases(n)}


def load_model(ref: str, *, num_classes: int | None = None, in_channels: int | None = None,
               aux: bool | None = None, shortcut: str | None = None, input_shape: Shape | None = None,
               kwargs: Mapping[str, Any] | None = None) -> Network:
    """The network ``ref`` names.

    ``num_classes``, ``in_channels``, ``aux`` (auxiliary classifiers) and ``shortcut`` (ResNet A/B/C)
    are passed to a zoo builder; a spec file or a module keeps what it describes. ``input_shape``
    (C, H, W) is required to trace a module, which has no design input, and to read a Keras file
    whose input size is unknown (``Input(shape=(None, None, 3))``); ``kwargs`` go to a module's class
    or factory.
    """
    if not isinstance(ref, str) or not ref:
        raise CnnlabError(f"model reference {ref!r}: give a zoo name, a YAML/JSON spec file or file.py:NAME")
    spec = is_spec(ref)
    module = not spec and ":" in ref
    if shortcut is not None and (spec or module):
        raise CnnlabError(f"--shortcut applies to the zoo's ResNets, not to {ref}: a spec file or a module "
                          "keeps the shortcuts it describes")
    if spec:
        return load_file(ref, input_shape)
    if Path(ref).suffix.lower() in (".pt", ".pth", ".ckpt"):
        raise CnnlabError(f"no checkpoint at {ref}")
    if module:
        return trace_module(ref, input_shape, kwargs)
    kw: dict[str, Any] = {}
    if shortcut is not None:
        if "shortcut" not in _builder_parameters(ref):
            takers = [n for n in zoo.names() if "shortcut" in _builder_parameters(n)]
            raise CnnlabError(f"model '{ref}' has no shortcut option: --shortcut applies to the ResNets "
                              f"({', '.join(takers[:3])}, ...: {len(takers)} models)")
        kw["shortcut"] = shortcut
    for opt, key, v in (("num_classes", "num_classes", num_classes), ("in_channels", "in_channels", in_channels),
                        ("aux", "aux_logits", aux)):
        if v is not None:
            if isinstance(v, int) and not isinstance(v, bool) and v < 1:
                raise CnnlabError(f"--{opt.replace('_', '-')} must be >= 1, got {v}")
            kw[key] = v
    return zoo.get(ref, **kw)


def load_file(path: str, input_shape: Shape | None = None) -> Network:
    """A model file: a cnnlab spec, a Keras ``.keras`` archive or ``model.to_json()`` file (told by
    its content), or a Caffe ``.prototxt``. ``input_shape`` gives the sizes a Keras input leaves
    unknown and the input of a prototxt that states none; every other file fixes its input."""
    low = path.lower()
    from .export import is_checkpoint

    if is_checkpoint(path):
        return _checkpoint_network(path)
    if low.endswith((".keras", ".h5")):
        from .importers.keras import load_keras

        return load_keras(path, input_shape)
    if low.endswith(".prototxt"):
        from .importers.caffe import load_caffe

        return load_caffe(path, input_shape)
    if low.endswith(".json"):
        from .importers.keras import load_keras, looks_like_keras_json

        if looks_like_keras_json(path):
            return load_keras(path, input_shape)
    return load_spec(path)


def _checkpoint_network(path: str) -> Network:
    """The network a training checkpoint holds (its description, at the input it was trained at); a user's
    module is named instead."""
    from .train import checkpoint

    ck = checkpoint.load(path)
    src = ck.source
    if src is not None:
        import json

        c, h, w = ck.preprocess.input_shape
        kw = f" --kwargs '{json.dumps(src.kwargs)}'" if src.kwargs else ""
        raise CnnlabError(f"{path} trained the module {src.ref or src.name}, which it does not describe: analyze "
                          f"that with {src.ref or 'file.py:NAME'} --input {c}x{h}x{w}{kw}")
    from dataclasses import replace

    return replace(ck.net, input_shape=tuple(ck.preprocess.input_shape))  # as trained (padded or native)


def _builder_parameters(name: str) -> Mapping[str, inspect.Parameter]:
    """The parameters of zoo model ``name``'s builder (for options that only some models have)."""
    return inspect.signature(zoo.info(name).fn).parameters


def trace_module(ref: str, input_shape: Shape | None, kwargs: Mapping[str, Any] | None = None) -> Network:
    """``package.module:NAME`` or ``file.py:NAME`` (a module instance, or a class or factory called with
    ``kwargs``) traced at ``input_shape`` in eval mode."""
    from .usermodule import load_module

    attr = ref.rpartition(":")[2]
    if input_shape is None:
        raise CnnlabError(f"tracing {ref} needs --input CxHxW (input_shape=(C, H, W) in Python): "
                          "a module has no design input")
    if len(input_shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in input_shape):
        raise CnnlabError(f"input_shape {input_shape!r}: give (C, H, W) as three positive integers")
    model = load_module(ref, kwargs).eval()

    from .trace import trace

    return trace(model, tuple(input_shape), name=attr)
