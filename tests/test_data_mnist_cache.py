"""The parsed MNIST cache is checked against the published MD5s of the idx files it was parsed from."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from cnnlab import data
from cnnlab.data import cifar, mnist, sources
from cnnlab.errors import CnnlabError
from test_data_mnist import fake_mnist


@pytest.fixture()
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding fake idx files whose MD5s stand in for the published ones; no source can be fetched."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    monkeypatch.setattr(mnist, "MIRRORS", ())
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    root = cache / "mnist"
    root.mkdir(parents=True)
    for split, seed, n in (("train", 1, 50), ("test", 2, 20)):
        for name, payload in zip(mnist.FILES[split], fake_mnist(n, seed)):
            (root / name).write_bytes(payload)
            monkeypatch.setitem(mnist.RAW_MD5, name, sources.md5_bytes(payload))
    return root


def test_a_good_cache_passes_and_is_used(fake: Path) -> None:
    first = data.load("mnist", "train")
    assert (fake / "train.pt").is_file() and len(first) == 50
    assert mnist.cache_problem(torch.load(fake / "train.pt", weights_only=True), "train") is None
    for name in mnist.FILES["train"]:
        (fake / name).unlink()  # the parsed file alone now serves the split
    assert torch.equal(data.load("mnist", "train").images, first.images)


def test_bytes_overwritten_in_place_are_caught_and_rebuilt(fake: Path) -> None:
    good = data.load("mnist", "train")
    blob = bytearray((fake / "train.pt").read_bytes())
    at = blob.find(good.images[3].numpy().tobytes())  # the stored pixels of image 3, inside the zip
    assert at > 0
    blob[at:at + 784] = bytes(784)  # the file still loads: torch checks no CRC
    (fake / "train.pt").write_bytes(bytes(blob))
    assert sources.load_tensors(fake / "train.pt")["images"][3].sum() == 0
    with pytest.warns(data.DataWarning, match=r"cache file .*train.pt does not match the MNIST files it was built "
                                              r"from: its content differs from train-images-idx3-ubyte .*; rebuilding"):
        again = data.load("mnist", "train")
    assert torch.equal(again.images, good.images) and torch.equal(again.labels, good.labels)
    assert mnist.cache_problem(torch.load(fake / "train.pt", weights_only=True), "train") is None  # rewritten


@pytest.mark.parametrize("change,problem", [
    (lambda o: o["labels"].add_(10), r"a label outside 0-9 \(1[0-9]\)"),
    (lambda o: o["labels"].__setitem__(0, -1), r"a label outside 0-9 \(-1\)"),
    (lambda o: o["labels"].__setitem__(0, (int(o["labels"][0]) + 1) % 10), "differs from train-labels-idx1-ubyte"),
    (lambda o: o.__setitem__("labels", o["labels"].float()), "labels are not one int64 per image"),
    (lambda o: o.__setitem__("images", o["images"][:, :, :20]), "differs from train-images"),
    (lambda o: o.__setitem__("images", o["images"][:10]), "labels are not one int64 per image"),
    (lambda o: o.__setitem__("images", "x"), "images are not uint8"),
    (lambda o: o.__setitem__("classes", list("abcdefghij")), "class names are not 0-9"),
])
def test_a_changed_cache_is_rebuilt_never_trained_on(fake: Path, change, problem: str) -> None:
    good = data.load("mnist", "train")
    obj = torch.load(fake / "train.pt", weights_only=True)
    change(obj)
    torch.save(obj, fake / "train.pt")
    with pytest.warns(data.DataWarning, match=problem):
        again = data.load("mnist", "train")
    assert torch.equal(again.labels, good.labels) and torch.equal(again.images, good.images)


def test_a_changed_cache_without_its_idx_files_is_one_clear_error(fake: Path) -> None:
    data.load("mnist", "train")
    obj = torch.load(fake / "train.pt", weights_only=True)
    obj["labels"][:] = 99  # would index past the 10 outputs: IndexError in training
    torch.save(obj, fake / "train.pt")
    for name in mnist.RAW_MD5:
        (fake / name).unlink()
    with pytest.warns(data.DataWarning, match="label outside 0-9"), pytest.raises(CnnlabError) as e:
        data.load("mnist", "train")
    assert "\n" not in str(e.value) and str(e.value).startswith("cannot load MNIST; tried: ")


def test_a_bad_file_in_the_users_data_dir_is_to_be_replaced_not_fetched(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    images, labels = fake_mnist()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "t10k-images-idx3-ubyte").write_bytes(images)
    (mine / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(data.ChecksumError) as e:
        data.load("mnist", "test", data_dir=mine)
    msg = str(e.value)
    assert msg.endswith("; replace it with the original MNIST file, or leave out --data-dir to let cnnlab fetch MNIST")
    assert "fetch it again" not in msg and "t10k-images-idx3-ubyte" in msg
    monkeypatch.setitem(mnist.RAW_MD5, "t10k-images-idx3-ubyte", sources.md5_bytes(images))
    monkeypatch.setitem(mnist.RAW_MD5, "t10k-labels-idx1-ubyte", sources.md5_bytes(labels))
    (mine / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(CnnlabError, match=r"damaged gzip file .*; replace it with the original MNIST file"):
        data.load("mnist", "test", data_dir=mine)


def test_a_bad_cifar_file_in_the_users_data_dir_is_to_be_replaced(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    v = cifar.VARIANTS["cifar10"]
    (tmp_path / v.archive).write_bytes(b"not the archive")
    with pytest.raises(data.ChecksumError, match=r"; replace it with the original file, or leave out --data-dir to "
                                                 r"let cnnlab fetch the data$"):
        data.load("cifar10", "test", data_dir=tmp_path)
