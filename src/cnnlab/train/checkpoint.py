"""Checkpoints that rebuild their model alone: the network spec (or, for a user's own module, its
import reference and arguments), the input map, the classes, the weights, and the optimizer and
schedule state that ``--resume`` needs.

:class:`Checkpoint` is the only code that knows the file's keys. Reading checks every one of them
(a file is data from anywhere: a wrong type or shape must give one line, not a traceback deep in
torch), and writing is atomic (a temporary file, fsync, then ``os.replace``), so a crash or a full
disk mid-write never destroys the last good file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CnnlabError
from ..files import atomic_path
from ..network import Network, network_from_spec
from ..usermodule import ModuleRef
from .preprocess import Preprocess

FORMAT = "cnnlab-checkpoint"
VERSION = 1


class InvalidCheckpoint(CnnlabError):
    """The file reads as a checkpoint but something in it is missing, mistyped or inconsistent."""


@dataclass
class Checkpoint:
    """One training run at the end of an epoch."""

    network: dict[str, Any]          # the network spec (network_to_spec), or {"name", "module"} for a user's module
    preprocess: Preprocess
    classes: list[str]
    model: dict[str, torch.Tensor]   # state_dict of the built module
    data: str = ""
    optimizer: dict[str, Any] = field(default_factory=dict)
    plateau: dict[str, Any] = field(default_factory=lambda: {"scale": 1.0, "best": None, "bad": 0})
    recipe: dict[str, Any] = field(default_factory=dict)
    seed: int = 0                    # training seed; also the seed of an image folder's train/val split
    val_fraction: float | None = None  # an image folder's held-out fraction, when the run split one
    metrics: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = 0
    stale: int = 0
    torch_version: str = field(default_factory=lambda: str(torch.__version__))
    _net: Network | None = field(default=None, init=False, repr=False, compare=False)
    _built: torch.nn.Module | None = field(default=None, init=False, repr=False, compare=False)
    _source: ModuleRef | None = field(default=None, init=False, repr=False, compare=False)

    # --- file form ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Plain containers and tensors only, so loading never needs to unpickle code."""
        return {
            "format": FORMAT, "version": VERSION,
            "network": self.network, "preprocess": self.preprocess.state_dict(), "classes": list(self.classes),
            "data": self.data, "model": self.model, "optimizer": self.optimizer, "plateau": self.plateau,
            "recipe": self.recipe, "seed": self.seed, "val_fraction": self.val_fraction, "metrics": self.metrics,
            "trainer": {"epoch": self.epoch, "step": self.step, "best": self.best, "best_epoch": self.best_epoch,
                        "stale": self.stale},
            "torch": self.torch_version,
        }

    @classmethod
    def from_state(cls, state: Any, source: str | Path = "checkpoint") -> Checkpoint:
        """Check and read a loaded state; anything malformed raises one line naming ``source``."""
        try:
            return cls._from_state(state)
        except InvalidCheckpoint as e:
            raise InvalidCheckpoint(f"{source} is not a valid cnnlab checkpoint: {e}") from None

    @classmethod
    def _from_state(cls, s: Any) -> Checkpoint:
        if not isinstance(s, dict) or s.get("format") != FORMAT:
            raise InvalidCheckpoint("it lacks the cnnlab-checkpoint format marker")
        version = s.get("version")
        if type(version) is not int or version != VERSION:
            raise InvalidCheckpoint(f"format version {version!r} is not {VERSION}, the one this cnnlab reads; "
                                    "use the cnnlab that wrote it")
        t = _get(s, "trainer", dict)
        ck = cls(
            network=_get(s, "network", dict),
            preprocess=_preprocess(_get(s, "preprocess", dict)),
            classes=_get(s, "classes", list),
            model=_get(s, "model", dict),
            data=_get(s, "data", str),
            optimizer=_get(s, "optimizer", dict),
            plateau=_get(s, "plateau", dict),
            recipe=_get(s, "recipe", dict),
            seed=_get(s, "seed", int),
            val_fraction=s.get("val_fraction"),
            metrics=_get(s, "metrics", list),
            epoch=_get(t, "epoch", int, "trainer."),
            step=_get(t, "step", int, "trainer."),
            best=t.get("best"),
            best_epoch=_get(t, "best_epoch", int, "trainer."),
            stale=_get(t, "stale", int, "trainer."),
            torch_version=str(s.get("torch", "")),
        )
        ck._check()
        return ck

    def _check(self) -> None:
        if not all(isinstance(c, str) for c in self.classes):
            raise InvalidCheckpoint("'classes' must be a list of names")
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in self.model.items()):
            raise InvalidCheckpoint("'model' must map parameter names to tensors")
        if not all(isinstance(r, dict) for r in self.metrics):
            raise InvalidCheckpoint("'metrics' must be a list of per-epoch records")
        if self.best is not None and not isinstance(self.best, (int, float)):
            raise InvalidCheckpoint("'trainer.best' must be a number")
        if self.val_fraction is not None and not isinstance(self.val_fraction, (int, float)):
            raise InvalidCheckpoint("'val_fraction' must be a number")
        if not all(isinstance(d.get(k), (int, float)) for d, k in ((self.plateau, "scale"), (self.plateau, "bad"))):
            raise InvalidCheckpoint("'plateau' must hold 'scale' and 'bad' numbers")
        if min(self.epoch, self.step, self.best_epoch, self.stale, self.seed) < 0 or self.best_epoch > self.epoch:
            raise InvalidCheckpoint("negative or inconsistent epoch counters")
        if "module" in self.network:
            try:
                self._source = ModuleRef.from_dict(self.network["module"])
            except ValueError as e:
                raise InvalidCheckpoint(str(e)) from None
            return  # the module is user code: it is built, and checked against the weights, by rebuild()
        net = self.net
        from ..analysis import analyze
        from ..layers import scores

        try:
            a = analyze(net, self.preprocess.input_shape)
        except CnnlabError as e:
            raise InvalidCheckpoint(f"its network does not take its {_x(self.preprocess.input_shape)} input ({e})") from None
        out, params = tuple(a.output_shape), a.totals["params"]
        stored = sum(t.numel() for t in self.model.values())
        if params > stored:  # checked by arithmetic before anything is allocated (a forged input size)
            raise InvalidCheckpoint(f"its weights do not fit its network (it has {params:,} parameters at its "
                                    f"{_x(self.preprocess.input_shape)} input, the file holds {stored:,} values)")
        if scores(out) != (len(self.classes),):
            raise InvalidCheckpoint(f"it names {len(self.classes)} classes but its network outputs {_x(out)} values")
        try:
            module = self._module()
        except CnnlabError as e:
            raise InvalidCheckpoint(f"its network does not build ({e})") from None
        self._built = module  # rebuild() reuses it: a large network is built once
        self._check_weights(module)

    def _check_weights(self, module: torch.nn.Module) -> None:
        want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in self.model.items()}
        if want.keys() != got.keys():
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            what = (f"weights missing for {', '.join(missing[:3])}" if missing
                    else f"weights for no layer of its network: {', '.join(extra[:3])}")
            raise InvalidCheckpoint(f"its weights do not fit its network ({what})")
        for k, shape in want.items():
            if got[k] != shape:
                raise InvalidCheckpoint(f"its weights do not fit its network ({k} is {_x(got[k])} in the file, "
                                        f"{_x(shape)} in the network)")

    # --- the model ------------------------------------------------------------------------------

    @property
    def source(self) -> ModuleRef | None:
        """The user's module this run trained (None: a network description)."""
        if self._source is None and "module" in self.network:
            self._source = ModuleRef.from_dict(self.network["module"])
        return self._source

    @property
    def name(self) -> str:
        return str(self.network.get("name", ""))

    @property
    def net(self) -> Network:
        if self.source is not None:
            raise InvalidCheckpoint(f"it holds a user's module ({self.source.ref or self.source.name}), not a "
                                    "network description")
        if self._net is None:
            try:
                self._net = network_from_spec(self.network, "checkpoint")
            except CnnlabError as e:
                raise InvalidCheckpoint(f"its network does not rebuild ({e})") from None
            except (RecursionError, TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
                raise InvalidCheckpoint(f"its network does not rebuild ({type(e).__name__})") from None
        return self._net

    def _module(self) -> torch.nn.Module:
        from ..torch_backend import build

        return build(self.net, self.preprocess.input_shape, logits=True)

    def rebuild(self, source: str | Path = "the checkpoint") -> tuple[Network | ModuleRef, torch.nn.Module, Preprocess]:
        """The network (or the user's module reference), its module with the saved weights (eval mode)
        and the input map. A user's module is imported and built here, then checked against the weights
        and the classes as a description is on loading."""
        if self.source is not None:
            model = self.source.build(str(source))
            try:
                self._check_weights(model)
            except InvalidCheckpoint as e:
                raise InvalidCheckpoint(f"{source}: {e} ({self.source.ref} builds another module than the one "
                                        "trained; give the same file and --kwargs)") from None
            model.load_state_dict(self.model)
            model.eval()
            out = output_shape(model, self.preprocess.input_shape, str(self.source.ref))
            if out != (len(self.classes),):
                raise InvalidCheckpoint(f"{source}: it names {len(self.classes)} classes but "
                                        f"{self.source.name} outputs {_x(out)} values")
            return self.source, model, self.preprocess
        model, self._built = self._built or self._module(), None
        model.load_state_dict(self.model)
        return self.net, model.eval(), self.preprocess

    def nonfinite(self) -> list[str]:
        """Names of weights holding NaN or infinity (a diverged run's): such a model answers nothing."""
        return [k for k, v in self.model.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]

    def check_finite(self, source: str | Path) -> None:
        bad = self.nonfinite()
        if bad:
            raise CnnlabError(f"{source} holds NaN or infinite weights ({', '.join(bad[:3])}): its predictions "
                              "would be meaningless; use a checkpoint from before training diverged")


def output_shape(model: torch.nn.Module, input_shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    """The per-image output shape of ``model`` (eval mode, one image of ``input_shape``): the first output
    when it returns several (auxiliary heads). A failure in the user's code is one line naming it."""
    from ..measure import user_code_error

    was = model.training
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            out = model.eval()(torch.zeros(1, *input_shape, device=p.device if p is not None else "cpu"))
    except Exception as e:
        raise user_code_error(e, f"running {what} on a {_x(input_shape)} input") from None
    finally:
        model.train(was)
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise CnnlabError(f"{what} returns a {type(out).__name__}, not a tensor of class scores")
    return tuple(out.shape[1:])


def _get(d: dict[str, Any], key: str, kind: type, prefix: str = "") -> Any:
    if key not in d:
        raise InvalidCheckpoint(f"'{prefix}{key}' is missing")
    v = d[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise InvalidCheckpoint(f"'{prefix}{key}' is a {type(v).__name__}, not a {kind.__name__}")
    return v


def _preprocess(d: dict[str, Any]) -> Preprocess:
    try:
        return Preprocess.from_state(d)
    except CnnlabError as e:
        raise InvalidCheckpoint(f"bad 'preprocess': {e}") from None


def _x(shape: Any) -> str:
    return "x".join(map(str, shape))


# --- files --------------------------------------------------------------------------------------

def save(path: Path, ck: Checkpoint) -> None:
    """Write atomically; on any failure the temporary file goes and the old ``path`` stays."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(ck.to_state(), f)


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint (plain tensors and containers only: nothing in it can run code)."""
    p = Path(path)
    if not p.is_file():
        raise CnnlabError(f"no checkpoint at {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise CnnlabError(f"{p} is not a readable checkpoint ({type(e).__name__})") from None
    return Checkpoint.from_state(state, p)


def epoch_of(path: Path) -> int | None:
    """The epoch a checkpoint file records, or None when it is missing or unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        epoch = state["trainer"]["epoch"]
    except Exception:  # missing, truncated or foreign: all mean "no usable epoch here"
        return None
    return epoch if type(epoch) is int else None


def copy(src: Path, dst: Path) -> None:
    """Copy a checkpoint file atomically (best.pt restored from last.pt after an interrupted write)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
