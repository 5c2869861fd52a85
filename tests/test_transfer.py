"""Transfer learning: torchvision-format weight files, strict loading, freezing, the finetune phases,
ImageNet normalization, and adapt carrying weights over.

The weight files are written from cnnlab's own torchvision-layout models, whose state_dict keys and
shapes equal torchvision's (checked here against tests/fixtures/torchvision_state_dict_shapes.json),
so they stand in for the published files without a download.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from cnnlab import zoo
from cnnlab.errors import CnnlabError
from cnnlab.torch_backend import build
from cnnlab.train import Options, Trainer, checkpoint, get_recipe
from cnnlab.train.weights import WeightsMismatch, load_weights, read_weights
from test_cli_train import colour_folder, colour_image, run

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "torchvision_state_dict_shapes.json").read_text())
FT = ("train", "resnet18-tv", "--size", "32x32", "--batch-size", "8", "--no-progress", "--threads", "1")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def torchvision_file(path: Path, model: str, theirs: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """A weight file in torchvision's format, with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    sd = build(zoo.get(model)).state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == REFERENCE[theirs]
    with torch.no_grad():
        for k, v in sd.items():
            if k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
            elif k.endswith("running_mean"):
                v.normal_(0, 0.1)
            elif k.endswith("num_batches_tracked"):
                v.fill_(1000)
    sd = {k: v.clone() for k, v in sd.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    torchvision_file(root / "resnet18.pth", "resnet18-tv", "resnet18")
    torchvision_file(root / "resnet34.pth", "resnet34-tv", "resnet34")
    colour_folder(root / "colours", per_class=6)
    return {"r18": root / "resnet18.pth", "r34": root / "resnet34.pth", "data": root / "colours"}


def test_finetune_with_frozen_backbone_moves_only_the_new_head(tmp_path, capsys, files) -> None:
    out = tmp_path / "run"
    rc, text, err = run(capsys, *FT, "--data", files["data"], "--weights", files["r18"], "--freeze", "backbone",
                        "--num-classes", "3", "--epochs", "2", "--lr", "0.01", "--out", out)
    assert rc == 0, err
    assert "loaded 120 of 122 tensors" in text and "new classifier fc (3 classes, the file's has 1000)" in text
    # the table before training: the head's 512*3 + 3 trainable, all 11,176,512 others frozen
    assert re.search(r"classifier fc +1,539 +0\n", text) and re.search(r"backbone +0 +11,176,512\n", text)
    src = torch.load(files["r18"], weights_only=True)
    ck = checkpoint.load(out / "last.pt")
    assert ck.epoch == 2
    for k, v in ck.model.items():
        if not k.startswith("fc."):
            assert torch.equal(v, src[k]), k  # weights, BatchNorm statistics and counters, bit for bit
    assert ck.model["fc.weight"].shape == (3, 512)
    torch.manual_seed(0)  # the run's seed: the head it started from
    fresh = build(zoo.get("resnet18-tv", num_classes=3), (3, 32, 32), logits=True)
    assert not torch.equal(ck.model["fc.weight"], fresh.state_dict()["fc.weight"])  # the head trained
    groups, state = ck.optimizer["param_groups"], ck.optimizer["state"]
    assert [len(g["params"]) for g in groups] == [2] and [g["part"] for g in groups] == ["head"]
    assert sorted(tuple(s["exp_avg"].shape) for s in state.values()) == [(3,), (3, 512)]


def test_weights_of_another_architecture_fail_in_one_line(tmp_path, capsys, files) -> None:
    rc, _, err = run(capsys, *FT, "--data", files["data"], "--weights", files["r34"], "--num-classes", "3",
                     "--out", tmp_path / "r")
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "does not fit resnet18-tv" in err and "96 unexpected (layer1.2.conv1.weight, layer1.2.bn1.weight" in err
    assert not (tmp_path / "r" / "last.pt").exists()
    # the other way round: resnet18 weights miss resnet34's extra units
    model = build(zoo.get("resnet34-tv"))
    with pytest.raises(WeightsMismatch, match=r"96 missing from the file \(layer1\.2\.conv1\.weight, "):
        load_weights(model, torch.load(files["r18"], weights_only=True), "r18.pth", net_name="resnet34-tv")


def test_classifier_of_another_size_needs_num_classes_or_partial(tmp_path, capsys, files) -> None:
    rc, _, err = run(capsys, *FT, "--data", files["data"], "--weights", files["r18"], "--out", tmp_path / "r")
    assert rc == 2 and err.count("\n") == 1
    assert "fc.weight is 1000x512 in the file, 3x512 in the network" in err and "--num-classes 3" in err
    rc, text, err = run(capsys, *FT, "--data", files["data"], "--weights", files["r18"], "--partial",
                        "--epochs", "1", "--out", tmp_path / "p")
    assert rc == 0, err
    assert "loaded 120 of 122 tensors" in text and "new: fc.weight, fc.bias" in text


def test_partial_reports_what_stays_new() -> None:
    model = build(zoo.get("resnet18-tv"))
    sd = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("layer4.1.")}
    sd["extra.weight"] = torch.zeros(2)
    with pytest.raises(WeightsMismatch, match=r"12 missing from the file .*; 1 unexpected \(extra\.weight\)"):
        load_weights(model, sd, "f.pth")
    res = load_weights(model, sd, "f.pth", partial=True)
    assert len(res.taken) == 110 and len(res.new) == 12 and res.skipped == ["extra.weight"]
    assert "new: layer4.1.conv1.weight, layer4.1.bn1.weight, layer4.1.bn1.bias and 9 more" in res.summary()


