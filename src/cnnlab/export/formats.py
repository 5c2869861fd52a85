"""Write a built network as ONNX, TorchScript or PyTorch source.

Every file is written to a temporary name beside ``out``, checked, then moved into place, so a
failed or interrupted export never leaves a half-written file (nor replaces a good one).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnlabError
from ..files import atomic_path
from ..layers import Shape
from ..network import Network
from .pycode import python_source

FORMATS = ("onnx", "torchscript", "pytorch")
SUFFIXES = {".onnx": "onnx", ".py": "pytorch", ".pt": "torchscript", ".pth": "torchscript"}
ONNX_OPSET = 18


@dataclass
class Exported:
    """What an export wrote: the files and one line about each."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


atomic = atomic_path  # the one atomic writer (cnnlab.files)


def _quiet() -> contextlib.AbstractContextManager[None]:
    """The exporters print progress and warn about tracing details; cnnlab reports in one line."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    log = logging.getLogger("torch.onnx")
    stack.callback(log.setLevel, log.level)
    log.setLevel(logging.ERROR)
    return stack


def to_onnx(model: nn.Module, shape: Shape, out: Path) -> Exported:
    """ONNX through ``torch.onnx.export`` (the torch.export-based exporter), opset ONNX_OPSET, with
    a dynamic batch axis; the file is checked with ``onnx.checker`` before it takes ``out``'s place."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as e:
        raise CnnlabError(f"the onnx export needs the '{e.name}' package: pip install onnx onnxscript "
                          "(onnxruntime to run the file)") from None
    x = torch.randn(2, *shape)
    with atomic(out) as tmp:
        try:
            with _quiet():
                program = torch.onnx.export(
                    model, (x,), dynamo=True, opset_version=ONNX_OPSET, input_names=["input"],
                    output_names=["output"], dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                    verbose=False)
                program.save(str(tmp))
            onnx.checker.check_model(str(tmp))
        except (RuntimeError, ValueError, TypeError, onnx.checker.ValidationError) as e:
            raise CnnlabError(f"the onnx export failed ({type(e).__name__}: {_first_line(e)})") from None
    size = out.stat().st_size
    return Exported([out], [f"{out}: ONNX opset {ONNX_OPSET}, dynamic batch axis (input 'input' N x "
                            f"{'x'.join(map(str, shape))}, output 'output'), checked with onnx.checker, "
                            f"{size / 1e6:.1f} MB"])


def to_torchscript(model: nn.Module, shape: Shape, out: Path) -> Exported:
    """TorchScript through ``torch.jit.trace``: ``torch.jit.load`` reads it without cnnlab."""
    x = torch.randn(1, *shape)
    with atomic(out) as tmp:
        try:
            with _quiet(), torch.no_grad():
                traced = torch.jit.trace(model, (x,), check_trace=False)
            torch.jit.save(traced, str(tmp))
        except (RuntimeError, ValueError, TypeError) as e:
            raise CnnlabError(f"the torchscript export failed ({type(e).__name__}: {_first_line(e)})") from None
    return Exported([out], [f"{out}: TorchScript (torch.jit.trace at N x {'x'.join(map(str, shape))}); "
                            "load it with torch.jit.load, no cnnlab needed"])


def to_pytorch(net: Network, model: nn.Module, shape: Shape, out: Path, *, logits: bool = False,
               source: str = "", weights: bool = False) -> Exported:
    """The network as a self-contained Python file; with ``weights`` its state_dict beside it (same
    name, ``.pt``). Before it is kept, the file's module must take the weights with ``strict=True``."""
    if out.suffix != ".py":
        raise CnnlabError(f"--out {out}: a pytorch export is Python source; give a .py file name")
    text = python_source(net, shape, logits=logits, source=source)
    state = model.state_dict()
    cls = check_source(text, state)
    done = Exported()
    with atomic(out) as tmp:
        tmp.write_text(text)
    done.files.append(out)
    done.notes.append(f"{out}: class {cls}(nn.Module), {text.count(chr(10))} lines, no cnnlab import")
    if weights:
        wpath = out.with_suffix(".pt")
        with atomic(wpath) as tmp:
            torch.save(state, tmp)
        done.files.append(wpath)
        done.notes.append(f"{wpath}: its weights; {cls}().load_state_dict(torch.load('{wpath.name}', "
                          "weights_only=True))")
    return done


def check_source(text: str, state: dict[str, torch.Tensor]) -> str:
    """Run the generated ``text`` and load ``state`` into its module strictly; the class's name."""
    import re

    cls = re.findall(r"^class (\w+)\(nn\.Module\)", text, re.M)[-1]
    scope: dict[str, object] = {"__name__": "cnnlab_export_check"}
    exec(compile(text, "<export>", "exec"), scope)
    module = scope[cls]()  # type: ignore[operator]
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CnnlabError(f"the generated module does not take the network's weights ({_first_line(e)})") from None
    return cls


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(e).__name__


WRITERS: dict[str, Callable[..., Exported]] = {"onnx": to_onnx, "torchscript": to_torchscript}
