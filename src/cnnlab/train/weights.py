"""Weight files from elsewhere: PyTorch state_dicts, safetensors files and cnnlab checkpoints.

A weight file is data from anywhere, so it is read without running code (``weights_only=True``,
or the safetensors format, which holds nothing but tensors). Matching is strict by default: every
missing key, unexpected key and shape mismatch is gathered into one message, because a half-loaded
network trains without complaint and silently wastes the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError
from ..files import atomic_path

SHOWN = 3  # keys named in full per kind of problem; the rest are counted


class WeightsMismatch(CnnlabError):
    """The file's tensors do not fit the network (names or shapes)."""


def read_weights(path: str | Path, model: nn.Module | None = None, net: Any = None) -> dict[str, torch.Tensor]:
    """Name -> tensor from a ``.safetensors`` file, a PyTorch state_dict or a cnnlab checkpoint; with
    the ``model`` built from ``net``, also from Keras' own files (a ``.keras`` archive or a
    ``.weights.h5``), whose arrays only take PyTorch's names and layout against that model."""
    p = Path(path)
    if not p.is_file():
        raise CnnlabError(f"--weights {p}: no such file")
    from ..importers.keras_weights import is_keras_weights

    if is_keras_weights(p):
        if model is None or net is None:
            raise CnnlabError(f"--weights {p}: Keras weights are read with the model they were saved with; "
                              "give a PyTorch state_dict, a .safetensors file or a cnnlab checkpoint")
        from ..importers.keras_weights import keras_state

        return keras_state(model, net, p)
    if p.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CnnlabError(f"--weights {p}: reading .safetensors needs the safetensors package "
                              "(pip install safetensors)") from None
        try:
            return dict(load_file(str(p), device="cpu"))
        except Exception as e:  # the library raises its own error types for damaged files
            raise CnnlabError(f"--weights {p} is not a readable safetensors file ({type(e).__name__})") from None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # anything but plain tensors and containers is refused here
        raise CnnlabError(f"--weights {p} is not a readable weights file ({type(e).__name__}): give a PyTorch "
                          "state_dict (.pth/.pt), a .safetensors file or a cnnlab checkpoint") from None
    return state_dict_of(state, p)