def test_safetensors_and_checkpoint_files_load_the_same_tensors(tmp_path, files) -> None:
    ref = torchvision_file(tmp_path / "r18.safetensors", "resnet18-tv", "resnet18")
    got = read_weights(tmp_path / "r18.safetensors")
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.items()}, "epoch": 3}, tmp_path / "wrapped.pt")
    got = read_weights(tmp_path / "wrapped.pt")  # a training script's file, saved from DataParallel
    assert got.keys() == ref.keys()


def test_a_cnnlab_checkpoint_serves_as_weights(tmp_path, capsys, files) -> None:
    first = tmp_path / "first"
    rc, _, err = run(capsys, *FT, "--data", files["data"], "--weights", files["r18"], "--freeze", "backbone",
                     "--num-classes", "3", "--epochs", "1", "--out", first)
    assert rc == 0, err
    rc, text, err = run(capsys, *FT, "--data", files["data"], "--weights", first / "last.pt", "--freeze", "layer3",
                        "--epochs", "1", "--out", tmp_path / "second")
    assert rc == 0, err
    assert "loaded 122 of 122 tensors" in text
    a, b = checkpoint.load(first / "last.pt").model, checkpoint.load(tmp_path / "second" / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("conv1.", "bn1.", "layer1.", "layer3.")))
    assert not torch.equal(a["layer4.1.conv2.weight"], b["layer4.1.conv2.weight"])


def test_a_pickle_that_is_not_weights_is_refused(tmp_path, capsys, files) -> None:
    bad = tmp_path / "evil.pth"
    torch.save(torch.nn.Linear(2, 2), bad)  # a whole pickled module: loading it would run its classes' code
    rc, _, err = run(capsys, *FT, "--data", files["data"], "--weights", bad, "--out", tmp_path / "r")
    assert rc == 2 and err.count("\n") == 1
    assert "is not a readable weights file (UnpicklingError)" in err
    torch.save({"lr": 0.1}, tmp_path / "notes.pt")
    with pytest.raises(CnnlabError, match="holds no state_dict"):
        read_weights(tmp_path / "notes.pt")


@pytest.mark.parametrize("extra,msg", [
    (("--freeze", "layer9"), "unknown layer 'layer9' in --freeze: give backbone or a layer of the network (conv1,"),
    (("--freeze", "backbone", "--unfreeze-at", "4"), "--unfreeze-at 4 is outside the run's --epochs 3"),
    (("--unfreeze-at", "2"), "--unfreeze-at 2 needs frozen layers"),
    (("--freeze", "fc"), "--freeze fc would freeze the classifier fc too"),
    (("--partial",), "--partial applies to --weights FILE"),
])
def test_bad_transfer_options_are_one_line(tmp_path, capsys, files, extra, msg) -> None:
    weights = () if "--partial" in extra else ("--weights", files["r18"])
    rc, _, err = run(capsys, *FT, "--data", files["data"], *weights, "--num-classes", "3", "--epochs", "3",
                     "--out", tmp_path / "r", *extra)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert msg in err


