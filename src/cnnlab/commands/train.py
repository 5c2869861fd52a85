"""Train a model on MNIST, CIFAR-10/100 or an image folder (one sub-folder per class).

A recipe (--recipe) sets optimizer, learning-rate schedule, batch size, epochs, augmentation and
normalization as the papers and notebooks did; any option given here overrides it. The model is
built for the data's channels and classes. Images smaller than the design input by at most 8
pixels are centred in it (LeNet-5 reads 28x28 digits in a 32x32 field); others run at their own
size (see --fit). The named data sets validate on their test split; a folder on its held-out part.
MODEL may be your own module, file.py:NAME or package.module:NAME (with --kwargs): it trains as written,
at the data's size, and its checkpoint names it so that eval, predict and export build it again.

OUT (default runs/MODEL-DATA) receives metrics.json (one object per epoch), curves.png, last.pt
(every epoch) and best.pt (best validation metric). A Keras .keras or legacy .h5 MODEL starts from the
weights saved in it, unless --weights names others. Multi-GPU or multi-process:
  torchrun --nproc_per_node N -m cnnlab train MODEL --data ...
A folder too large for memory is first prepared into a store (see 'cnnlab data prepare'); a store given to
--data is read through its memory map, each process reading its own shard of every epoch's order.
--crop HxW cuts every batch to what the model reads: the centre, or in training with --crop-mode random a
random-resized crop and flip (ImageNet practice: a store at 256x256, --crop 224x224 --crop-mode random).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ..text import safe_text
from ._common import add_model_args, load_network, parse_kwargs

NAME = "train"
HELP = "train a model on MNIST, CIFAR or an image folder"
ORDER = 40

RECIPE_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule", "step_epochs",
                 "gamma", "milestones", "monitor", "label_smoothing", "aux_weight", "augment", "normalize",
                 "early_stop", "freeze", "unfreeze_at", "unfreeze", "lr_backbone", "crop_mode")


def parse_milestones(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or any(v <= 0 for v in vals) or list(vals) != sorted(vals):
        raise CnnlabError(f"malformed --milestones '{text}': give increasing epochs, e.g. 30,60,80")
    return vals


def parse_size(text: str | None, what: str = "--size") -> tuple[int, int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.lower().replace("×", "x").split("x")]
    # ASCII digits only ('²' is a digit to str.isdigit but not to int), at most 2**31 - 1 each
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 10 and 0 < int(p) < 2**31 for p in parts):
        raise CnnlabError(f"malformed {what} '{safe_text(text)[:40]}': give HxW with two positive whole numbers, "
                          "e.g. 150x150")
    return int(parts[0]), int(parts[1])


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="D",
                   help="mnist, cifar10, cifar100, an image folder path or a store from 'cnnlab data prepare'")
    p.add_argument("--data-dir", metavar="DIR", help="look here first for the data set's original files")
    p.add_argument("--size", metavar="HxW", help="image folders: resize to HxW (scale to cover, centre crop)")
    p.add_argument("--crop", metavar="HxW",
                   help="image folders with --size, or stores: the model reads the centre HxW of each image, cut "
                        "batch by batch (torchvision's Resize(256) + CenterCrop(224) is --size 256x256 --crop "
                        "224x224); recorded in the checkpoint")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..train.recipes import CROP_MODES, OPTIMIZERS, PRESETS, SCHEDULES

    add_model_args(p)
    p.add_argument("--kwargs", metavar="K=V,...",
                   help="MODEL file.py:NAME or package.module:NAME: arguments of its class or factory (key=value,... "
                        "or JSON); num_classes is set from the data when the factory takes it. The module itself "
                        "trains (its layers and initialization), at the data's size, and returns logits; the "
                        "checkpoint records the reference and arguments, so eval and predict build it again")
    add_data_args(p)
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                   help="image folders without val/: fraction of each class held out (default 0.1)")
    presets = "; ".join(f"{r.name}: {r.description}" for r in PRESETS.values()).replace("%", "%%")
    p.add_argument("--recipe", metavar="NAME",
                   help=f"training preset (with --resume the checkpoint's own recipe is the default). default: "
                        f"Adam 1e-3, batch 128, 10 epochs, per-channel normalization; {presets}")
    g = p.add_argument_group("recipe overrides")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="base learning rate")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--step-epochs", type=float, metavar="E", help="step schedule: multiply by --gamma every E epochs")
    g.add_argument("--milestones", metavar="E1,E2,...", help="multistep schedule: multiply by --gamma at these epochs")
    g.add_argument("--gamma", type=float, help="step/multistep factor (default 0.1)")
    g.add_argument("--plateau", type=int, metavar="PATIENCE",
                   help="ReduceLROnPlateau: multiply the rate by --plateau-factor after PATIENCE epochs without "
                        "improvement of --monitor (0: off)")
    g.add_argument("--plateau-factor", type=float, metavar="F", help="ReduceLROnPlateau factor (default 0.1)")
    g.add_argument("--monitor", choices=("val_loss", "val_acc"), help="what plateaus and early stopping watch")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--aux-weight", type=float, help="loss weight of auxiliary classifiers (default 0.3)")
    g.add_argument("--augment", metavar="PRESET", help="none, mnist, cifar, cifar-erasing, imagenet, keras")
    g.add_argument("--crop-mode", choices=CROP_MODES,
                   help="how training cuts each image to --crop (without it, to its own size): center (default) "
                        "takes the centre; random a random-resized crop (area 8-100%%, aspect 3/4-4/3, resized "
                        "bilinearly) with a horizontal flip p=0.5, as Inception and ResNet trained on ImageNet (a "
                        "store at 256x256, --crop 224x224); validation, eval and predict take the centre")
    g.add_argument("--normalize", choices=("scale", "channel", "pixel", "imagenet"),
                   help="scale: x/255; channel: per-channel mean/std; pixel: subtract the mean image; imagenet: "
                        "torchvision's ImageNet mean/std (what pretrained weights expect)")
    g.add_argument("--early-stop", type=int, metavar="N", help="stop after N epochs without improvement (0: off)")
    t = p.add_argument_group("transfer learning")
    add_weights_args(t)
    t.add_argument("--freeze", metavar="backbone|LAYER",
                   help="keep these weights fixed: backbone (all but the classifier) or LAYER and all before it")
    t.add_argument("--unfreeze-at", type=int, metavar="EPOCH",
                   help="from this epoch the frozen top block (see --unfreeze) trains too, at --lr-backbone")
    t.add_argument("--unfreeze", choices=("top", "all"), help="what --unfreeze-at thaws (default top: the last "
                   "frozen block, e.g. layer4 of a ResNet)")
    t.add_argument("--lr-backbone", type=float, metavar="LR",
                   help="rate of the trainable layers other than the classifier (default --lr; thawed: --lr/10)")
    r = p.add_argument_group("run")
    r.add_argument("--out", metavar="DIR", help="output folder (default runs/MODEL-DATA)")
    r.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    r.add_argument("--overwrite", action="store_true", help="start a new run in an OUT that already holds one")
    r.add_argument("--seed", type=int,
                   help="seed of weights, batches, augmentation and a folder's split (default 0; with --resume "
                        "the checkpoint's)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    r.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="mixed precision (default off)")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format, faster convolutions on CPU and GPU (default on; off for your own "
                        "module, whose forward may .view() the feature map)")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: one per core; 1 is faster for small models on a busy machine)")
    r.add_argument("--target-acc", type=float, metavar="A", help="stop once validation accuracy reaches A (0-1)")
    r.add_argument("--fit", choices=("auto", "pad", "native"), default="auto",
                   help="data smaller than the design input: pad (centre it) or native (build at the data size)")
    r.add_argument("--eval-batch-size", type=int, default=1000, help="chunk size of evaluation (default 1000)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_weights_args(p: Any) -> None:
    p.add_argument("--weights", metavar="FILE",
                   help="pretrained weights: a PyTorch state_dict (.pth/.pt, e.g. torchvision's), a .safetensors "
                        "file or a cnnlab checkpoint, or for a Keras model its .keras archive or (.weights).h5; with "
                        "--num-classes a classifier of another size is replaced")
    p.add_argument("--partial", action="store_true",
                   help="with --weights: load the tensors that fit and keep the others new (default: strict)")


def recipe_from_args(args: argparse.Namespace, out: Path, resumed: Any = None) -> Any:
    """The named preset (or the resumed run's own recipe) with the options given on the command line."""
    from ..train import checkpoint
    from ..train.recipes import Recipe, get_recipe

    if resumed is None and args.recipe is None and args.resume and (out / "last.pt").is_file():
        resumed = checkpoint.load(out / "last.pt")
    if args.recipe is None and resumed is not None:
        base = Recipe.from_dict(resumed.recipe)
    elif args.recipe in (None, "default"):
        base = Recipe(name="default")
    else:
        base = get_recipe(args.recipe)
    kw = {f: getattr(args, f) for f in RECIPE_FIELDS if f != "milestones"}
    kw["milestones"] = parse_milestones(args.milestones)
    return base.with_overrides(**kw).with_plateau(args.plateau, args.plateau_factor)


def run(args: argparse.Namespace) -> int:
    data_name = Path(args.data).name if Path(args.data).is_dir() else args.data
    from ..usermodule import is_module_ref

    user = is_module_ref(args.model)
    stem = args.model.rpartition(":")[2] if user else Path(args.model).stem
    out = Path(args.out) if args.out else Path("runs") / f"{stem}-{data_name}"
    if not user and getattr(args, "kwargs", None):
        raise CnnlabError("--kwargs applies to a module (file.py:NAME or package.module:NAME); a zoo model takes "
                          "--num-classes and --in-channels")
    if user:
        for opt, v in (("--aux", args.aux), ("--shortcut", args.shortcut), ("--in-channels", args.in_channels)):
            if v is not None:
                raise CnnlabError(f"{opt} applies to zoo models; give a module's own arguments with --kwargs")
    from ..train import checkpoint
    from ..train.trainer import check_out, check_seed

    check_out(out, args.resume, args.overwrite)
    resumed = checkpoint.load(out / "last.pt") if args.resume and (out / "last.pt").is_file() else None
    # A resumed run keeps its seed: the same batches, and the same train/validation split of a folder.
    seed = check_seed(args.seed if args.seed is not None else resumed.seed if resumed else 0)
    recipe = recipe_from_args(args, out, resumed)  # bad options fail before any data is read
    size = parse_size(args.size)
    crop = parse_size(args.crop, "--crop")
    if crop is not None and size is None:
        size = store_size(args.data)
    if crop is not None and (size is None or not Path(args.data).is_dir()):
        raise CnnlabError("--crop applies to image folders read at --size and to stores: give --size HxW too, e.g. "
                          "--size 256x256 --crop 224x224")
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
        where = f"--size {args.size}" if args.size else f"the store's {size[0]}x{size[1]} images"
        raise CnnlabError(f"--crop {args.crop} is larger than {where}: the crop is taken from the resized image")
    weights = Path(args.weights) if args.weights else None
    if weights is not None and not weights.is_file():
        raise CnnlabError(f"--weights {weights}: no such file")
    if args.partial and weights is None:
        raise CnnlabError("--partial applies to --weights FILE; give the weights to load")
    from ..importers.keras import archive_has_weights

    if weights is None and archive_has_weights(args.model):
        weights = Path(args.model)  # a .keras archive starts from the weights saved in it
    if args.eval_batch_size < 1:
        raise CnnlabError(f"--eval-batch-size must be >= 1, got {args.eval_batch_size}")
    if args.target_acc is not None and not 0 < args.target_acc <= 1:
        raise CnnlabError(f"--target-acc is a fraction in (0, 1], got {args.target_acc}")

    if args.threads is not None and args.threads < 1:
        raise CnnlabError(f"--threads must be >= 1, got {args.threads}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ..data import load
    from ..data.augment import Augment, preset
    from ..train import Options, Trainer
    from ..train.preprocess import center_crop

    augment = preset(recipe.augment)
    if recipe.crop_mode == "random" and augment.config.hflip:
        # the random-resized crop mirrors half the images already; a second coin would change nothing but the cost
        augment = Augment(replace(augment.config, hflip=0.0), augment.name)
    args.data = large_folder_store(args.data, size, args.val_fraction, seed)
    train = load(args.data, "train", data_dir=args.data_dir, size=size, val_fraction=args.val_fraction,
                 seed=seed)
    val = load(args.data, "val", data_dir=args.data_dir, size=size, val_fraction=args.val_fraction, seed=seed)
    if len(val) == 0:
        val = None
    c = train.images.shape[1]
    new_head = args.num_classes is not None
    if args.num_classes is not None and args.num_classes != len(train.classes):
        raise CnnlabError(f"--num-classes {args.num_classes} but {args.data} has {len(train.classes)} classes")
    if args.in_channels is not None and args.in_channels != c:
        raise CnnlabError(f"--in-channels {args.in_channels} but {args.data} images have {c} channels")
    args.num_classes, args.in_channels = len(train.classes), c
    if user:
        from ..usermodule import ModuleRef

        net = ModuleRef.to_train(args.model, parse_kwargs(args.kwargs), len(train.classes))
    else:
        net = load_network(args)
        from ..export import is_checkpoint
        from ..models import is_spec

        if new_head and is_spec(args.model) and not is_checkpoint(args.model):
            from ..adapt.diagnosis import with_classes  # a model file keeps its layers, with this data's classes

            net = with_classes(net, len(train.classes))
    seen = center_crop(train.images, crop) if crop is not None else train.images  # a view: no copy
    aug = augment.fit(seen, torch.Generator().manual_seed(seed)) if augment.active else None
    folder = Path(args.data).is_dir()
    if train.mapped:  # a store keeps the split it was prepared with
        from ..data import store

        args.val_fraction = store.manifest(args.data)["val_fraction"]
    opts = Options(out=out, device=args.device, amp=args.amp, channels_last=args.channels_last,
                   compile=args.compile, seed=seed, val_fraction=args.val_fraction if folder else None,
                   resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress,
                   eval_batch_size=args.eval_batch_size, target_acc=args.target_acc, fit=args.fit, augment=aug,
                   weights=weights, partial=args.partial, new_head=new_head, crop=crop)
    if recipe.freeze and weights is None and resumed is None:
        import warnings

        warnings.warn(f"--freeze {recipe.freeze} without --weights keeps randomly initialized layers fixed; give "
                      "the pretrained weights with --weights FILE", stacklevel=1)
    trainer = Trainer(net, train, val, recipe, opts, data_name=data_name)
    if trainer.main:
        c, h, w = trainer.prep.input_shape
        notes = []
        if trainer.random_crop or crop is not None:
            (ch, cw), (ih, iw) = trainer.prep.data_shape[1:], train.images.shape[2:]
            notes.append(f"{'random-resized' if trainer.random_crop else 'centre'} {ch}x{cw} crops of {ih}x{iw}")
        if any(trainer.prep.pad):
            notes.append("padded")
        pad = f" ({', '.join(notes)})" if notes else ""
        vtext = f"validation on {val.name} ({len(val):,} images)" if val else "no validation set"
        print(f"{net.name} on {data_name}: {len(train):,} training images, {vtext}, "
              f"input {c}x{h}x{w}{pad}, recipe {recipe.name} ({recipe.optimizer}, lr {recipe.lr:g}, batch "
              f"{recipe.batch_size}, {recipe.epochs} epochs), device {trainer.device}"
              + (f" x {trainer.ctx.world} processes" if trainer.ctx.active else ""))
        if recipe.freeze or args.weights or recipe.lr_backbone:
            print(parameter_table(trainer.parameter_counts()))
    history = trainer.fit()
    if trainer.main and history:
        st = trainer.state
        print(f"best epoch {st.best_epoch}: {_best_text(history[st.best_epoch - 1])}")
        if trainer.ran:
            print(f"wrote {out}/metrics.json, {out}/curves.png, {out}/last.pt, {out}/best.pt")
    return 0


def store_size(data: str) -> tuple[int, int] | None:
    """The (H, W) a prepared store holds, None for anything else: ``--crop`` on a store needs no ``--size``."""
    from ..data import store

    return tuple(store.manifest(data)["size"]) if store.is_store(data) else None  # type: ignore[return-value]


def parameter_table(rows: list[tuple[str, int, int]]) -> str:
    """Trainable and frozen parameter counts per part, with a total row."""
    rows = [*rows, ("total", sum(r[1] for r in rows), sum(r[2] for r in rows))]
    w = max(len(r[0]) for r in rows)
    lines = [f"  {'parameters':<{w}}  {'trainable':>12}  {'frozen':>12}"]
    lines += [f"  {name:<{w}}  {a:>12,}  {b:>12,}" for name, a, b in rows]
    return "\n".join(lines)


def large_folder_store(data: str, size: tuple[int, int] | None, val_fraction: float, seed: int) -> str:
    """``data``, or for a folder too large to decode into memory the store it is prepared into first."""
    path = Path(data).expanduser()
    if not path.is_dir():
        return data
    from ..data import store

    out = store.default_location(path, size)
    if store.is_store(path) or not store.too_large(path, size, out):
        return data
    from ..memory import available_bytes, human_bytes

    n, per = store.estimated_bytes(path, size)
    need, avail = n * per, available_bytes() or 0
    if os.environ.get("RANK", "0") == "0":  # under torchrun the ranks take turns; the first one prepares
        print(f"{path.name} decodes to about {human_bytes(need)}, more than fits in the {human_bytes(avail)} of memory "
              f"available: preparing the store {out} first (once; later runs reuse it)", flush=True)
    return str(store.prepare(path, out, size, val_fraction=val_fraction, seed=seed))


def _best_text(row: dict) -> str:
    if row.get("val_acc") is not None:
        return f"validation accuracy {row['val_acc']:.2%}, loss {row['val_loss']:.4f}"
    return f"training accuracy {row['train_acc']:.2%}, loss {row['train_loss']:.4f}"
