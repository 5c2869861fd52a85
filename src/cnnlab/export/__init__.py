"""Networks out of cnnlab: ONNX, TorchScript, and a plain PyTorch source file.

:func:`export_model` takes what every command takes (a zoo name, a spec file, ``file.py:NAME``)
or a training checkpoint, whose trained weights go with it. Only the PyTorch source generator
(:mod:`cnnlab.export.pycode`) works from the description alone; the rest needs torch.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CnnlabError
from ..layers import Shape
from ..network import Network

if TYPE_CHECKING:
    from .formats import Exported

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_checkpoint(ref: str) -> bool:
    """A reference names a checkpoint when it is named like one or is a zip archive (torch.save's)."""
    from ..models import SPEC_SUFFIXES

    p = Path(ref)
    if ref.lower().endswith(SPEC_SUFFIXES):
        return False
    return p.suffix.lower() in CHECKPOINT_SUFFIXES or (p.is_file() and zipfile.is_zipfile(p))


def export_model(ref: str, fmt: str, out: str | Path, *, input_shape: Shape | None = None,
                 num_classes: int | None = None, in_channels: int | None = None, aux: bool | None = None,
                 shortcut: str | None = None) -> Exported:
    """Write the network ``ref`` names as ``fmt`` (onnx, torchscript or pytorch) to ``out``.

    ``input_shape`` (C, H, W) is the traced shape (default: the design input, or the checkpoint's);
    the model options are those of :func:`cnnlab.load_model`. A checkpoint exports its trained
    weights in the training form (logits), which is what it was trained and evaluated as."""
    from .formats import FORMATS, WRITERS, to_pytorch

    if fmt not in FORMATS:
        raise CnnlabError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")
    out = Path(out)
    if is_checkpoint(ref):
        given = [o for o, v in (("--num-classes", num_classes), ("--in-channels", in_channels), ("--aux", aux),
                                ("--shortcut", shortcut)) if v is not None]
        if given:
            raise CnnlabError(f"{given[0]} does not apply to a checkpoint: it exports the network it was trained as")
        net, model, shape, prep_mode = _from_checkpoint(ref, input_shape)
        logits = weights = True
    else:
        from ..models import load_model
        from ..torch_backend import build

        net = load_model(ref, num_classes=num_classes, in_channels=in_channels, aux=aux, shortcut=shortcut,
                         input_shape=input_shape)
        shape = tuple(input_shape or net.input_shape)
        model = build(net, shape)
        logits = weights = False
    model.eval()
    if fmt == "pytorch" and not isinstance(net, Network):
        raise CnnlabError(f"{ref} trained the module {net.ref}: that file is its PyTorch source already; export "
                          "it as onnx or torchscript")
    if fmt == "pytorch":
        done = to_pytorch(net, model, shape, out, logits=logits, source=Path(ref).name if weights else ref,
                          weights=weights)
    else:
        done = WRITERS[fmt](model, shape, out)
    if weights:
        done.notes.append(f"it returns logits and takes images as the checkpoint's '{prep_mode}' preprocessing "
                          "leaves them (cnnlab predict applies it)")
    return done


def _from_checkpoint(ref: str, input_shape: Shape | None) -> tuple:
    """The checkpoint's network, its module with the trained weights, the shape to export at, and
    its preprocessing mode."""
    from ..torch_backend import build
    from ..train import checkpoint

    ck = checkpoint.load(ref)
    ck.check_finite(ref)
    net, model, prep = ck.rebuild(ref)
    shape = tuple(prep.input_shape)
    if ck.source is not None:  # a user's module takes any size it was written for
        return net, model, tuple(input_shape or shape), prep.mode
    if input_shape is not None and tuple(input_shape) != shape:
        shape = tuple(input_shape)
        model = build(net, shape, logits=True)
        try:
            model.load_state_dict(ck.model)
        except RuntimeError:
            want = "x".join(map(str, prep.input_shape))
            raise CnnlabError(f"{ref}'s weights do not fit its network at --input {'x'.join(map(str, shape))} "
                              f"(it was trained at {want}): leave --input out") from None
    return net, model, shape, prep.mode
