"""Training a user's own module (``cnnlab train file.py:NAME``): the module itself trains, and its
checkpoint names the file and arguments, so eval, predict, resume and export build it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.train import checkpoint
from cnnlab.usermodule import ModuleRef
from test_cli_train import COLOURS, colour_folder, colour_image, one_thread, run  # noqa: F401

MODEL = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    """The pytorch/examples MNIST net's pattern, narrower; a buffer no description could carry."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3)
        self.conv2 = nn.Conv2d(width, 2 * width, 3)
        self.fc = nn.Linear(2 * width, num_classes)
        self.register_buffer("marker", torch.full((2,), 7.0))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Fixed(nn.Module):
    """No num_classes argument: always 10 outputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 10)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def factory(width: int = 4) -> nn.Module:
    return Net(num_classes=3, width=width)


class Tutorial(nn.Module):
    """The PyTorch tutorial's habit: .view() on the feature map, which a channels-last tensor refuses."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        x = x.view(-1, 4 * 6 * 6)
        return self.fc(x)


def passing(*, pretrained: bool = False, **kwargs) -> Net:
    """torchvision's builder form: num_classes travels in **kwargs."""
    return Net(**kwargs)
'''

TRAIN = ("--size", "16x16", "--batch-size", "15", "--no-progress", "--lr", "3e-3")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "mine.py").write_text(MODEL)
    return tmp_path / "mine.py", colour_folder(tmp_path / "colours", per_class=10)


def test_train_eval_predict_resume_a_module(setup, tmp_path, capsys) -> None:
    model, data = setup
    out = tmp_path / "run"
    rc, text, err = run(capsys, "train", f"{model}:Net", "--kwargs", "width=4", "--data", data, "--epochs", "2",
                        "--out", out, *TRAIN)
    assert rc == 0, err
    assert "Net on colours" in text and "input 3x16x16" in text
    ck = checkpoint.load(out / "last.pt")
    # The absolute file, the given width, and num_classes taken from the data's 3 classes.
    assert ck.network["module"] == {"ref": f"{model.resolve()}:Net", "kwargs": {"width": 4, "num_classes": 3},
                                    "name": "Net"}
    # The module itself trained: its own buffer is in the weights, and the shapes are Net(3, 4)'s:
    # conv1 4x3x3x3 + 4, conv2 8x4x3x3 + 8, fc 3x8 + 3 = 112 + 296 + 27 = 435 parameters.
    assert torch.equal(ck.model["marker"], torch.full((2,), 7.0))
    assert sum(v.numel() for k, v in ck.model.items() if k != "marker") == 435
    rows = json.loads((out / "metrics.json").read_text())

    rc, text, err = run(capsys, "eval", out / "last.pt", "--data", data, "--split", "val", "--format", "json")
    assert rc == 0, err
    res = json.loads(text)
    assert res["n"] == 3 and res["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-5)
    assert res["top1"] == pytest.approx(rows[-1]["val_acc"])

    image = tmp_path / "red.png"
    colour_image(COLOURS["red"], 5, size=30).save(image)
    rc, text, err = run(capsys, "predict", out / "last.pt", image, "--format", "json")
    assert rc == 0, err
    assert json.loads(text)[0]["class"] in COLOURS

    rc, text, err = run(capsys, "train", f"{model}:Net", "--kwargs", "width=4", "--data", data, "--epochs", "3",
                        "--out", out, "--resume", *TRAIN)
    assert rc == 0, err
    assert [r["epoch"] for r in json.loads((out / "metrics.json").read_text())] == [1, 2, 3]
    rc, _, err = run(capsys, "train", f"{model}:Net", "--kwargs", "width=5", "--data", data, "--epochs", "4",
                     "--out", out, "--resume", *TRAIN)
    assert rc == 2 and "resume with the same module and --kwargs" in err and "Traceback" not in err

    rc, _, err = run(capsys, "export", out / "last.pt", "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert rc == 0, err
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.rand(2, 3, 16, 16)
    _, built, _ = checkpoint.load(out / "last.pt").rebuild()
    assert torch.allclose(scripted(x), built(x), atol=1e-6)
    rc, _, err = run(capsys, "export", out / "last.pt", "--format", "pytorch", "--out", tmp_path / "m.py")
    assert rc == 2 and "export it as onnx or torchscript" in err


def test_factory_without_num_classes_and_wrong_outputs(setup, tmp_path, capsys) -> None:
    model, data = setup
    rc, text, err = run(capsys, "train", f"{model}:factory", "--data", data, "--epochs", "1", "--out",
                        tmp_path / "f", *TRAIN)
    assert rc == 0, err
    assert checkpoint.load(tmp_path / "f" / "last.pt").network["module"]["kwargs"] == {}
    rc, _, err = run(capsys, "train", f"{model}:Fixed", "--data", data, "--epochs", "1", "--out", tmp_path / "x",
                     *TRAIN)
    assert rc == 2 and "Fixed outputs 10 values for a 3x16x16 image but the data has 3 classes" in err
    assert "give its last layer 3 outputs" in err
    rc, _, err = run(capsys, "train", f"{model}:Net", "--kwargs", "num_classes=5", "--data", data, "--out",
                     tmp_path / "y", *TRAIN)
    assert rc == 2 and "give --kwargs num_classes=3" in err
    rc, _, err = run(capsys, "train", f"{model}:Net", "--in-channels", "3", "--data", data, "--out", tmp_path / "z",
                     *TRAIN)
    assert rc == 2 and "--in-channels applies to zoo models" in err
    rc, _, err = run(capsys, "train", "lenet5", "--kwargs", "width=3", "--data", data, "--out", tmp_path / "w")
    assert rc == 2 and "--kwargs applies to a module" in err


def test_kwargs_factory_and_pretrained_weights_with_a_new_head(setup, tmp_path, capsys) -> None:
    model, data = setup
    pretrained = tmp_path / "net10.pth"
    torch.manual_seed(3)
    from cnnlab.usermodule import load_object

    src = load_object(f"{model}:Net")(num_classes=10, width=4)
    torch.save(src.state_dict(), pretrained)
    out = tmp_path / "ft"
    rc, text, err = run(capsys, "train", f"{model}:passing", "--kwargs", "width=4", "--data", data, "--weights",
                        pretrained, "--num-classes", "3", "--epochs", "1", "--freeze", "backbone", "--out",
                        out, *TRAIN)
    assert rc == 0, err
    ck = checkpoint.load(out / "last.pt")
    assert ck.network["module"]["kwargs"] == {"width": 4, "num_classes": 3}  # found through **kwargs
    # Frozen backbone: the loaded convolutions are the file's; the 10-class fc was replaced by a new 3-class one.
    assert torch.equal(ck.model["conv1.weight"], src.conv1.weight.detach())
    assert tuple(ck.model["fc.weight"].shape) == (3, 8)


def test_a_module_that_views_its_map_trains_and_user_errors_are_one_line(setup, tmp_path, capsys) -> None:
    model, data = setup
    rc, text, err = run(capsys, "train", f"{model}:Tutorial", "--data", data, "--epochs", "1", "--out",
                        tmp_path / "t", *TRAIN)
    assert rc == 0, err  # channels-last is off for a user's module unless asked for
    rc, _, err = run(capsys, "train", f"{model}:Tutorial", "--data", data, "--epochs", "1", "--out",
                     tmp_path / "t2", "--channels-last", *TRAIN)
    line = MODEL.splitlines().index("        x = x.view(-1, 4 * 6 * 6)") + 1
    assert rc == 2 and "Traceback" not in err
    assert f"training Tutorial failed: {model}:{line}: RuntimeError: view size is not compatible" in err


def test_a_moved_file_is_one_line(setup, tmp_path, capsys) -> None:
    model, data = setup
    out = tmp_path / "run"
    assert run(capsys, "train", f"{model}:Net", "--data", data, "--epochs", "1", "--out", out, *TRAIN)[0] == 0
    model.rename(tmp_path / "elsewhere.py")
    rc, _, err = run(capsys, "eval", out / "last.pt", "--data", data)
    assert rc == 2 and f"put mine.py back at {model.resolve()}" in err and "Traceback" not in err


@pytest.mark.parametrize("ref, why", [
    ("subprocess:run", "is not a model"),             # the standard library is never a model
    ("os:system", "is not a model"),
    ("builtins:exec", "is not a model"),
    ("yaml:load", "not an nn.Module class nor a function returning one"),  # a package's other functions
])
def test_a_forged_reference_runs_nothing(setup, tmp_path, capsys, ref, why) -> None:
    """A checkpoint is data from anywhere: its reference must name a model, never any callable."""
    model, data = setup
    out = tmp_path / "run"
    assert run(capsys, "train", f"{model}:Net", "--data", data, "--epochs", "1", "--out", out, *TRAIN)[0] == 0
    state = torch.load(out / "last.pt", weights_only=True)
    state["network"]["module"] = {"ref": ref, "kwargs": {"args": ["touch", str(tmp_path / "pwned")]}, "name": "x"}
    torch.save(state, out / "forged.pt")
    rc, _, err = run(capsys, "eval", out / "forged.pt", "--data", data)
    assert rc == 2 and why in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_fit_trains_the_object_itself(tmp_path) -> None:
    import cnnlab
    from cnnlab.data import load

    data = colour_folder(tmp_path / "colours", per_class=10)
    train = load(str(data), "train", size=(16, 16), val_fraction=0.1, seed=0)
    val = load(str(data), "val", size=(16, 16), val_fraction=0.1, seed=0)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    before = net[0].weight.detach().clone()
    run_ = cnnlab.fit(net, (train, val), recipe="default", epochs=1, out=tmp_path / "r", batch_size=16,
                      display=False, progress=False)
    assert run_.name == "Sequential"
    assert not torch.equal(net[0].weight.detach().cpu(), before)  # the same object's weights moved
    ck = checkpoint.load(tmp_path / "r" / "last.pt")
    assert torch.equal(ck.model["0.weight"], net[0].weight.detach().cpu())
    # nn.Sequential needs its layers as arguments: nothing to rebuild it from, and the error says what to do.
    assert ck.network["module"]["ref"] is None
    with pytest.raises(cnnlab.CnnlabError, match="model.load_state_dict"):
        ck.rebuild()


def test_reference_of_an_importable_class() -> None:
    assert ModuleRef.of_instance(nn.Sequential(nn.ReLU())).ref is None  # its layers are its arguments
    assert ModuleRef.of_instance(nn.Linear(2, 3)).ref is None  # needs arguments nobody recorded
    assert ModuleRef.of_instance(nn.ReLU()).ref == "torch.nn.modules.activation:ReLU"
    assert ModuleRef.from_dict(ModuleRef.of_instance(nn.ReLU()).to_dict()).build().__class__ is nn.ReLU
    with pytest.raises(ValueError, match="plain values"):
        ModuleRef.from_dict({"ref": "a.py:N", "kwargs": {"f": object()}})


def test_fit_with_a_reference_and_kwargs(setup, tmp_path) -> None:
    import cnnlab
    from cnnlab.data import load

    model, data = setup
    train = load(str(data), "train", size=(16, 16), val_fraction=0.1, seed=0)
    val = load(str(data), "val", size=(16, 16), val_fraction=0.1, seed=0)
    run_ = cnnlab.fit(f"{model}:Net", (train, val), recipe="default", epochs=1, out=tmp_path / "r", batch_size=16,
                      display=False, progress=False, kwargs={"width": 2})
    ck = checkpoint.load(tmp_path / "r" / "best.pt")
    assert ck.network["module"]["kwargs"] == {"width": 2, "num_classes": 3}
    # conv1 2x3x3x3 + 2, conv2 4x2x3x3 + 4, fc 3x4 + 3 = 56 + 76 + 15 = 147 parameters
    assert sum(v.numel() for k, v in ck.model.items() if k != "marker") == 147
    assert run_.evaluate(data=val).n == len(val)
    with pytest.raises(cnnlab.CnnlabError, match="kwargs= applies to a module reference"):
        cnnlab.fit("lenet5", (train, val), kwargs={"width": 2})


def test_user_frames_tell_a_package_beside_torch_from_torch() -> None:
    """torchvision sits next to torch (``site-packages/torchvision`` starts with ``site-packages/torch``):
    its frames are the user's model code, while torch's own, cnnlab's and ``<frozen ...>`` frames are not."""
    from cnnlab.measure import user_frames

    torch_dir = Path(torch.__file__).resolve().parent
    beside = f"{torch_dir}vision/models/inception.py"
    inside = f"{torch_dir}/nn/modules/conv.py"

    def raised(filename: str) -> BaseException:
        try:
            exec(compile("raise RuntimeError('too small')", filename, "exec"))
        except RuntimeError as e:
            return e
        raise AssertionError("no exception")

    assert [f.filename for f in user_frames(raised(beside))][-1] == beside  # after this test's own frame
    here = [f.filename for f in user_frames(raised(beside))][:-1]
    assert [f.filename for f in user_frames(raised(inside))] == here
    assert [f.filename for f in user_frames(raised("<frozen runpy>"))] == here


def test_summary_of_a_checkpoint(setup, tmp_path, capsys) -> None:
    """A checkpoint of a description analyses as its network; one of a module names what to analyse."""
    model, data = setup
    assert run(capsys, "train", "lenet-rgb8", "--data", data, "--epochs", "1", "--out", tmp_path / "z",
               *TRAIN)[0] == 0
    rc, text, err = run(capsys, "summary", tmp_path / "z" / "best.pt", "--format", "json")
    assert rc == 0, err
    assert json.loads(text)["totals"]["params"] == sum(
        v.numel() for v in checkpoint.load(tmp_path / "z" / "best.pt").model.values() if v.is_floating_point())
    assert run(capsys, "train", f"{model}:Net", "--kwargs", "width=4", "--data", data, "--epochs", "1", "--out",
               tmp_path / "m", *TRAIN)[0] == 0
    rc, _, err = run(capsys, "summary", tmp_path / "m" / "best.pt")
    assert rc == 2
    assert f"analyze that with {model.resolve()}:Net --input 3x16x16 --kwargs '{{\"width\": 4, \"num_classes\": 3}}'" in err


def test_a_missing_checkpoint_is_named_as_one(tmp_path, capsys) -> None:
    rc, _, err = run(capsys, "summary", tmp_path / "gone.pt")
    assert rc == 2 and f"no checkpoint at {tmp_path / 'gone.pt'}" in err


def test_a_file_inside_a_package_and_a_package_in_the_working_folder(tmp_path, capsys, monkeypatch) -> None:
    """``models/net.py`` with ``from .blocks import Block`` loads as a file (its package is imported), and
    ``models.net:Net`` loads from the working folder, as ``python -m`` would import it."""
    pkg = tmp_path / "proj" / "zoo_of_mine"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "blocks.py").write_text("from torch import nn\n\n\ndef block(c):\n    return nn.Conv2d(3, c, 3)\n")
    (pkg / "net.py").write_text(
        "from torch import nn\n\nfrom .blocks import block\n\n\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(block(5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))\n")
    # 5*3*3*3 + 5 = 140 conv parameters, 5*2 + 2 = 12 dense: 152
    rc, text, err = run(capsys, "summary", f"{pkg / 'net.py'}:Net", "--input", "3x8x8", "--format", "json")
    assert rc == 0, err
    assert json.loads(text)["totals"]["params"] == 152
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path / "proj"))])
    for m in [m for m in __import__("sys").modules if m.startswith("zoo_of_mine")]:
        monkeypatch.delitem(__import__("sys").modules, m)
    rc, text, err = run(capsys, "summary", "zoo_of_mine.net:Net", "--input", "3x8x8", "--format", "json")
    assert rc == 0, err
    assert json.loads(text)["totals"]["params"] == 152
