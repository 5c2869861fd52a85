"""Trainer, recipes and checkpoints on small synthetic image sets (seconds, no downloads)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cnnlab.data import ImageSet
from cnnlab.errors import CnnlabError
from cnnlab.layers import BatchNorm, Conv, Dense, Dropout, Flatten, MaxPool, ReLU
from cnnlab.network import Network
from cnnlab.train import Options, Recipe, Trainer, TrainingDiverged, checkpoint, evaluate, get_recipe
from cnnlab.train.preprocess import Preprocess, fit_padding
from cnnlab.train.recipes import Plateau, make_optimizer, scheduled_lr


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the suite shares two cores between workers."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_net(classes: int = 4, channels: int = 1, hw: int = 12, dropout: bool = True) -> Network:
    layers = [Conv(name="conv", filters=6, kernel=3, padding=1), BatchNorm(name="bn"), ReLU(name="relu"),
              MaxPool(name="pool", kernel=2), Flatten(name="flatten")]
    layers += [Dropout(name="drop", p=0.2)] if dropout else []
    layers += [Dense(name="fc", units=classes)]
    return Network("tiny", tuple(layers), (channels, hw, hw))


def pattern_set(n: int = 96, classes: int = 4, hw: int = 12, seed: int = 0) -> ImageSet:
    """Class k lights quadrant k; noise on top, so the task is learnable but not trivial."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    x = torch.randint(0, 90, (n, 1, hw, hw), generator=g)
    h = hw // 2
    for k in range(classes):
        r, c = divmod(k, 2)
        x[labels == k, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += 150
    return ImageSet(x.clamp(0, 255).to(torch.uint8), labels, [f"c{k}" for k in range(classes)], "pattern")


def quiet(**kw) -> Options:
    return Options(progress=False, log=lambda s: None, **kw)


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- recipes ------------------------------------------------------------------------------------

def test_alexnet_update_rule_by_hand() -> None:
    """v <- 0.9 v - wd*lr*w - lr*g; w <- w + v, with the rate inside the velocity (paper, section 5)."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = make_optimizer(Recipe(optimizer="alexnet-sgd", lr=0.1, momentum=0.9, weight_decay=0.01), [w])
    for lr in (0.1, 0.01):  # the rate drops tenfold before the second step
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        (0.5 * w).sum().backward()  # gradient 0.5
        opt.step()
    # v1 = -0.01*0.1*1 - 0.1*0.5 = -0.051, w1 = 0.949; v2 = 0.9*v1 - 0.01*0.01*0.949 - 0.01*0.5 = -0.0509949
    assert w.item() == pytest.approx(0.949 - 0.0509949, abs=1e-7)
    # torch.optim.SGD puts the rate outside the buffer: 0.949 - 0.01 * 0.96849 = 0.9393151
    v = torch.nn.Parameter(torch.tensor([1.0]))
    sgd = make_optimizer(Recipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01), [v])
    for lr in (0.1, 0.01):
        sgd.param_groups[0]["lr"] = lr
        sgd.zero_grad()
        (0.5 * v).sum().backward()
        sgd.step()
    assert v.item() == pytest.approx(0.9393151, abs=1e-7)


def test_presets_follow_the_seeds() -> None:
    a = get_recipe("alexnet-paper")
    assert (a.optimizer, a.lr, a.momentum, a.weight_decay, a.batch_size) == ("alexnet-sgd", 0.01, 0.9, 5e-4, 128)
    assert a.plateau and a.plateau_factor == 0.1
    k = get_recipe("lenet-keras")
    assert (k.optimizer, k.lr, k.batch_size, k.epochs) == ("adam", 1e-3, 128, 20)
    c = get_recipe("rmsprop-catsdogs")
    assert (c.optimizer, c.lr, c.early_stop) == ("rmsprop", 1e-4, 3)
    r = get_recipe("resnet-cifar")
    assert r.plateau_factor == pytest.approx(math.sqrt(0.1)) and r.min_lr == 0.5e-6 and r.normalize == "pixel"
    with pytest.raises(CnnlabError, match="unknown recipe 'resnet'"):
        get_recipe("resnet")


def test_schedules() -> None:
    keras = get_recipe("resnet-cifar")  # the notebook's lr_schedule: x0.1 after 80, 0.01 after 120, ...
    spe = 10
    got = [scheduled_lr(keras, e * spe, spe) for e in (0, 80, 81, 121, 161, 181)]
    assert got == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-6, 5e-7])
    paper = get_recipe("resnet-cifar-paper")  # /10 at 32k and 48k iterations
    assert [scheduled_lr(paper, s, 352) for s in (31999, 32000, 47999, 48000)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001])
    step = Recipe(schedule="step", lr=1.0, step_epochs=2, gamma=0.5)
    assert [scheduled_lr(step, e * 5, 5) for e in range(6)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    one = Recipe(schedule="onecycle", lr=0.1, epochs=4)
    lrs = [scheduled_lr(one, s, 25) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1) and lrs.index(0.1) == 25
    assert lrs[-1] < 1e-3
    cos = Recipe(schedule="cosine", lr=0.1, epochs=2)
    assert scheduled_lr(cos, 0, 10) == pytest.approx(0.1) and scheduled_lr(cos, 10, 10) == pytest.approx(0.05)


def test_plateau_keras_semantics() -> None:
    p = Plateau(factor=0.1, patience=2, mode="min")
    cuts = [p.update(v) for v in (1.0, 0.9, 0.95, 0.93, 0.8, 0.85)]
    assert cuts == [False, False, False, True, False, False]
    assert p.scale == pytest.approx(0.1)


@pytest.mark.parametrize("kw, msg", [({"batch_size": 0}, "--batch-size must be >= 1"),
                                      ({"lr": -1.0}, "--lr must be a positive"),
                                      ({"optimizer": "lbfgs"}, "optimizer 'lbfgs'"),
                                      ({"label_smoothing": 1.0}, "label-smoothing")])
def test_recipe_rejects_bad_values(kw, msg) -> None:
    with pytest.raises(CnnlabError, match=msg):
        Recipe(**kw)


# --- preprocessing ------------------------------------------------------------------------------

def test_preprocess_channel_stats_and_lenet_padding() -> None:
    data = pattern_set(64, hw=28)
    pad = fit_padding((28, 28), (32, 32))
    assert pad == (2, 2, 2, 2)
    assert fit_padding((28, 28), (227, 227)) == (0, 0, 0, 0)  # far smaller: build at the data size instead
    prep = Preprocess.fit(data.images, "channel", pad)
    x = prep(data.images)
    assert x.shape == (64, 1, 32, 32) and prep.input_shape == (1, 32, 32)
    inner = x[:, :, 2:30, 2:30]
    assert inner.mean().item() == pytest.approx(0.0, abs=1e-5) and inner.std().item() == pytest.approx(1.0, abs=1e-3)
    black = prep(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    assert torch.allclose(x[:, :, 0, 0], black[0, 0, 0, 0])  # padding is black digitised, not zero


def test_preprocess_pixel_mean() -> None:
    data = pattern_set(64)
    x = Preprocess.fit(data.images, "pixel")(data.images)
    assert x.mean(0).abs().max().item() < 1e-5  # the mean image is subtracted, per pixel
    unit = data.images.float() / 255
    assert torch.allclose(x, unit - unit.mean(0), atol=1e-6)  # x/255 - mean(x/255), no division


# --- training -----------------------------------------------------------------------------------

def test_overfits_a_tiny_batch() -> None:
    g = torch.Generator().manual_seed(1)
    data = ImageSet(torch.randint(0, 256, (32, 1, 12, 12), generator=g, dtype=torch.uint8),
                    torch.randint(0, 4, (32,), generator=g), ["a", "b", "c", "d"])
    recipe = Recipe(optimizer="adam", lr=1e-2, batch_size=32, epochs=60)
    hist = Trainer(tiny_net(dropout=False), data, None, recipe, quiet()).fit()
    assert hist[0]["train_acc"] < 0.6
    assert hist[-1]["train_acc"] == 1.0 and hist[-1]["train_loss"] < 0.05


def test_learns_and_writes_the_contract(tmp_path) -> None:
    train, val = pattern_set(256, seed=0), pattern_set(64, seed=1)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=32, epochs=3, schedule="onecycle")
    hist = Trainer(tiny_net(), train, val, recipe, quiet(out=tmp_path)).fit()
    rows = json.loads((tmp_path / "metrics.json").read_text())
    keys = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"}
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(keys <= set(r) for r in rows)
    assert rows == json.loads(json.dumps(hist))
    assert rows[-1]["val_acc"] >= 0.95 and rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert all(r["images_per_s"] > 0 for r in rows)
    # what the training loss measured, so curves and reports can label it against the validation loss
    assert {(r["label_smoothing"], r["num_classes"]) for r in rows} == {(0.0, len(train.classes))}
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    ck = checkpoint.load(tmp_path / "best.pt")
    net, model, prep = ck.rebuild()
    assert ck.classes == train.classes and net.name == "tiny"
    res = evaluate(model, val.images, val.labels, prep, torch.device("cpu"))
    best = max(rows, key=lambda r: -r["val_loss"])
    assert res["n"] == 64 and res["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert res["top1"] == pytest.approx(best["val_acc"])


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path) -> None:
    """Interrupted after epoch 2 of 4 (dropout, BatchNorm, augmentation, one-cycle rate all on)."""
    from cnnlab.data.augment import preset

    train, val = pattern_set(160, seed=0), pattern_set(32, seed=1)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=32, epochs=4, schedule="onecycle", weight_decay=5e-4)
    aug = preset("mnist")
    full = Trainer(tiny_net(), train, val, recipe, quiet(out=tmp_path / "full", seed=3, augment=aug))
    full.fit()

    def interrupt(row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_net(), train, val, recipe,
                quiet(out=tmp_path / "cut", seed=3, augment=aug, on_epoch=interrupt)).fit()
    assert checkpoint.load(tmp_path / "cut" / "last.pt").epoch == 2
    resumed = Trainer(tiny_net(), train, val, recipe, quiet(out=tmp_path / "cut", seed=3, augment=aug, resume=True))
    assert resumed.state.epoch == 2
    resumed.fit()
    assert state_equal(full.model.state_dict(), resumed.model.state_dict())
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("full", "cut"))
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in a]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in b]
    # and a different seed really trains differently
    other = Trainer(tiny_net(), train, val, recipe, quiet(seed=4, augment=aug))
    other.fit()
    assert not state_equal(full.model.state_dict(), other.model.state_dict())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    train = pattern_set(64)
    trainer = None

    def poison(row: dict) -> None:
        with torch.no_grad():
            trainer.model.fc.weight[0, 0] = float("nan")

    trainer = Trainer(tiny_net(), train, None, Recipe(batch_size=16, epochs=3), quiet(out=tmp_path, on_epoch=poison))
    before = (tmp_path / "last.pt")
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at epoch 2, step 1 .*last good checkpoint .*last.pt"):
        trainer.fit()
    ck = checkpoint.load(before)
    assert ck.epoch == 1
    assert all(torch.isfinite(v).all() for v in ck.model.values() if v.is_floating_point())
    assert len(json.loads((tmp_path / "metrics.json").read_text())) == 1


def test_early_stopping_keeps_best(tmp_path) -> None:
    """Validation labels are the training labels shifted by one: the better the model fits the
    training set, the worse its validation loss, so patience 2 stops it at epoch 3 with epoch 1 best."""
    train = pattern_set(128)
    val = ImageSet(train.images, (train.labels + 1) % 4, train.classes)
    recipe = Recipe(optimizer="adam", lr=1e-2, batch_size=32, epochs=10, early_stop=2)
    hist = Trainer(tiny_net(dropout=False), train, val, recipe, quiet(out=tmp_path)).fit()
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert hist[0]["val_loss"] < hist[1]["val_loss"] < hist[2]["val_loss"]
    assert checkpoint.load(tmp_path / "best.pt").epoch == 1
    assert checkpoint.load(tmp_path / "last.pt").epoch == 3


def test_evaluation_is_the_same_in_any_chunk_size() -> None:
    data = pattern_set(50)
    torch.manual_seed(0)
    from cnnlab.torch_backend import build

    model = build(tiny_net(), (1, 12, 12), logits=True)
    prep = Preprocess.fit(data.images, "channel")
    a = evaluate(model, data.images, data.labels, prep, torch.device("cpu"), batch_size=7, confusion=4)
    b = evaluate(model, data.images, data.labels, prep, torch.device("cpu"), batch_size=1000)
    assert a["n"] == b["n"] == 50
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["top1"] == b["top1"] and a["top5"] == b["top5"]
    assert a["top5"] == 1.0  # 4 classes: the top 5 hold them all
    cm = a["confusion"]
    assert cm.sum().item() == 50 and cm.diagonal().sum().item() == round(a["top1"] * 50)


def test_aux_heads_add_weighted_loss() -> None:
    from cnnlab.network import aux

    layers = list(tiny_net(dropout=False).layers)
    net = Network("tiny-aux", (*layers[:4], aux("aux1", Flatten(name="aflat"), Dense(name="afc", units=4)),
                               *layers[4:]), (1, 12, 12))
    data = pattern_set(32)
    trainer = Trainer(net, data, None, Recipe(aux_weight=0.3, batch_size=16, epochs=1), quiet())
    x, y = trainer.prep(data.images[:8]), data.labels[:8]
    out = trainer.model.train()(x)
    assert isinstance(out, tuple) and len(out) == 2
    loss, logits = trainer._loss(out, y)
    f = torch.nn.functional.cross_entropy
    assert logits is out[0] and loss.item() == pytest.approx((f(out[0], y) + 0.3 * f(out[1], y)).item())
    hist = trainer.fit()
    assert math.isfinite(hist[0]["train_loss"])


def test_bad_data_is_refused() -> None:
    one = ImageSet(torch.zeros(4, 1, 12, 12, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), ["only"])
    with pytest.raises(CnnlabError, match="needs at least 2"):
        Trainer(tiny_net(), one, None, Recipe(), quiet())
    rgb = ImageSet(torch.zeros(4, 3, 12, 12, dtype=torch.uint8), torch.tensor([0, 1, 2, 3]), list("abcd"))
    with pytest.raises(CnnlabError, match="1 input channels but the data has 3"):
        Trainer(tiny_net(), rgb, None, Recipe(), quiet())
    with pytest.raises(CnnlabError, match="no last.pt"):
        Trainer(tiny_net(), pattern_set(8), None, Recipe(), quiet(resume=True))


def test_bf16_autocast_and_fp16_needs_cuda(tmp_path) -> None:
    train = pattern_set(64)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=16, epochs=2, schedule="onecycle")
    trainer = Trainer(tiny_net(dropout=False), train, train, recipe, quiet(out=tmp_path, amp="bf16"))
    hist = trainer.fit()
    assert all(math.isfinite(r["train_loss"]) for r in hist) and hist[-1]["val_acc"] > 0.5
    _, model, prep = checkpoint.load(tmp_path / "last.pt").rebuild()
    assert next(model.parameters()).dtype == torch.float32  # autocast leaves the master weights in fp32
    if not torch.cuda.is_available():
        with pytest.raises(CnnlabError, match="fp16 needs a CUDA device"):
            Trainer(tiny_net(), train, None, recipe, quiet(amp="fp16", device="cpu"))


def test_output_width_must_match_the_classes() -> None:
    with pytest.raises(CnnlabError, match="tiny outputs 3 values but the data has 4 classes"):
        Trainer(tiny_net(classes=3), pattern_set(16), None, Recipe(), quiet())


def test_reduce_on_plateau_inside_the_trainer() -> None:
    """Shifted validation labels make validation loss worsen as training fits (as above), so with
    patience 1 each bad epoch halves the rate; the rates recorded per epoch replay Keras' rule."""
    train = pattern_set(128)
    val = ImageSet(train.images, (train.labels + 1) % 4, train.classes)
    recipe = Recipe(optimizer="adam", lr=1e-2, batch_size=32, epochs=5, plateau=True, plateau_factor=0.5,
                    plateau_patience=1)
    hist = Trainer(tiny_net(dropout=False), train, val, recipe, quiet()).fit()
    replay, want = Plateau(0.5, 1, "min"), []
    for row in hist:
        want.append(1e-2 * replay.scale)
        replay.update(row["val_loss"])
    assert [r["lr"] for r in hist] == pytest.approx(want)
    assert hist[-1]["lr"] <= 1e-2 * 0.5 ** 2  # at least two reductions happened


def test_rmsprop_and_label_smoothing_train() -> None:
    train, val = pattern_set(256, seed=0), pattern_set(64, seed=1)
    recipe = Recipe(optimizer="rmsprop", lr=1e-3, batch_size=32, epochs=4, label_smoothing=0.1)
    trainer = Trainer(tiny_net(), train, val, recipe, quiet())
    assert isinstance(trainer.optimizer, torch.optim.RMSprop)
    hist = trainer.fit()
    assert hist[-1]["val_acc"] >= 0.9
    # Label smoothing 0.1 over 4 classes: target 0.925 on the label and 0.025 elsewhere.
    logits, y = torch.tensor([[2.0, 0.0, -1.0, 0.5]]), torch.tensor([0])
    logp = logits.log_softmax(1)[0]
    want = -(0.925 * logp[0] + 0.025 * (logp[1] + logp[2] + logp[3]))
    assert trainer._loss(logits, y)[0].item() == pytest.approx(want.item(), rel=1e-6)


def test_channels_last_trains_the_same_weights() -> None:
    train = pattern_set(96)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=32, epochs=2)
    a = Trainer(tiny_net(), train, None, recipe, quiet(channels_last=True))
    b = Trainer(tiny_net(), train, None, recipe, quiet(channels_last=False))
    a.fit()
    b.fit()
    assert a.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert b.model.conv.weight.is_contiguous()
    for k, v in a.model.state_dict().items():
        assert torch.allclose(v.float(), b.model.state_dict()[k].float(), atol=1e-5), k


