"""Training from Python, made for notebooks: ``cnnlab.fit(model, data=..., recipe=...)`` returns a
:class:`Run` whose display is its curves.

While it trains, a Jupyter kernel shows one output that is redrawn after every epoch (an
``IPython.display`` handle); a terminal gets the trainer's progress bar and one line per epoch.
Options are those of ``cnnlab train``: recipe fields (``lr``, ``batch_size``, ...) override the
recipe, run fields (``device``, ``seed``, ``overwrite``, ...) go to the trainer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import ImageSet, load
from ..errors import CnnlabError
from ..network import Network
from ..usermodule import ModuleRef
from .recipes import Recipe, get_recipe
from .trainer import Options, Trainer, check_seed, evaluate, resolve_device

RECIPE_FIELDS = {f.name for f in dataclasses.fields(Recipe)} - {"name", "description"}
OPTION_FIELDS = {"device", "amp", "channels_last", "compile", "resume", "overwrite", "progress", "eval_batch_size",
                 "target_acc", "fit"}


@dataclass
class Evaluation:
    """Top-1, top-5, mean loss and the confusion matrix of a model on one data set."""

    name: str
    top1: float
    top5: float
    loss: float
    n: int
    confusion: Any = field(default=None, repr=False)
    classes: list[str] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return f"{self.name}: top-1 {self.top1:.2%}, top-5 {self.top5:.2%}, loss {self.loss:.4f} on {self.n:,} images"

    def _repr_html_(self) -> str:
        from ..report.notebook import evaluation_html

        return evaluation_html(self.name, self.top1, self.top5, self.loss, self.n, self.confusion, self.classes)


@dataclass
class Run:
    """A training run: its per-epoch history, where its checkpoints are, and its trained model."""

    name: str
    data: str
    history: list[dict[str, Any]]
    out: Path | None
    trainer: Trainer = field(repr=False)
    status: str = ""
    source: str = ""  # what load() reads for evaluate(): a data set name or folder ("" for given ImageSets)
    load_kw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def best_checkpoint(self) -> Path | None:
        """``OUT/best.pt``: the epoch with the best monitored metric (None without an output folder)."""
        p = self.out / "best.pt" if self.out is not None else None
        return p if p is not None and p.is_file() else None

    @property
    def best(self) -> dict[str, Any] | None:
        """The metrics row of the best epoch."""
        e = self.trainer.state.best_epoch
        return next((m for m in self.history if m["epoch"] == e), None)

    def _model(self) -> tuple[Any, Any, list[str]]:
        """(module, input map, classes) of the best checkpoint, else of the weights in memory."""
        from . import checkpoint

        if self.best_checkpoint is not None:
            _, model, prep = checkpoint.load(self.best_checkpoint).rebuild(self.best_checkpoint)
            return model, prep, self.trainer.classes
        return self.trainer.model, self.trainer.prep, self.trainer.classes

    def evaluate(self, data: str | ImageSet | None = None, split: str = "test", subset: int | None = None) -> Evaluation:
        """The best checkpoint on ``split`` of ``data`` (default: the data it was trained on), or on
        ``subset`` of its images drawn with the run's seed."""
        if isinstance(data, ImageSet):
            ds = data
        elif data or self.source:
            ds = load(data or self.source, split, **self.load_kw)
        else:
            raise CnnlabError("this run was trained on given ImageSets: pass evaluate(data=...) an ImageSet or a "
                              "data set name")
        ds = _subset(ds, subset, self.trainer.seed, "subset")
        model, prep, classes = self._model()
        if len(ds.classes) != len(classes):
            raise CnnlabError(f"{ds.name} has {len(ds.classes)} classes, the model {len(classes)}")
        device = resolve_device(self.trainer.opts.device)
        res = evaluate(model.to(device), ds.images, ds.labels, prep.to(device), device, confusion=len(classes))
        return Evaluation(f"{self.name} on {ds.name}", res["top1"], res["top5"], res["loss"], res["n"],
                          res["confusion"], list(classes))

    def predict(self, images: Any, top: int = 1) -> list[list[tuple[str, float]]]:
        """The ``top`` most likely classes and their probabilities for each image: a uint8 tensor
        ``(N, C, H, W)`` or ``(C, H, W)``, or a list of image file paths."""
        if top < 1:
            raise CnnlabError(f"top must be >= 1, got {top}")
        model, prep, classes = self._model()
        c, h, w = prep.data_shape
        if isinstance(images, torch.Tensor):
            batch = images.unsqueeze(0) if images.dim() == 3 else images
        else:
            from ..commands.predict import read_image

            batch = torch.stack([read_image(str(p), c, (h, w)) for p in images])
        if batch.dtype != torch.uint8 or tuple(batch.shape[1:]) != (c, h, w):
            raise CnnlabError(f"images must be uint8 {c}x{h}x{w} as the model was trained on, got "
                              f"{batch.dtype} {'x'.join(map(str, batch.shape[1:]))}")
        model.eval()
        with torch.inference_mode():
            probs = model.cpu()(prep.to(torch.device("cpu"))(batch)).float().softmax(1)
        k = min(top, len(classes))
        v, i = probs.topk(k, 1)
        return [[(classes[int(j)], float(p)) for p, j in zip(vr, ir)] for vr, ir in zip(v, i)]

    def __repr__(self) -> str:
        b = self.best
        best = (f", best validation accuracy {b['val_acc']:.2%} at epoch {b['epoch']}"
                if b and b.get("val_acc") is not None else "")
        where = f", best checkpoint {self.best_checkpoint}" if self.best_checkpoint else ""
        n = len(self.history)
        return f"Run({self.name} on {self.data}: {n} epoch{'s' if n != 1 else ''}{best}{where})"

    def _repr_html_(self) -> str:
        from ..report.notebook import history_html

        return history_html(self.history, f"{self.name} on {self.data}", self.status)


