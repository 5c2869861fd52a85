"""Training recipes: optimizer, learning-rate schedule and regularization as one named, frozen record.

The presets are the recipes the worked notebooks and papers describe, so ``--recipe alexnet-paper``
reproduces section 5 of the AlexNet paper and ``--recipe lenet-keras`` the Keras LeNet notebook.
The learning rate is computed per iteration as ``schedule(t) * plateau_scale`` (floored at
``min_lr``): a deterministic schedule and ReduceLROnPlateau compose, as the ResNet notebook's
callbacks intend, and the whole state is two numbers that a checkpoint can carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import CnnlabError

OPTIMIZERS = ("sgd", "alexnet-sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle", "keras-resnet")
NORMALIZE = ("scale", "channel", "pixel", "imagenet")
CROP_MODES = ("center", "random")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how weights move, apart from the model and the data."""

    name: str = "custom"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    batch_size: int = 128
    epochs: int = 10
    schedule: str = "constant"
    step_epochs: float = 30.0            # step: multiply by gamma every step_epochs
    milestones: tuple[float, ...] = ()   # multistep: multiply by gamma at each milestone
    milestone_unit: str = "epoch"        # "epoch" or "iter" (the ResNet paper counts iterations)
    gamma: float = 0.1
    warmup_epochs: float = 0.0           # linear warm-up from lr/10 (cosine, step, multistep)
    plateau: bool = False                # ReduceLROnPlateau on top of the schedule
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    monitor: str = "val_loss"            # plateau and early stopping watch this metric
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    aux_weight: float = 0.3              # loss weight of auxiliary classifiers (GoogLeNet: 0.3)
    augment: str = "none"
    crop_mode: str = "center"            # training crops: center, or random (random-resized crop + flip)
    normalize: str = "channel"           # scale: x/255; channel: per-channel mean/std; pixel: per-pixel mean
    early_stop: int = 0                  # patience in epochs; 0 = off
    freeze: str = ""                     # "", "backbone" or a layer: it and all before it stay fixed
    unfreeze_at: int = 0                 # epoch from which the frozen top block (or all) trains; 0 = never
    unfreeze: str = "top"                # top: the last frozen block; all: every frozen layer
    lr_backbone: float | None = None     # rate of trainable parts other than the classifier (None: lr)
    description: str = ""

    def __post_init__(self) -> None:
        check = [(self.optimizer in OPTIMIZERS, f"optimizer '{self.optimizer}': choose from {', '.join(OPTIMIZERS)}"),
                 (self.schedule in SCHEDULES, f"schedule '{self.schedule}': choose from {', '.join(SCHEDULES)}"),
                 (self.normalize in NORMALIZE, f"normalize '{self.normalize}': choose from {', '.join(NORMALIZE)}"),
                 (self.crop_mode in CROP_MODES, f"--crop-mode '{self.crop_mode}': choose from {', '.join(CROP_MODES)}"),
                 (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
                 (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
                 (math.isfinite(self.lr) and self.lr > 0, f"--lr must be a positive number, got {self.lr}"),
                 (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
                 (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
                 (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
                 (self.aux_weight >= 0 and math.isfinite(self.aux_weight),
                  f"--aux-weight must be a number >= 0, got {self.aux_weight}"),
                 (self.min_lr >= 0 and math.isfinite(self.min_lr), f"min_lr must be >= 0, got {self.min_lr}"),
                 (self.monitor in ("val_loss", "val_acc"), f"monitor '{self.monitor}': val_loss or val_acc"),
                 (self.milestone_unit in ("epoch", "iter"), "milestone_unit: epoch or iter"),
                 (self.early_stop >= 0, f"--early-stop must be >= 0, got {self.early_stop}"),
                 (self.step_epochs > 0, f"--step-epochs must be > 0, got {self.step_epochs}"),
                 (0 < self.gamma <= 1, f"--gamma must be in (0, 1], got {self.gamma}"),
                 (0 < self.plateau_factor < 1, f"--plateau-factor must be in (0, 1), got {self.plateau_factor}"),
                 (self.unfreeze in ("top", "all"), f"--unfreeze must be top or all, got '{self.unfreeze}'"),
                 (self.lr_backbone is None or (math.isfinite(self.lr_backbone) and self.lr_backbone > 0),
                  f"--lr-backbone must be a positive number, got {self.lr_backbone}"),
                 (not self.unfreeze_at or bool(self.freeze),
                  f"--unfreeze-at {self.unfreeze_at} needs frozen layers: add --freeze backbone or --freeze LAYER"),
                 (self.unfreeze_at == 0 or 2 <= self.unfreeze_at <= self.epochs,
                  f"--unfreeze-at {self.unfreeze_at} is outside the run's --epochs {self.epochs}: give an epoch "
                  f"from 2 to {self.epochs}, or raise --epochs")]
        for ok, msg in check:
            if not ok:
                raise CnnlabError(msg)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    def with_overrides(self, **kw: Any) -> Recipe:
        """The recipe with the given fields changed; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def with_plateau(self, patience: int | None, factor: float | None = None) -> Recipe:
        """``--plateau PATIENCE`` (0: off) and ``--plateau-factor``; ``None`` keeps the recipe's own."""
        if patience is not None and patience < 0:
            raise CnnlabError(f"--plateau must be >= 0 (0: off), got {patience}")
        kw: dict[str, Any] = {"plateau_factor": factor}
        if patience is not None:
            kw.update(plateau=patience > 0, plateau_patience=patience or self.plateau_patience)
        return self.with_overrides(**kw)


PRESETS: dict[str, Recipe] = {r.name: r for r in (
    Recipe("lenet-keras", optimizer="adam", lr=1e-3, batch_size=128, epochs=20, normalize="scale",
           description="Keras LeNet-5 notebook: Adam (1e-3), batch 128, 20 epochs, pixels / 255"),
    Recipe("alexnet-paper", optimizer="alexnet-sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=128,
           epochs=90, plateau=True, plateau_factor=0.1, plateau_patience=3, monitor="val_acc", augment="imagenet",
           description="AlexNet section 5: v = 0.9 v - 5e-4 lr w - lr grad, lr 0.01 divided by 10 when validation "
                       "accuracy stops improving, batch 128, about 90 epochs"),
    Recipe("resnet-cifar", optimizer="adam", lr=1e-3, batch_size=32, epochs=200, schedule="keras-resnet",
           plateau=True, plateau_factor=math.sqrt(0.1), plateau_patience=5, min_lr=0.5e-6, normalize="pixel",
           augment="cifar",
           description="Keras CIFAR ResNet notebook: Adam 1e-3 x0.1/0.01/0.001/0.0005 after epochs 80/120/160/180, "
                       "ReduceLROnPlateau(sqrt(0.1), patience 5, min 0.5e-6), per-pixel mean, batch 32"),
    Recipe("resnet-cifar-paper", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128,
           epochs=182, schedule="multistep", milestones=(32000, 48000), milestone_unit="iter", normalize="pixel",
           augment="cifar",
           description="ResNet paper, CIFAR-10: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, /10 at 32k and 48k "
                       "iterations, stop at 64k (182 epochs of 45k images)"),
    Recipe("rmsprop-catsdogs", optimizer="rmsprop", lr=1e-4, batch_size=20, epochs=100, normalize="scale",
           augment="keras", early_stop=3,
           description="cats vs dogs notebook: RMSprop 1e-4, batch 20, Keras-style augmentation, pixels / 255, "
                       "early stopping (patience 3), best checkpoint kept"),
    Recipe("mnist-fast", optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, batch_size=128,
           epochs=3, schedule="onecycle", label_smoothing=0.1, normalize="channel",
           description="fast MNIST: SGD + Nesterov 0.9, one-cycle rate peaking at 0.1, label smoothing 0.1, "
                       "wd 5e-4, batch 128, 3 epochs (lenet5-relu: about 99.2% test accuracy)"),
    Recipe("finetune", optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32, epochs=10, normalize="imagenet",
           freeze="backbone",
           description="transfer learning after the ResNet50 notebook: pretrained backbone frozen, new classifier "
                       "trained (SGD 0.01, momentum 0.9, batch 32, ImageNet mean/std, 10 epochs); with "
                       "--unfreeze-at E the top block trains from epoch E at lr/10 (--lr-backbone)"),
)}


def get_recipe(name: str) -> Recipe:
    if name not in PRESETS:
        raise CnnlabError(f"unknown recipe '{name}': choose from {', '.join(PRESETS)}")
    return PRESETS[name]


# --- optimizers ---------------------------------------------------------------------------------

def _torch_optim() -> Any:
    import torch

    class AlexNetSGD(torch.optim.Optimizer):
        """The AlexNet paper's rule: ``v <- m v - wd lr w - lr g; w <- w + v``.

        Unlike ``torch.optim.SGD`` the learning rate sits inside the velocity, so dividing it by 10
        damps new steps while the velocity already built decays at the momentum's pace, as in the paper.
        """

        def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
            super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

        @torch.no_grad()
        def step(self, closure: Any = None) -> Any:
            loss = torch.enable_grad()(closure)() if closure is not None else None
            for group in self.param_groups:
                lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if "velocity" not in state:
                        state["velocity"] = torch.zeros_like(p)
                    v = state["velocity"]
                    v.mul_(m).add_(p, alpha=-wd * lr).add_(p.grad, alpha=-lr)
                    p.add_(v)
            return loss

    return AlexNetSGD


def make_optimizer(recipe: Recipe, params: Iterable[Any], device_type: str = "cpu") -> Any:
    """The recipe's optimizer over ``params``. Keras defaults where a preset copies a Keras notebook
    (RMSprop rho 0.9); the fused kernels where PyTorch has them for the device."""
    import torch

    params = list(params)
    r = recipe
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay,
                               nesterov=r.nesterov and r.momentum > 0)
    if r.optimizer == "alexnet-sgd":
        return _torch_optim()(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
    if r.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if r.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=r.lr, weight_decay=r.weight_decay, fused=device_type in ("cpu", "cuda"))
    return torch.optim.RMSprop(params, lr=r.lr, alpha=0.9, momentum=0.0, weight_decay=r.weight_decay)


# --- learning-rate schedule ---------------------------------------------------------------------

def learning_rate(recipe: Recipe, step: int, steps_per_epoch: int, plateau_scale: float = 1.0) -> float:
    """The rate the optimizer uses at iteration ``step``: the schedule, times the plateau scale,
    floored at ``min_lr`` (Keras' ReduceLROnPlateau ``min_lr``)."""
    return max(recipe.min_lr, scheduled_lr(recipe, step, steps_per_epoch) * plateau_scale)


def scheduled_lr(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate of the deterministic schedule at iteration ``step`` (0-based), before plateaus."""
    r = recipe
    total = max(1, r.epochs * steps_per_epoch)
    epoch = step / steps_per_epoch
    if r.schedule == "onecycle":
        # Linear up over the first 25% from lr/25, cosine down to lr/1e4: short runs reach a good minimum.
        up = 0.25 * total
        if step < up:
            return r.lr / 25 + (r.lr - r.lr / 25) * step / up
        t = min(1.0, (step - up) / max(1.0, total - up))
        return r.lr / 1e4 + (r.lr - r.lr / 1e4) * 0.5 * (1 + math.cos(math.pi * t))
    if r.warmup_epochs > 0 and epoch < r.warmup_epochs:
        return r.lr / 10 + (r.lr - r.lr / 10) * epoch / r.warmup_epochs
    if r.schedule == "constant":
        return r.lr
    if r.schedule == "step":
        return r.lr * r.gamma ** math.floor(epoch / r.step_epochs)
    if r.schedule == "multistep":
        at = step if r.milestone_unit == "iter" else epoch
        return r.lr * r.gamma ** sum(at >= m for m in r.milestones)
    if r.schedule == "cosine":
        t = min(1.0, (step - r.warmup_epochs * steps_per_epoch) / max(1.0, total - r.warmup_epochs * steps_per_epoch))
        return r.min_lr + (r.lr - r.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
    if r.schedule == "keras-resnet":
        # The notebook's lr_schedule(epoch), scaled to the recipe's base rate.
        e = int(epoch)
        factor = 0.5e-3 if e > 180 else 1e-3 if e > 160 else 1e-2 if e > 120 else 1e-1 if e > 80 else 1.0
        return r.lr * factor
    raise CnnlabError(f"schedule '{r.schedule}': choose from {', '.join(SCHEDULES)}")


@dataclass
class Plateau:
    """ReduceLROnPlateau as a multiplier on the schedule (Keras semantics: patience, cooldown 0)."""

    factor: float
    patience: int
    mode: str  # "min" or "max"
    scale: float = 1.0
    best: float | None = None
    bad: int = 0

    def update(self, value: float) -> bool:
        """Record one epoch's metric; True when the rate was just reduced."""
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best, self.bad = value, 0
            return False
        self.bad += 1
        if self.bad >= self.patience:
            self.scale *= self.factor
            self.bad = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.scale, self.best, self.bad = float(d["scale"]), d["best"], int(d["bad"])