def _finetune(files: dict[str, Path], out: Path, stop_after: int = 0, resume: bool = False) -> list[dict]:
    """finetune --unfreeze-at 2 over 3 epochs; a snapshot of the weights after every epoch."""
    from cnnlab.data import load

    train = load(str(files["data"]), "train", size=(32, 32), val_fraction=0.2, seed=0)
    recipe = get_recipe("finetune").with_overrides(epochs=3, unfreeze_at=2, batch_size=8)
    snaps: list[dict] = []

    def on_epoch(row: dict) -> None:
        snaps.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        if stop_after and row["epoch"] == stop_after:
            raise KeyboardInterrupt

    opts = Options(out=out, progress=False, weights=files["r18"], new_head=True, on_epoch=on_epoch, resume=resume,
                   channels_last=False, log=lambda s: None)
    trainer = Trainer(zoo.get("resnet18-tv", num_classes=3), train, None, recipe, opts, data_name="colours")
    try:
        trainer.fit()
    except KeyboardInterrupt:
        pass
    return snaps


def test_finetune_unfreezes_the_top_block_from_its_epoch_and_resumes_in_phase(tmp_path, files) -> None:
    src = torch.load(files["r18"], weights_only=True)
    snaps = _finetune(files, tmp_path / "full")
    assert len(snaps) == 3

    def same(snap: dict, prefix: str) -> bool:
        return all(torch.equal(v, src[k]) for k, v in snap.items() if k.startswith(prefix))

    assert same(snaps[0], "layer4.") and same(snaps[0], "layer3.")      # epoch 1: only the head
    assert not same(snaps[1], "layer4.") and same(snaps[1], "layer3.")  # epoch 2: the top block too
    assert same(snaps[2], "layer3.") and same(snaps[2], "conv1.")
    # BatchNorm statistics of the thawed block move once it trains
    assert not torch.equal(snaps[1]["layer4.0.bn1.running_mean"], src["layer4.0.bn1.running_mean"])
    ck = checkpoint.load(tmp_path / "full" / "last.pt")
    assert [g["part"] for g in ck.optimizer["param_groups"]] == ["head", "thawed"]
    assert [g["lr"] for g in ck.optimizer["param_groups"]] == [pytest.approx(0.01), pytest.approx(0.001)]

    # interrupted in either phase, a resumed run ends exactly where the whole one did
    for stop in (1, 2):
        out = tmp_path / f"cut{stop}"
        _finetune(files, out, stop_after=stop)
        rest = _finetune(files, out, resume=True)
        assert len(rest) == 3 - stop
        assert all(torch.equal(rest[-1][k], snaps[2][k]) for k in snaps[2])


def test_lr_backbone_sets_the_rate_of_the_trainable_backbone(files) -> None:
    from cnnlab.data import load

    train = load(str(files["data"]), "train", size=(32, 32), val_fraction=0.2, seed=0)
    recipe = get_recipe("finetune").with_overrides(epochs=1, batch_size=8, freeze="layer2", lr_backbone=1e-4)
    trainer = Trainer(zoo.get("resnet18-tv", num_classes=3), train, None, recipe,
                      Options(progress=False, weights=files["r18"], new_head=True, log=lambda s: None))
    trainer.fit()
    g = {x["part"]: x for x in trainer.optimizer.param_groups}
    assert g["head"]["lr"] == pytest.approx(0.01) and g["backbone"]["lr"] == pytest.approx(1e-4)
    named = dict(trainer.model.named_parameters())
    assert not named["layer2.1.bn2.weight"].requires_grad and named["layer3.0.conv1.weight"].requires_grad
    assert len(g["backbone"]["params"]) == sum(1 for n in named if n.startswith(("layer3.", "layer4.")))
    frozen = sum(p.numel() for n, p in named.items() if not p.requires_grad)
    assert frozen == sum(p.numel() for n, p in named.items() if n.startswith(("conv1.", "bn1.", "layer1.", "layer2.")))


def test_imagenet_normalization_is_stored_and_predict_applies_it(tmp_path, capsys, files) -> None:
    out = tmp_path / "run"
    rc, _, err = run(capsys, *FT, "--data", files["data"], "--weights", files["r18"], "--recipe", "finetune",
                     "--num-classes", "3", "--epochs", "1", "--out", out)
    assert rc == 0, err
    ck = checkpoint.load(out / "last.pt")
    prep = ck.preprocess
    assert prep.mode == "imagenet"
    x = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    # torchvision: (x/255 - mean) / std
    want = torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    torch.testing.assert_close(prep(x)[0, :, 0, 0], want)
    img = tmp_path / "red.png"
    colour_image((200, 30, 30), 7, size=48).save(img)
    rc, text, err = run(capsys, "predict", out / "last.pt", img, "--top", "3", "--format", "json", "--device", "cpu")
    assert rc == 0, err
    got = {p["class"]: p["probability"] for p in json.loads(text)[0]["predictions"]}
    from cnnlab.commands.predict import read_image

    _, model, _ = ck.rebuild()
    with torch.no_grad():
        x = read_image(str(img), 3, (32, 32)).unsqueeze(0).float() / 255
        x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
            1, 3, 1, 1)
        probs = model(x).softmax(1)[0]
    for i, name in enumerate(ck.classes):
        assert got[name] == pytest.approx(float(probs[i]), abs=1e-5)


