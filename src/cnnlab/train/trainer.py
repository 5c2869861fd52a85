"""The training loop: uint8 batches from memory or a store mapped from disk, one recipe, checkpoints, metrics.

Batches are sliced from the in-memory image tensor by a seeded permutation, cut to the size the model
reads (``Options.crop``: the centre, or random-resized crops in training), converted and
augmented as whole batches on the training device: no per-sample Dataset or worker processes,
which on a small CPU cost more than the model itself. A prepared store (:mod:`cnnlab.data.store`) is indexed
the same way through its memory map, so only the batch is ever copied. Every epoch reseeds its permutation,
augmentation and dropout from (seed, epoch), so a run resumed after epoch k replays exactly the
epochs an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import random_resized_crop
from ..errors import CnnlabError
from ..network import Network, network_to_spec
from ..usermodule import ModuleRef
from . import checkpoint, distributed, transfer
from .checkpoint import Checkpoint
from .metrics import Meter, confusion_matrix, topk_correct, write_json
from .preprocess import Preprocess, center_crop, fit_padding
from .recipes import Plateau, Recipe, learning_rate, make_optimizer
from .weights import Loaded, load_weights, read_weights

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclass
class Options:
    """How a run executes, apart from the recipe: where, how fast, where to write."""

    out: Path | None = None
    device: str = "auto"
    amp: str = "off"                 # off | bf16 | fp16
    channels_last: bool | None = None  # NHWC, faster convolutions on CPU (oneDNN) and tensor cores; None: on
                                       # for a description, off for a user's module
    compile: bool = False
    seed: int | None = None          # None: 0, or a resumed run's own seed
    val_fraction: float | None = None  # recorded in checkpoints, so evaluation finds the same split
    resume: bool = False
    overwrite: bool = False          # start afresh in an OUT that already holds a run
    progress: bool = True
    eval_batch_size: int = 1000
    target_acc: float | None = None  # stop at the end of the first epoch whose val_acc reaches it
    fit: str = "auto"                # auto | pad | native: how data meets the design input
    log: Callable[[str], None] | None = None
    augment: Augment | None = None
    on_epoch: Callable[[dict[str, Any]], None] | None = None  # after each epoch's files are written
    weights: Path | None = None      # pretrained weights for a new run (a resumed run keeps its own)
    partial: bool = False            # load the tensors that fit, keep the rest as built
    new_head: bool = False           # a classifier of another class count in the file is replaced
    resize: tuple[int, int] | None = None  # images were resized to this, then centre-cropped (recorded)
    crop: tuple[int, int] | None = None    # the model reads this (H, W) cut from each image, batch by batch: the
    #                                        centre, or in training a random-resized crop (recipe.crop_mode)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"unknown device '{name}': use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CnnlabError(f"device '{name}' requested but CUDA is not available here")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


RUN_FILES = ("last.pt", "best.pt", "metrics.json")
TMP_FILES = ("last.pt.tmp", "best.pt.tmp", "metrics.json.tmp", "curves.tmp.png")


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise CnnlabError(f"--seed must be an integer in [0, 2**63), got {seed}")
    return seed


def check_out(out: Path | None, resume: bool, overwrite: bool) -> None:
    """Refuse an OUT that cannot hold a run, before any data is read: a file, a read-only place, or
    (without --resume or --overwrite) an earlier run whose checkpoints and metrics would be replaced."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise CnnlabError(f"--out {out} is a file, not a folder: give a folder for the run's files")
    place = out
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise CnnlabError(f"--out {out}: {place} is a file, so the folder cannot be made there")
    if not os.access(place, os.W_OK | os.X_OK):
        raise CnnlabError(f"--out {out}: {place} is not writable; give a folder you can write to")
    if resume or overwrite:
        return
    held = [f for f in RUN_FILES if (out / f).is_file()]
    if held:
        raise CnnlabError(f"{out} already holds a run ({', '.join(held)}): pass --resume to continue it, "
                          "--overwrite to start over, or another --out")


def _rank_seed(seed: int, rank: int) -> int:
    """The seed of one process's own draws (dropout, crops, augmentation): ``seed`` itself on rank 0, so a
    single process is unchanged; leaves room for the +1/+2 offsets below 2**63."""
    return (seed + 1_000_003 * rank) % (2**63 - 3)