class _Live:
    """One Jupyter output redrawn after every epoch; nothing outside a kernel."""

    def __init__(self, enabled: bool) -> None:
        self.handle = None
        if not enabled:
            return
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:
            return
        ip = get_ipython()
        if ip is None or not hasattr(ip, "kernel"):  # a terminal IPython shows text: the log lines serve
            return
        self.html = HTML
        self.handle = display(HTML("<i>training: waiting for the first epoch</i>"), display_id=True)

    @property
    def active(self) -> bool:
        return self.handle is not None

    def update(self, run: Run) -> None:
        if self.handle is not None:
            self.handle.update(self.html(run._repr_html_()))


def _subset(ds: ImageSet, n: int | None, seed: int, what: str) -> ImageSet:
    """``n`` images of ``ds`` drawn with ``seed`` (all of them when ``n`` is None or not smaller)."""
    if n is None or n >= len(ds):
        return ds
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise CnnlabError(f"{what} must be an integer >= 2, got {n!r}")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return ImageSet(ds.images[idx], ds.labels[idx], ds.classes, f"{ds.name} ({n:,} of {len(ds):,})")


def _network(model: Any, train: ImageSet, kwargs: dict[str, Any] | None = None, **kw: Any) -> Network | ModuleRef:
    """A description to build, or a user's module to train as it is (an object, or file.py:NAME)."""
    from ..usermodule import is_module_ref

    if kwargs is not None and not (isinstance(model, str) and is_module_ref(model)):
        raise CnnlabError("kwargs= applies to a module reference (file.py:NAME or package.module:NAME)")
    if isinstance(model, Network):
        return model
    if isinstance(model, torch.nn.Module):
        return ModuleRef.of_instance(model)
    if isinstance(model, str):
        from ..models import load_model

        if is_module_ref(model):
            return ModuleRef.to_train(model, dict(kwargs or {}), len(train.classes))
        if ":" in model:
            return load_model(model)
        return load_model(model, num_classes=len(train.classes), in_channels=train.shape[0], **kw)
    raise CnnlabError(f"model {model!r}: give a zoo name, a spec file, file.py:NAME, a Network or a torch module")