def test_imagenet_normalization_needs_rgb() -> None:
    from cnnlab.train.preprocess import Preprocess

    with pytest.raises(CnnlabError, match="--normalize imagenet is for RGB images; these have 1 channels"):
        Preprocess.fit(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "imagenet")


def test_adapt_keeps_every_tensor_whose_shape_stays(tmp_path, capsys) -> None:
    src = tmp_path / "lenet.pth"
    torch.manual_seed(3)
    sd = build(zoo.get("lenet5-relu")).state_dict()
    torch.save(sd, src)
    out = tmp_path / "adapted.safetensors"
    rc, text, err = run(capsys, "adapt", "lenet5-relu", "--input", "1x20x20", "--num-classes", "5", "--apply", "1",
                        "--weights", src, "--save-weights", out)
    assert rc == 0, err
    assert "weights: kept 4 of 10 tensors" in text and "new (initialized, to train): fc1, fc2, fc3" in text
    got = read_weights(out)
    for k in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        assert torch.equal(got[k], sd[k])
    assert got["fc1.weight"].shape == (64, 64) and got["fc3.weight"].shape == (5, 64)
    rc, text, err = run(capsys, "adapt", "lenet5-relu", "--input", "1x20x20", "--num-classes", "5", "--apply",
                        "adaptive-pool", "--weights", src, "--format", "json")
    assert rc == 0, err
    w = json.loads(text)["weights"]
    assert w["new"] == ["fc3.weight", "fc3.bias"] and len(w["kept"]) == 8  # only the class layer is new
    rc, _, err = run(capsys, "adapt", "lenet5-relu", "--input", "1x20x20", "--save-weights", out)
    assert rc == 2 and "--save-weights needs --weights FILE" in err


def test_published_auxiliary_heads_are_left_out_of_a_network_without_them() -> None:
    ref = json.loads((Path(__file__).parent / "fixtures" / "torchvision_inception.json").read_text())
    torch.manual_seed(0)
    sd = build(zoo.get("googlenet-tv", aux_logits=True)).state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == ref["googlenet_aux"]  # torchvision's published layout
    model = build(zoo.get("googlenet-tv"))
    res = load_weights(model, sd, "googlenet.pth", net_name="googlenet-tv")
    assert len(res.taken) == len(ref["googlenet"]) == 344 and not res.new
    assert res.aux == ["aux1", "aux2"] and "left out the file's auxiliary heads aux1, aux2" in res.summary()
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_crop_is_recorded_and_applied_by_eval_and_predict(tmp_path, capsys, files) -> None:
    out = tmp_path / "run"
    rc, text, err = run(capsys, "train", "resnet18-tv", "--size", "40x40", "--crop", "32x32", "--batch-size", "8",
                        "--no-progress", "--data", files["data"], "--weights", files["r18"], "--freeze", "backbone",
                        "--num-classes", "3", "--normalize", "imagenet", "--epochs", "1", "--out", out)
    assert rc == 0, err
    assert "input 3x32x32" in text
    ck = checkpoint.load(out / "last.pt")
    assert ck.preprocess.resize == (40, 40) and ck.preprocess.data_shape == (3, 32, 32)
    # a photo of another size and shape: resized to cover 40x40, then its centre 32x32, as training saw
    img = tmp_path / "wide.png"
    colour_image((30, 30, 200), 5, size=90).crop((0, 10, 90, 70)).save(img)
    from cnnlab.commands.predict import read_image
    from cnnlab.data.images import read_image as decode

    x = read_image(str(img), 3, (40, 40), (32, 32))
    full = torch.from_numpy(decode(str(img), 3, (40, 40)).copy()).permute(2, 0, 1)
    assert x.shape == (3, 32, 32) and torch.equal(x, full[:, 4:36, 4:36])
    rc, text, err = run(capsys, "predict", out / "last.pt", img, "--format", "json", "--top", "3")
    assert rc == 0, err
    _, model, prep = ck.rebuild()
    with torch.no_grad():
        probs = model(prep(x.unsqueeze(0))).softmax(1)[0]
    got = {p["class"]: p["probability"] for p in json.loads(text)[0]["predictions"]}
    assert all(got[c] == pytest.approx(float(probs[i]), abs=1e-5) for i, c in enumerate(ck.classes))
    # eval reads the folder the same way and finds the loss training recorded for its validation set
    rc, text, err = run(capsys, "eval", out / "last.pt", "--data", files["data"], "--split", "val", "--format",
                        "json")
    assert rc == 0, err
    assert json.loads(text)["loss"] == pytest.approx(ck.metrics[-1]["val_loss"], rel=1e-5)