def _seed_for(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


@dataclass
class State:
    """What --resume restores besides weights and optimizer moments."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int = 0
    stale: int = 0  # epochs since the monitored metric last improved (early stopping)


class Trainer:
    """Train ``net`` on ``train`` with ``recipe``; validate on ``val`` after every epoch.

    ``net`` is a network description (built here) or a user's own module (:class:`ModuleRef`), trained as
    it is: its own layers and initialization, the data's size as its input, its reference in checkpoints.
    """

    def __init__(self, net: Network | ModuleRef, train: Any, val: Any | None, recipe: Recipe, opts: Options | None = None,
                 *, data_name: str = "") -> None:
        self.net, self.train_set, self.val_set, self.recipe = net, train, val, recipe
        self.user = isinstance(net, ModuleRef)
        self.opts = opts or Options()
        self.data_name = data_name or getattr(train, "name", "")
        resumed = self._setup_run()
        self._setup_data()
        self._setup_model(resumed)
        self.state = State()
        if resumed is not None:
            self._resume(resumed)
        self._place()

    # --- set-up ---------------------------------------------------------------------------------

    def _setup_run(self) -> Checkpoint | None:
        """Processes, device, precision, the output folder and the seed (a resumed run's own by default)."""
        o = self.opts
        self.ctx = distributed.setup("cuda" if "cuda" in o.device or (
            o.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(o.device, self.ctx.local_rank)
        self.main = self.ctx.main
        self.log = o.log or (print if self.main else (lambda s: None))
        if o.amp not in ("off", "bf16", "fp16"):
            raise CnnlabError(f"--amp must be off, bf16 or fp16, got '{o.amp}'")
        if o.amp == "fp16" and self.device.type != "cuda":
            raise CnnlabError("--amp fp16 needs a CUDA device; use --amp bf16 on CPU")
        # A user's module may .view() its feature map, which a channels-last tensor refuses: off unless asked.
        self.channels_last = o.channels_last if o.channels_last is not None else not self.user
        check_out(o.out, o.resume, o.overwrite)
        resumed = self._read_resume() if o.resume else None
        self.seed = check_seed(o.seed if o.seed is not None else resumed.seed if resumed else 0)
        self.ran = 0  # epochs run by fit()
        self._plotted_at, self._plotted_epoch = time.perf_counter(), 0
        return resumed

    def _setup_data(self) -> None:
        """Check the sets, fit the input map on the training images, match the output to the classes."""
        self._check_data()
        train, net, crop = self.train_set, self.net, self.opts.crop
        self.classes = list(train.classes)
        c, h, w = (int(v) for v in train.images.shape[1:])
        if not self.user and net.input_shape[0] != c:
            raise CnnlabError(f"{net.name} is built for {net.input_shape[0]} input channels but the data has {c}")
        if crop is not None and (crop[0] > h or crop[1] > w):
            raise CnnlabError(f"--crop {crop[0]}x{crop[1]} is larger than the {h}x{w} images: give a crop no larger "
                              "than --size (or than the store's size)")
        self.random_crop = self.recipe.crop_mode == "random"
        # The map is fitted on what validation reads, the centre crops (a view: a store is not read into memory).
        images = train.images if crop is None else center_crop(train.images, crop)
        # A user's module has no design input: it takes the data as it is.
        design = tuple(images.shape[2:]) if self.user else tuple(net.input_shape[1:])
        pad = fit_padding(tuple(images.shape[2:]), design, self.opts.fit)
        self.prep = Preprocess.fit(images, self.recipe.normalize, pad)
        self.prep.resize = (h, w) if crop is not None else self.opts.resize
        if self.user:
            return
        from ..analysis import analyze
        from ..layers import scores

        out_shape = tuple(analyze(net, self.prep.input_shape).output_shape)
        if scores(out_shape) != (len(self.classes),):
            raise CnnlabError(f"{net.name} outputs {'x'.join(map(str, out_shape))} values but the data has "
                              f"{len(self.classes)} classes; build it with --num-classes {len(self.classes)}")

    def _setup_model(self, resumed: Checkpoint | None = None) -> None:
        """The module (seeded initial weights, or pretrained ones), which parts train in the phase the
        run starts in, its optimizer and the plateau rule."""
        from ..torch_backend import build

        r, o = self.recipe, self.opts
        torch.manual_seed(self.seed)
        if isinstance(self.net, ModuleRef):
            self.model = self.net.build("the run")
            self._check_module_output()
        else:
            self.model = build(self.net, self.prep.input_shape, logits=True)
        self.plan = transfer.make_plan(self.model, r.freeze, r.unfreeze) if r.freeze else None
        self.loaded: Loaded | None = None
        if o.weights is not None and resumed is None:
            self.loaded = load_weights(self.model, read_weights(o.weights, self.model, self.net), str(o.weights),
                                       partial=o.partial, new_head=o.new_head, net_name=self.net.name)
            self.log(self.loaded.summary())
        done = resumed.epoch if resumed is not None else 0  # thawing happens as epoch unfreeze_at starts
        self.thawed = bool(self.plan and r.unfreeze_at and done >= r.unfreeze_at)
        transfer.apply(self.model, self.plan, self.thawed)
        groups = transfer.param_groups(self.model, self.plan, r.lr, r.lr_backbone, self.thawed)
        self.optimizer = make_optimizer(r, groups, self.device.type)
        self.plateau = Plateau(r.plateau_factor, r.plateau_patience, "min" if r.monitor == "val_loss" else "max")

    def _check_module_output(self) -> None:
        """A user's module must give one score per class for the data's images."""
        from .checkpoint import output_shape

        net = self.net
        assert isinstance(net, ModuleRef)
        out = output_shape(self.model, self.prep.input_shape, net.ref or net.name)
        n = len(self.classes)
        if out != (n,):
            from ..usermodule import load_object, parameters_of

            takes = net.ref is not None and ("num_classes" in net.kwargs or
                                             "num_classes" in parameters_of(load_object(net.ref)))
            fix = f"give --kwargs num_classes={n}" if takes else f"give its last layer {n} outputs"
            c, h, w = self.prep.input_shape
            raise CnnlabError(f"{net.name} outputs {'x'.join(map(str, out))} values for a {c}x{h}x{w} image but the "
                              f"data has {n} classes: {fix}")

    def spec(self) -> dict[str, Any]:
        """What checkpoints record to build the model again."""
        if isinstance(self.net, ModuleRef):
            return {"name": self.net.name, "module": self.net.to_dict()}
        return network_to_spec(self.net)

    def parameter_counts(self) -> list[tuple[str, int, int]]:
        """(part, trainable, frozen) for the classifier and the backbone, as the run starts."""
        return transfer.counts(self.model, self.plan.head if self.plan else transfer.head_of(self.model))

    def _thaw(self, epoch: int) -> None:
        """The second phase of fine-tuning: the top block (or all) trains from here, at its own rate."""
        assert self.plan is not None
        r = self.recipe
        transfer.apply(self.model, self.plan, thawed=True)
        group = transfer.thaw_group(self.model, self.plan, r.lr, r.lr_backbone)
        self.optimizer.add_param_group(group)
        self.thawed = True
        if self.ctx.active or self.opts.compile:
            self._wrap()
        n = sum(p.numel() for p in group["params"])
        self.log(f"epoch {epoch}: unfreezing {self.plan.thaw_name} ({n:,} parameters) at lr "
                 f"x{group['lr_scale']:.3g}")

    def _place(self) -> None:
        """Move model, optimizer state and (small) data to the device; wrap for DDP and compile."""
        o, train = self.opts, self.train_set
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        _move_optimizer_state(self.optimizer, self.device)
        self._wrap()
        self.scaler = torch.amp.GradScaler("cuda") if o.amp == "fp16" else None
        self.prep_dev = self.prep.to(self.device)
        # Small data sets move to the GPU whole; batches are then gathered there.
        on_dev = self.device.type == "cuda" and train.images.nbytes < 2**31
        self.images = train.images.to(self.device) if on_dev else train.images
        self.labels = train.labels.to(self.device) if on_dev else train.labels
        self.mapped = bool(getattr(train, "mapped", False)) and not on_dev

    def _wrap(self) -> None:
        """DDP and compile wrappers; built again when frozen layers thaw (DDP syncs only the
        parameters that train when it is built)."""
        self.train_model: nn.Module = self.model
        if self.ctx.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        self.eval_model: nn.Module = self.model
        if self.opts.compile:
            self.train_model = torch.compile(self.train_model)
            self.eval_model = torch.compile(self.model)

    def _check_data(self) -> None:
        t = self.train_set
        if t.images.dtype != torch.uint8 or t.images.dim() != 4:
            raise CnnlabError("training images must be a uint8 tensor (N, C, H, W)")
        if len(t.images) == 0:
            raise CnnlabError("the training set is empty")
        if len(t.classes) < 2:
            raise CnnlabError(f"the training set has {len(t.classes)} class; classification needs at least 2")
        if self.val_set is not None and tuple(self.val_set.images.shape[1:]) != tuple(t.images.shape[1:]):
            raise CnnlabError(f"validation images are {tuple(self.val_set.images.shape[1:])}, training images "
                              f"{tuple(t.images.shape[1:])}: they must match")
        per_rank = self.recipe.batch_size // self.ctx.world
        if per_rank < 1 or self.recipe.batch_size % self.ctx.world:
            raise CnnlabError(f"--batch-size {self.recipe.batch_size} does not split over {self.ctx.world} processes")

    # --- resume ---------------------------------------------------------------------------------

    def _read_resume(self) -> Checkpoint:
        out = self.opts.out
        path = out / "last.pt" if out else None
        if path is None or not path.is_file():
            raise CnnlabError(f"--resume: no last.pt in {out} to resume from")
        return checkpoint.load(path)

    def _resume(self, ck: Checkpoint) -> None:
        """Restore weights, optimizer, plateau and counters; then make the folder agree with last.pt."""
        path = self.opts.out / "last.pt"  # type: ignore[operator]
        if len(ck.classes) != len(self.classes):
            raise CnnlabError(f"--resume: {path} was trained on {len(ck.classes)} classes but the data has "
                              f"{len(self.classes)}; resume with the data it was trained on")
        if ck.classes != self.classes:
            raise CnnlabError(f"--resume: {path} was trained on other classes ({', '.join(ck.classes[:4])}, ...)")
        if self.user and ck.network.get("module") != self.spec()["module"]:
            was = ck.network.get("module") or {}
            raise CnnlabError(f"--resume: {path} trained {was.get('ref') or ck.name} with kwargs {was.get('kwargs')}; "
                              "resume with the same module and --kwargs")
        if not self.user and ck.network.get("layers") != self.spec()["layers"]:
            raise CnnlabError(f"--resume: {path} holds a different network ({ck.network.get('name')})")
        self.prep = ck.preprocess
        self.model.load_state_dict(ck.model)
        was = ck.recipe.get("optimizer")
        if was != self.recipe.optimizer:
            raise CnnlabError(f"--resume: the optimizer state in {path} does not fit optimizer "
                              f"'{self.recipe.optimizer}' (it was trained with '{was}'); resume with the recipe it "
                              "was trained with")
        try:
            self.optimizer.load_state_dict(ck.optimizer)
        except (ValueError, KeyError, RuntimeError):
            raise CnnlabError(f"--resume: the optimizer state in {path} does not fit optimizer "
                              f"'{self.recipe.optimizer}'; resume with the recipe it was trained with") from None
        self.plateau.load_state_dict(ck.plateau)
        self.state = State(ck.epoch, ck.step, list(ck.metrics), ck.best, ck.best_epoch, ck.stale)
        if self.main:
            self._repair(ck)

    def _repair(self, last: Checkpoint) -> None:
        """After a kill: drop half-written temporary files, restore a best.pt that is missing or older
        than the best epoch last.pt records, and rewrite metrics.json from last.pt's history."""
        out = self.opts.out
        assert out is not None
        for name in TMP_FILES:
            (out / name).unlink(missing_ok=True)
        best = out / "best.pt"
        if last.best_epoch and checkpoint.epoch_of(best) != last.best_epoch:
            if last.epoch == last.best_epoch:
                checkpoint.copy(out / "last.pt", best)
                self.log(f"restored {best} from last.pt (epoch {last.epoch}): the earlier write was interrupted")
            else:
                self.log(f"warning: {best} does not hold epoch {last.best_epoch}, the best one; it is rewritten at "
                         "the next improvement")
        if last.metrics:
            write_json(out / "metrics.json", last.metrics)

    # --- the loop -------------------------------------------------------------------------------

    def _autocast(self) -> Any:
        if self.opts.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.opts.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _loss(self, out: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, main logits); auxiliary heads add ``aux_weight`` times their own loss."""
        ls = self.recipe.label_smoothing
        if isinstance(out, tuple):
            main, aux = out[0], out[1:]
            loss = F.cross_entropy(main, y, label_smoothing=ls)
            for a in aux:
                loss = loss + self.recipe.aux_weight * F.cross_entropy(a, y, label_smoothing=ls)
            return loss, main
        return F.cross_entropy(out, y, label_smoothing=ls), out

    def _batch(self, idx: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = gather(self.images, idx, self.mapped)
        y = self.labels[idx]
        if x.device != self.device:
            x, y = to_device(x, self.device), to_device(y, self.device)
        hw = self.prep.data_shape[1:]
        if self.random_crop and gen is not None:
            x = random_resized_crop(x, hw, generator=gen)
        elif tuple(x.shape[2:]) != hw:
            x = center_crop(x, hw)
        if self.opts.augment is not None and gen is not None:
            x = self.opts.augment(x, gen)
        x = self.prep_dev(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def fit(self) -> list[dict[str, Any]]:
        """Run the remaining epochs; returns the per-epoch metrics (also in OUT/metrics.json)."""
        r, o, st = self.recipe, self.opts, self.state
        if o.out is not None and self.main:
            o.out.mkdir(parents=True, exist_ok=True)
        n = len(self.images)
        per_rank = r.batch_size // self.ctx.world
        shard_len = -(-n // self.ctx.world)
        steps = max(1, -(-shard_len // per_rank))
        if steps > 1 and shard_len % per_rank == 1:
            steps -= 1  # a last batch of one image breaks BatchNorm; it returns next epoch
        if st.epoch >= r.epochs:
            self.log(f"nothing to do: the checkpoint already finished {st.epoch} of {r.epochs} epochs")
        try:
            for epoch in range(st.epoch + 1, r.epochs + 1):
                row = self._epoch(epoch, steps, per_rank)
                self.ran += 1
                stop = self._end_epoch(row)
                if distributed.broadcast_flag(stop, self.ctx):
                    break
        except BaseException as e:
            with contextlib.suppress(Exception):  # the error in flight is the one to report
                self._curves(force=True)
            from ..measure import user_code_error, user_frames

            if self.user and isinstance(e, Exception) and not isinstance(e, CnnlabError) and user_frames(e):

                raise user_code_error(e, f"training {self.net.name}") from None
            raise
        self._curves(force=True)
        if self.ctx.active:
            # DDP's reducer holds the group's gloo threads; release it before the group goes.
            self.train_model = self.eval_model
            gc.collect()
        distributed.teardown(self.ctx)
        return st.history

    def _curves(self, force: bool) -> None:
        """Redraw curves.png: every epoch of a slow run, at the end of a fast one (drawing takes ~0.5 s)."""
        if not (self.main and self.opts.out is not None and self.state.history):
            return
        now = time.perf_counter()
        if force and self._plotted_epoch == self.state.epoch:
            return
        if force or now - self._plotted_at >= 20.0:
            from .plots import plot_curves

            path = self.opts.out / "curves.png"
            try:
                plot_curves(self.state.history, path, f"{self.net.name} on {self.data_name}")
            except OSError as e:
                raise CnnlabError(f"cannot write {path}: {e.strerror or e}") from None
            self._plotted_at, self._plotted_epoch = time.perf_counter(), self.state.epoch

    def _epoch(self, epoch: int, steps: int, per_rank: int) -> dict[str, Any]:
        r, o, st = self.recipe, self.opts, self.state
        seed = _seed_for(self.seed, epoch)
        gen = torch.Generator().manual_seed(seed)
        # Dropout, crops and augmentation differ between processes (each has its own images; the same draws on
        # every rank would repeat one mask and one set of crops across the global batch); rank 0 is a single run.
        own = _rank_seed(seed, self.ctx.rank)
        torch.manual_seed(own + 1)  # dropout and anything else drawing from the global generator
        order = distributed.shard(torch.randperm(len(self.images), generator=gen), self.ctx)
        if self.images.device != order.device:
            order = order.to(self.images.device)
        # crops and augmentation draw their parameters on the CPU
        aug_gen = torch.Generator().manual_seed(own + 2) if o.augment or self.random_crop else None
        if self.plan is not None and r.unfreeze_at and epoch >= r.unfreeze_at and not self.thawed:
            self._thaw(epoch)
        self.train_model.train()
        transfer.freeze_batchnorm(self.model)
        meter = Meter(self.device)
        steps_per_epoch = steps
        check_each_step = self.device.type == "cpu"
        bar = _Progress(self.main and o.progress, f"epoch {epoch}/{r.epochs}", steps)
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        try:
            for i in range(steps):
                lr = learning_rate(r, st.step, steps_per_epoch, self.plateau.scale)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)
                x, y = self._batch(order[i * per_rank:(i + 1) * per_rank], aug_gen)
                with self._autocast():
                    out = self.train_model(x)
                    loss, logits = self._loss(out, y)
                if check_each_step and not math.isfinite(loss.item()):
                    self._diverged(epoch, i, lr)
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    self.optimizer.step()
                meter.add(logits.detach(), y, loss)
                st.step += 1
                if bar.due(i + 1):
                    lo, acc, cnt = meter.read()
                    if not math.isfinite(lo):
                        self._diverged(epoch, i, lr)
                    bar.show(i + 1, lo, acc, cnt * self.ctx.world / (time.perf_counter() - t0))
        finally:
            bar.close()
        train_s = time.perf_counter() - t0
        sums = distributed.all_sum(meter.sums.clone(), self.ctx).tolist()
        if not math.isfinite(sums[0]):
            self._diverged(epoch, steps - 1, lr)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2]}
        if self.val_set is not None:
            ev = self.evaluate(self.val_set)
            row.update(val_loss=ev["loss"], val_acc=ev["top1"])
        else:
            row.update(val_loss=None, val_acc=None)
        row.update(lr=lr, seconds=round(time.perf_counter() - t0, 3), images_per_s=round(sums[2] / train_s, 1),
                   label_smoothing=self.recipe.label_smoothing, num_classes=len(self.classes))
        return row

    def _diverged(self, epoch: int, step: int, lr: float) -> None:
        last = self.opts.out / "last.pt" if self.opts.out else None
        kept = (f"the last good checkpoint {last} (epoch {self.state.epoch}) is kept" if last and last.is_file()
                else "no checkpoint was written before it")
        raise TrainingDiverged(f"loss became NaN/inf at epoch {epoch}, step {step + 1} (lr {lr:.3g}); training "
                               f"stopped and {kept}; lower --lr or check the data")

    def _end_epoch(self, row: dict[str, Any]) -> bool:
        """Schedules, early stopping, checkpoints, metrics.json and curves; True to stop."""
        r, o, st = self.recipe, self.opts, self.state
        st.epoch = row["epoch"]
        st.history.append(row)
        key = r.monitor if row.get(r.monitor) is not None else "train_loss"
        value = row[key]
        if r.plateau and self.plateau.update(value):
            self.log(f"  validation plateau: learning rate x{r.plateau_factor:.3g}")
        improved = st.best is None or (value < st.best if key.endswith("loss") else value > st.best)
        if improved:
            st.best, st.best_epoch, st.stale = value, row["epoch"], 0
        else:
            st.stale += 1
        self.log(_format_row(row, r.epochs, improved))
        if self.main and o.out is not None:
            try:
                ck = self._checkpoint()
                checkpoint.save(o.out / "last.pt", ck)
                if improved:
                    checkpoint.save(o.out / "best.pt", ck)
                write_json(o.out / "metrics.json", st.history)
                self._curves(force=False)
            except CnnlabError as e:  # a full disk, a folder removed under the run
                raise CnnlabError(f"{e}; training stopped at epoch {st.epoch} and {o.out / 'last.pt'} holds the "
                                  "last complete epoch") from None
        if o.on_epoch is not None:
            o.on_epoch(row)
        if r.early_stop and st.stale >= r.early_stop:
            self.log(f"early stop: {key} has not improved for {st.stale} epochs (best {st.best:.4g} at epoch "
                     f"{st.best_epoch})")
            return True
        if o.target_acc is not None and (row.get("val_acc") or 0) >= o.target_acc:
            self.log(f"target accuracy {o.target_acc:.2%} reached at epoch {row['epoch']}")
            return True
        return False

    def _checkpoint(self) -> Checkpoint:
        st = self.state
        return Checkpoint(
            network=self.spec(), preprocess=self.prep, classes=list(self.classes),
            model={k: v.detach().cpu() for k, v in self.model.state_dict().items()}, data=self.data_name,
            optimizer=_cpu(self.optimizer.state_dict()), plateau=self.plateau.state_dict(),
            recipe=self.recipe.to_dict(), seed=self.seed, val_fraction=self.opts.val_fraction,
            metrics=list(st.history), epoch=st.epoch, step=st.step, best=st.best, best_epoch=st.best_epoch,
            stale=st.stale)

    # --- evaluation -----------------------------------------------------------------------------

    def evaluate(self, data: Any, confusion: bool = False) -> dict[str, Any]:
        return evaluate(self.eval_model, data.images, data.labels, self.prep_dev, self.device,
                        batch_size=self.opts.eval_batch_size, amp=self.opts.amp, ctx=self.ctx,
                        channels_last=self.channels_last, confusion=len(self.classes) if confusion else 0)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, prep: Preprocess, device: torch.device,
             *, batch_size: int = 1000, amp: str = "off", ctx: distributed.Context | None = None,
             channels_last: bool = False, confusion: int = 0) -> dict[str, Any]:
    """Loss, top-1 and top-5 over a whole set in chunks of ``batch_size``: memory stays bounded
    however large the set (the notebook that ran out of memory on 10,000 test images)."""
    if batch_size < 1:
        raise CnnlabError(f"evaluation batch size must be >= 1, got {batch_size}")
    ctx = ctx or distributed.Context()
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n
    cm = torch.zeros(confusion, confusion, dtype=torch.long, device=device) if confusion else None
    mine = torch.arange(ctx.rank, len(images), ctx.world)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    with torch.inference_mode():
        for i in range(0, len(mine), batch_size):
            idx = mine[i:i + batch_size]
            x = prep(to_device(images[idx], device))
            y = to_device(labels[idx], device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                out = model(x)
            out = out.float()
            sums += torch.stack([F.cross_entropy(out, y, reduction="sum").double(),
                                 topk_correct(out, y, 1).double(), topk_correct(out, y, 5).double(),
                                 torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
            if cm is not None:
                cm += confusion_matrix(out.argmax(1), y, confusion)
    model.train(was_training)
    loss, top1, top5, n = distributed.all_sum(sums, ctx).tolist()
    res: dict[str, Any] = {"loss": loss / n if n else float("nan"), "top1": top1 / n if n else float("nan"),
                           "top5": top5 / n if n else float("nan"), "n": int(n)}
    if cm is not None:
        res["confusion"] = distributed.all_sum(cm, ctx).cpu()
    return res


def gather(images: torch.Tensor, idx: torch.Tensor, mapped: bool = False) -> torch.Tensor:
    """``images[idx]``; from a store mapped on disk the rows are read in file order (sequential pages, read-ahead
    works) and put back in ``idx`` order, so the batch is the same as from memory."""
    if not mapped or len(idx) < 2:
        return images[idx]
    order = idx.argsort()
    out = torch.empty((len(idx), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[idx[order]]
    return out


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU batch to ``device``; to a GPU through pinned memory, so the copy runs without blocking."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj


def _move_optimizer_state(opt: torch.optim.Optimizer, device: torch.device) -> None:
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and not (k == "step" and v.dim() == 0 and device.type == "cpu"):
                state[k] = v.to(device)


def _format_row(row: dict[str, Any], epochs: int, best: bool) -> str:
    val = (f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}" if row.get("val_acc") is not None else "")
    return (f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.2%}{val}  lr {row['lr']:.3g}  {row['seconds']:.1f}s  "
            f"{row['images_per_s']:,.0f} img/s{'  *' if best else ''}")


class _Progress:
    """A rich progress bar refreshed at most 4 times a second, so drawing never costs throughput."""

    def __init__(self, enabled: bool, title: str, total: int, console: Any = None) -> None:
        self.bar = None
        self.next = 0.0
        self.total = total
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = console or Console(stderr=True)
        if not console.is_terminal:
            return
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=console,
                            transient=True, auto_refresh=False)
        self.task = self.bar.add_task(title, total=total, stats="")
        self.bar.start()

    def due(self, done: int) -> bool:
        if self.bar is None:
            return False
        now = time.perf_counter()
        if now >= self.next or done == self.total:
            self.next = now + 0.25
            return True
        return False

    def show(self, done: int, loss: float, acc: float, ips: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, stats=f"loss {loss:.4f} acc {acc:.2%} {ips:,.0f} img/s")
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