def fit(model: Any, data: str | tuple[ImageSet, ImageSet | None] = "mnist", recipe: str | Recipe = "mnist-fast",
        epochs: int | None = None, out: str | Path | None = None, *, subset: int | None = None,
        val_subset: int | None = None, seed: int | None = None, data_dir: str | Path | None = None,
        size: tuple[int, int] | None = None, val_fraction: float = 0.1, augment: bool = True,
        display: bool = True, aux: bool | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Run:
    """Train ``model`` on ``data`` with ``recipe`` and return the :class:`Run`.

    ``model``: a zoo name, a spec file or a :class:`Network` (built for the data's channels and classes),
    or a torch module trained as it is: an object, or ``file.py:NAME`` / ``package.module:NAME`` whose
    class or factory gets ``kwargs`` (and ``num_classes`` from the data when it takes one). ``data``: ``mnist``, ``cifar10``, ``cifar100``, an image
    folder, or a ``(train, val)`` pair of :class:`ImageSet`. ``out``: the folder for checkpoints,
    metrics.json and curves.png (None: kept in memory only). ``subset`` / ``val_subset``: train or
    validate on that many images drawn with the seed (a fraction of an epoch, for a quick look).
    ``display``: redraw the curves in the notebook after every epoch. Other keywords override the
    recipe (``lr=0.01``, ``batch_size=64``) or set the run (``device``, ``overwrite``, ``target_acc``).
    """
    unknown = sorted(set(options) - RECIPE_FIELDS - OPTION_FIELDS)
    if unknown:
        raise CnnlabError(f"fit() got unknown option(s) {', '.join(unknown)}: recipe fields are "
                          f"{', '.join(sorted(RECIPE_FIELDS))}; run options {', '.join(sorted(OPTION_FIELDS))}")
    base = recipe if isinstance(recipe, Recipe) else get_recipe(recipe) if recipe != "default" else Recipe("default")
    overrides = {k: v for k, v in options.items() if k in RECIPE_FIELDS}
    if epochs is not None:
        overrides["epochs"] = epochs
    rec = base.with_overrides(**overrides)
    seed = check_seed(0 if seed is None else seed)
    out_path = Path(out) if out is not None else None
    load_kw: dict[str, Any] = {"data_dir": data_dir, "size": size, "val_fraction": val_fraction, "seed": seed}
    if isinstance(data, tuple):
        train, val = data
        source, data_name = "", train.name
    elif isinstance(data, str):
        train, val = load(data, "train", **load_kw), load(data, "val", **load_kw)
        source = data
        data_name = Path(data).name if Path(data).is_dir() else data
    else:
        raise CnnlabError(f"data {data!r}: give mnist, cifar10, cifar100, an image folder or (train, val) ImageSets")
    train = _subset(train, subset, seed, "subset")
    if val is not None:
        val = _subset(val, val_subset, seed + 1, "val_subset") if len(val) else None
    net = _network(model, train, kwargs, **({"aux": aux} if aux is not None else {}))
    aug = None
    if augment:
        from ..data.augment import preset

        a = preset(rec.augment)
        aug = a.fit(train.images, torch.Generator().manual_seed(seed)) if a.active else None
    live = _Live(display)
    run_opts = {k: v for k, v in options.items() if k in OPTION_FIELDS}
    if live.active:
        run_opts["progress"] = False
    holder: list[Run] = []

    def on_epoch(row: dict[str, Any]) -> None:
        if holder:
            r = holder[0]
            r.status = f"training: epoch {row['epoch']} of {rec.epochs}"
            live.update(r)

    opts = Options(out=out_path, seed=seed, val_fraction=val_fraction if Path(str(source)).is_dir() else None,
                   augment=aug, on_epoch=on_epoch, log=(lambda s: None) if live.active else None, **run_opts)
    trainer = Trainer(net, train, val, rec, opts, data_name=data_name)
    run = Run(net.name, data_name, trainer.state.history, out_path, trainer, "training", source, load_kw)
    holder.append(run)
    try:
        trainer.fit()
    finally:
        run.history = trainer.state.history
        done = trainer.state.epoch
        run.status = "finished" if done >= rec.epochs else f"stopped after epoch {done} of {rec.epochs}"
        live.update(run)
    return run