def state_dict_of(state: Any, source: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file: a cnnlab checkpoint's ``model``, a training script's
    ``state_dict``/``model`` entry, or the plain state_dict torchvision and timm publish."""
    if isinstance(state, dict) and state.get("format") == "cnnlab-checkpoint":
        from .checkpoint import Checkpoint

        return dict(Checkpoint.from_state(state, source).model)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            inner = state.get(key)
            if isinstance(inner, dict) and inner and _all_tensors(inner):
                state = inner
                break
    if not isinstance(state, dict) or not state or not _all_tensors(state):
        raise CnnlabError(f"--weights {source} holds no state_dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _all_tensors(d: dict[Any, Any]) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def head_of(model: nn.Module) -> str:
    """The classifier: the last module (in registration, which is forward order) holding parameters."""
    last = ""
    for name, m in model.named_modules():
        if name and any(True for _ in m.parameters(recurse=False)):
            last = name
    if not last:
        raise CnnlabError("the network has no parameters, so it has no classifier to replace")
    return last


def under(key: str, prefix: str) -> bool:
    """Whether the dotted ``key`` lies inside the module at ``prefix``."""
    return key == prefix or key.startswith(prefix + ".")


@dataclass
class Loaded:
    """What a load did: tensors taken from the file and those that stay as built (new)."""

    source: str
    taken: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # in the file, not used
    head: str | None = None                            # the classifier replaced by a new one
    head_outputs: tuple[int, int] | None = None        # (file's, network's) classes
    head_classes: int = 0
    aux: list[str] = field(default_factory=list)       # the file's auxiliary heads, left out

    def summary(self) -> str:
        text = f"loaded {len(self.taken)} of {len(self.taken) + len(self.new)} tensors from {self.source}"
        if self.head:
            was = f", the file's has {self.head_outputs[0]}" if self.head_outputs else ", none in the file"
            text += f"; new classifier {self.head} ({self.head_classes} classes{was})"
        if self.aux:
            text += f"; left out the file's auxiliary heads {', '.join(self.aux)} (build with --aux to keep them)"
        others = [k for k in self.new if not (self.head and under(k, self.head))]
        if others:
            text += f"; new: {_names(others)}"
        return text


def layers_of(keys: list[str]) -> list[str]:
    """The layers (dotted paths) that own the tensor ``keys``, in order, each once."""
    return list(dict.fromkeys(k.rpartition(".")[0] or k for k in keys))


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def _x(shape: Any) -> str:
    return "x".join(map(str, shape)) or "scalar"


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str, *, partial: bool = False,
                 new_head: bool = False, net_name: str = "the network", can_replace: bool = True) -> Loaded:
    """Copy ``state`` into ``model``. Strict: any missing, unexpected or misshapen tensor raises one
    :class:`WeightsMismatch` line. ``new_head``: the classifier keeps its fresh weights when the
    file's has another class count. ``partial``: load what fits and report the rest as new.
    ``can_replace``: whether the caller can replace a classifier (training can; prediction cannot)."""
    own = model.state_dict()
    res = Loaded(source)
    head = head_of(model) if new_head else None
    if head is not None:
        shapes = {k: (tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
                  if under(k, head) and k in state}
        if not shapes or any(a != b for a, b in shapes.values()):
            res.head = head  # the file's classifier has another class count, or the file has none
            w = next(((a, b) for k, (a, b) in shapes.items() if k.endswith("weight")), None)
            res.head_outputs = (w[0][0], w[1][0]) if w else None
            res.head_classes = next((v.shape[0] for k, v in own.items() if under(k, head) and v.dim() > 0), 0)
    missing = [k for k in own if k not in state and not (res.head and under(k, res.head))]
    unexpected = [k for k in state if k not in own]
    # torchvision publishes GoogLeNet and Inception v3 with their training-only auxiliary heads;
    # a network built without them uses the rest, as torchvision's own loader does.
    res.aux = list(dict.fromkeys(k.split(".")[0] for k in unexpected if k.split(".")[0].lower().startswith("aux")))
    unexpected = [k for k in unexpected if k.split(".")[0] not in res.aux]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)
             and not (res.head and under(k, res.head))]
    if (missing or unexpected or wrong) and not partial:
        raise WeightsMismatch(_mismatch(source, net_name, own, state, missing, unexpected, wrong, head, can_replace))
    with torch.no_grad():
        for k, v in own.items():
            if k in state and tuple(state[k].shape) == tuple(v.shape) and not (res.head and under(k, res.head)):
                v.copy_(state[k].to(v.dtype))
                res.taken.append(k)
            else:
                res.new.append(k)
    res.skipped = [k for k in state if k not in res.taken]
    if not res.taken:
        raise WeightsMismatch(f"--weights {source}: no tensor fits {net_name} (first keys in the file: "
                              f"{_names(list(state))}); give weights for this architecture")
    return res


def _mismatch(source: str, net_name: str, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
              missing: list[str], unexpected: list[str], wrong: list[str], head: str | None,
              can_replace: bool = True) -> str:
    parts = []
    if wrong:
        shown = "; ".join(f"{k} is {_x(state[k].shape)} in the file, {_x(own[k].shape)} in the network"
                          for k in wrong[:SHOWN])
        parts.append(f"{len(wrong)} of other shape ({shown}{', ...' if len(wrong) > SHOWN else ''})")
    if missing:
        parts.append(f"{len(missing)} missing from the file ({_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
    fix = "give weights for this architecture, or --partial to load only what fits"
    if head is None and wrong and all(w.rsplit(".", 1)[0] == wrong[0].rsplit(".", 1)[0] for w in wrong):
        fix = (f"pass --num-classes {own[wrong[0]].shape[0]} to replace the classifier with a new one, or --partial"
               if can_replace else f"the file's classifier has {state[wrong[0]].shape[0]} outputs: give "
               f"--num-classes {state[wrong[0]].shape[0]} (and as many --classes names)")
    return f"--weights {source} does not fit {net_name}: {'; '.join(parts)}; {fix}"


def save_weights(path: str | Path, state: dict[str, torch.Tensor]) -> None:
    """Write a state_dict atomically: ``.safetensors`` by its extension, else ``torch.save``."""
    p = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(p) as tmp:
        if p.suffix.lower() == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp))
        else:
            with open(tmp, "wb") as f:
                torch.save(state, f)


def pretrained(ref: str, weights: str | Path, *, num_classes: int | None = None, size: tuple[int, int] | None = None,
               resize: tuple[int, int] | None = None, normalize: str = "imagenet",
               partial: bool = False) -> tuple[Any, nn.Module, Any]:
    """A model (zoo name, spec or module reference) with published weights and no cnnlab checkpoint:
    the network, its module in eval mode, and the input map the weights expect (``imagenet`` or ``scale``)."""
    from ..models import load_model
    from ..torch_backend import build
    from .preprocess import Preprocess

    if normalize not in ("imagenet", "scale"):
        raise CnnlabError(f"--normalize {normalize}: without a checkpoint only imagenet or scale apply (the "
                          "others are fitted on training data)")
    net = load_model(ref, num_classes=num_classes)
    c = net.input_shape[0]
    h, w = size or tuple(net.input_shape[1:])
    model = build(net, (c, h, w), logits=True)
    load_weights(model, read_weights(weights, model, net), str(weights), partial=partial, net_name=net.name,
                 can_replace=False)
    if normalize == "imagenet":
        prep = Preprocess.imagenet((c, h, w))
    else:
        prep = Preprocess.fit(torch.zeros(1, c, h, w, dtype=torch.uint8), "scale")
    prep.resize = resize
    return net, model.eval(), prep