def test_eval_and_predict_a_zoo_model_with_published_weights(tmp_path, capsys, files) -> None:
    rc, text, err = run(capsys, "eval", "resnet18-tv", "--weights", files["r18"], "--data", files["data"],
                        "--size", "32x32", "--split", "val", "--format", "json", "--partial",
                        "--confusion", tmp_path / "cm.png")
    assert rc == 0, err
    assert json.loads(text)["n"] == 3  # one held-out image per class
    rc, _, err = run(capsys, "eval", "resnet18-tv", "--weights", files["r18"], "--data", files["data"],
                     "--size", "32x32", "--split", "val", "--confusion", tmp_path / "cm.png")
    assert rc == 2 and "fc.weight is 1000x512 in the file, 3x512 in the network" in err
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"class {i}\n" for i in range(1000)))
    img = tmp_path / "red.png"
    colour_image((200, 30, 30), 1, size=64).save(img)
    rc, text, err = run(capsys, "predict", "resnet18-tv", img, "--weights", files["r18"], "--classes", names,
                        "--size", "40x40", "--crop", "32x32", "--top", "2", "--format", "json")
    assert rc == 0, err
    preds = json.loads(text)[0]["predictions"]
    src = torch.load(files["r18"], weights_only=True)
    model = build(zoo.get("resnet18-tv"), (3, 32, 32), logits=True)
    model.load_state_dict(src)
    from cnnlab.commands.predict import read_image

    x = read_image(str(img), 3, (40, 40), (32, 32)).unsqueeze(0).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    with torch.no_grad():
        top = model.eval()((x - mean) / std).softmax(1)[0].topk(2)
    assert [p["class"] for p in preds] == [f"class {int(i)}" for i in top.indices]
    assert preds[0]["probability"] == pytest.approx(float(top.values[0]), abs=1e-5)
    rc, _, err = run(capsys, "predict", files["r18"], img, "--partial")
    assert rc == 2 and "--partial: only for a model with --weights FILE" in err


def test_freeze_plans_on_alexnet_tv() -> None:
    from cnnlab.train import transfer

    with torch.device("meta"):
        model = build(zoo.get("alexnet-tv"))
    plan = transfer.make_plan(model, "backbone", "top")
    assert plan.head == "classifier.6"
    assert plan.thaw == {"classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias"}
    plan = transfer.make_plan(model, "features.3", "all")  # the second conv and everything before it
    assert plan.frozen == plan.thaw == {"features.0.weight", "features.0.bias", "features.3.weight",
                                        "features.3.bias"}
    plan = transfer.make_plan(model, "features.4", "top")  # a pooling layer: the layers before it
    assert plan.frozen == {"features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias"}
    transfer.apply(model, plan, thawed=False)
    groups = transfer.param_groups(model, plan, 0.01, None, thawed=False)
    assert [g["part"] for g in groups] == ["head", "backbone"] and groups[1]["lr_scale"] == 1.0
    assert sum(len(g["params"]) for g in groups) == 16 - 4
    assert transfer.counts(model, plan.head) == [("classifier classifier.6", 4_097_000, 0),
                                                 ("backbone", 61_100_840 - 4_097_000 - 23_296 - 307_392, 23_296 + 307_392)]


def test_freezing_without_weights_warns(tmp_path, capsys, files) -> None:
    rc, _, err = run(capsys, *FT, "--data", files["data"], "--freeze", "layer1", "--epochs", "1",
                     "--out", tmp_path / "r")
    assert rc == 0
    assert "cnnlab: warning: --freeze layer1 without --weights keeps randomly initialized layers fixed" in err