def test_a_new_run_never_overwrites_an_old_one(tmp_path) -> None:
    train = pattern_set(64)
    recipe = Recipe(batch_size=32, epochs=1)
    Trainer(tiny_net(), train, None, recipe, quiet(out=tmp_path)).fit()
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CnnlabError, match=r"already holds a run \(last.pt, best.pt, metrics.json\): pass --resume"):
        Trainer(tiny_net(), train, None, recipe, quiet(out=tmp_path))
    assert (tmp_path / "last.pt").read_bytes() == before
    Trainer(tiny_net(), train, None, recipe.with_overrides(epochs=2), quiet(out=tmp_path, overwrite=True)).fit()
    assert len(json.loads((tmp_path / "metrics.json").read_text())) == 2


@pytest.mark.slow
def test_torch_compile_trains_like_eager() -> None:
    train = pattern_set(64)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=32, epochs=1)
    eager = Trainer(tiny_net(dropout=False), train, None, recipe, quiet())
    compiled = Trainer(tiny_net(dropout=False), train, None, recipe, quiet(compile=True))
    assert type(compiled.train_model).__name__ == "OptimizedModule"
    a, b = eager.fit(), compiled.fit()
    assert b[0]["train_loss"] == pytest.approx(a[0]["train_loss"], rel=1e-4)
    for k, v in eager.model.state_dict().items():
        assert torch.allclose(v.float(), compiled.model.state_dict()[k].float(), atol=1e-4), k


def test_progress_bar_shows_loss_accuracy_and_speed() -> None:
    import io

    from rich.console import Console

    from cnnlab.train.trainer import _Progress

    buf = io.StringIO()
    bar = _Progress(True, "epoch 1/3", 10, console=Console(file=buf, force_terminal=True, width=120))
    assert bar.due(1)
    bar.show(4, 0.5, 0.5, 1234.0)
    bar.close()
    text = buf.getvalue()
    assert "epoch 1/3" in text and "4/10" in text and "loss 0.5000 acc 50.00% 1,234 img/s" in text
    assert _Progress(True, "epoch 1/3", 10, console=Console(file=io.StringIO())).bar is None  # not a terminal


def test_each_process_draws_its_own_augmentation() -> None:
    """Under torchrun every rank holds other images; with one seed for all, every rank would crop, flip
    and drop out the same way. Rank 0 keeps the single-process seed, so a one-process run is unchanged."""
    from cnnlab.train.trainer import _rank_seed, _seed_for

    s = _seed_for(7, 3)
    assert _rank_seed(s, 0) == s
    seeds = {_rank_seed(s, r) for r in range(64)}
    assert len(seeds) == 64 and max(seeds) + 2 < 2**63
    a, b = (torch.Generator().manual_seed(_rank_seed(s, r) + 2) for r in (0, 1))
    assert not torch.equal(torch.rand(8, generator=a), torch.rand(8, generator=b))
