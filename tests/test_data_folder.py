"""Image folders on generated PNG/JPEG files: layouts, splits, size policy, channels, bad files, cache."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import data
from cnnlab.errors import CnnlabError


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def png(path: Path, value: int, size: tuple[int, int] = (8, 6), mode: str = "RGB") -> np.ndarray:
    """An image whose pixels encode (value, row, column), so every loaded pixel can be checked."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = value
    arr[..., 1] = np.arange(h)[:, None] * 10
    arr[..., 2] = np.arange(w)[None, :] * 10
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return np.asarray(img)


def make(root: Path, counts: dict[str, int], **kw) -> dict[str, list[int]]:
    values = {}
    for ci, (cls, n) in enumerate(counts.items()):
        values[cls] = [ci * 40 + i for i in range(n)]
        for i, v in enumerate(values[cls]):
            png(root / cls / f"{i:03d}.png", v, **kw)
    return values


def test_classes_labels_and_pixels(tmp_path: Path) -> None:
    make(tmp_path / "shapes", {"circle": 5, "square": 5, "triangle": 5})
    train = data.load(tmp_path / "shapes", "train", val_fraction=0.2)
    val = data.load(str(tmp_path / "shapes"), "val", val_fraction=0.2)
    assert train.classes == ["circle", "square", "triangle"] and val.classes == train.classes
    assert train.images.shape == (12, 3, 6, 8) and val.images.shape == (3, 3, 6, 8)
    assert train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert train.labels.bincount().tolist() == [4, 4, 4] and val.labels.bincount().tolist() == [1, 1, 1]
    assert train.name == "shapes/train" and val.name == "shapes/val"
    # Each image's red value names its file; green/blue are its row/column: channels first, nothing moved.
    every = torch.cat([train.images, val.images])
    reds = sorted(every[:, 0, 0, 0].tolist())
    assert reds == [0, 1, 2, 3, 4, 40, 41, 42, 43, 44, 80, 81, 82, 83, 84]  # disjoint and complete
    assert every[0, 1, :, 0].tolist() == [0, 10, 20, 30, 40, 50] and every[0, 2, 0, :].tolist()[:3] == [0, 10, 20]
    labels_by_red = {int(r): int(lab) for r, lab in zip(every[:, 0, 0, 0], torch.cat([train.labels, val.labels]))}
    assert all(labels_by_red[r] == r // 40 for r in reds)


def test_split_is_seeded_stratified_and_test_is_the_held_out_part(tmp_path: Path) -> None:
    make(tmp_path / "d", {"a": 20, "b": 10})
    a = data.load(tmp_path / "d", "val", val_fraction=0.3, seed=1)
    b = data.load(tmp_path / "d", "test", val_fraction=0.3, seed=1)
    c = data.load(tmp_path / "d", "val", val_fraction=0.3, seed=2)
    assert a.labels.bincount().tolist() == [6, 3]
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images[:, 0, 0, 0].sort().values, c.images[:, 0, 0, 0].sort().values)
    train = data.load(tmp_path / "d", "train", val_fraction=0.3, seed=1)
    assert set(train.images[:, 0, 0, 0].tolist()).isdisjoint(a.images[:, 0, 0, 0].tolist())
    assert len(data.load(tmp_path / "d", "train", val_fraction=0.0)) == 30
    none = data.load(tmp_path / "d", "val", val_fraction=0.0)  # no validation: empty, shaped like train
    assert len(none) == 0 and none.shape == (3, 6, 8) and none.classes == ["a", "b"]
    with pytest.raises(CnnlabError, match="outside \\[0, 1\\)"):
        data.load(tmp_path / "d", "train", val_fraction=1.0)


def test_train_and_val_sub_folders_are_used_as_given(tmp_path: Path) -> None:
    make(tmp_path / "r" / "train", {"cat": 3, "dog": 4})
    make(tmp_path / "r" / "val", {"cat": 2, "dog": 1})
    assert data.load(tmp_path / "r", "train").labels.bincount().tolist() == [3, 4]
    val = data.load(tmp_path / "r", "val")
    assert val.labels.bincount().tolist() == [2, 1] and len(data.load(tmp_path / "r", "test")) == 3
    make(tmp_path / "r" / "val", {"cow": 1})
    with pytest.raises(CnnlabError, match="has classes that .* lacks \\(cow\\)"):
        data.load(tmp_path / "r", "val")


def test_size_scales_to_cover_and_centre_crops(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for cls, size in (("a", (40, 20)), ("b", (20, 20))):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, : size[0] // 2] = (255, 0, 0)  # left half red
        img[:, size[0] // 2:] = (0, 0, 255)  # right half blue
        root.joinpath(cls).mkdir(parents=True)
        Image.fromarray(img).save(root / cls / "x.png")
        Image.fromarray(img).save(root / cls / "y.jpg", quality=95)
    with pytest.raises(CnnlabError, match=r"differ in size \(.*\): pass a size, e.g. --size 224x224"):
        data.load(root, "train", val_fraction=0)
    out = data.load(root, "train", size=(10, 10), val_fraction=0)
    assert out.images.shape == (4, 3, 10, 10)
    # a: 40x20 scaled to 20x10, centre 10x10 crop keeps half red, half blue; the split stays at the middle.
    a = out.images[out.labels == 0][0].int()
    assert (a[0, :, :4] > 200).all() and (a[2, :, :4] < 50).all()
    assert (a[2, :, 6:] > 200).all() and (a[0, :, 6:] < 50).all()


def test_greyscale_folders_load_with_one_channel(tmp_path: Path) -> None:
    make(tmp_path / "g", {"x": 2, "y": 2}, mode="L")
    out = data.load(tmp_path / "g", "train", val_fraction=0)
    assert out.images.shape == (4, 1, 6, 8)
    png(tmp_path / "g" / "y" / "colour.png", 7)
    assert data.load(tmp_path / "g", "train", val_fraction=0).images.shape == (5, 3, 6, 8)


def test_files_that_are_not_images_are_skipped_with_a_warning(tmp_path: Path) -> None:
    make(tmp_path / "d", {"a": 3, "b": 3})
    (tmp_path / "d" / "a" / "notes.txt").write_text("not an image")
    good = png(tmp_path / "tmp.png", 1)
    (tmp_path / "d" / "b" / "truncated.png").write_bytes((tmp_path / "tmp.png").read_bytes()[:60])
    (tmp_path / "d" / "b" / ".DS_Store").write_bytes(b"\0\1")  # hidden: ignored silently
    assert good.shape == (6, 8, 3)
    with pytest.warns(data.DataWarning, match=r"skipped 2 file\(s\) .*: a/notes.txt, b/truncated.png"):
        out = data.load(tmp_path / "d", "train", val_fraction=0)
    assert len(out) == 6 and out.labels.bincount().tolist() == [3, 3]
    with pytest.warns(data.DataWarning, match="skipped 2"):  # the cached result warns too
        again = data.load(tmp_path / "d", "train", val_fraction=0)
    assert torch.equal(again.images, out.images)
    only_bad = tmp_path / "e"
    make(only_bad, {"a": 2})
    (only_bad / "b").mkdir()
    (only_bad / "b" / "x.jpg").write_text("text")
    with pytest.raises(CnnlabError, match="class 'b' .* has no readable image"), warnings.catch_warnings():
        warnings.simplefilter("ignore", data.DataWarning)
        data.load(only_bad, "train", val_fraction=0)


def test_bad_folders_and_names_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="is empty: it needs one sub-folder of images per class"):
        data.load(tmp_path / "empty")
    make(tmp_path / "one", {"only": 3})
    with pytest.raises(CnnlabError, match="has a single class \\('only'\\)"):
        data.load(tmp_path / "one")
    make(tmp_path / "hole", {"a": 2})
    (tmp_path / "hole" / "b").mkdir()
    with pytest.raises(CnnlabError, match="class folder .*b is empty"):
        data.load(tmp_path / "hole")
    with pytest.raises(CnnlabError, match="unknown data set 'mnsit': did you mean 'mnist'\\?"):
        data.load("mnsit")
    with pytest.raises(CnnlabError, match="unknown split 'dev'"):
        data.load(tmp_path / "hole", "dev")
    with pytest.raises(CnnlabError, match="--data-dir .* is not a folder"):
        data.load("mnist", data_dir=tmp_path / "nowhere")


def test_decoded_folders_are_cached_and_refreshed_when_files_change(tmp_path: Path, _cache: Path) -> None:
    make(tmp_path / "d", {"a": 2, "b": 2})
    first = data.load(tmp_path / "d", "train", val_fraction=0)
    cached = list((_cache / "folders").glob("d-*-train-*.pt"))
    assert len(cached) == 1
    f = tmp_path / "d" / "a" / "000.png"
    png(f, 200)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    second = data.load(tmp_path / "d", "train", val_fraction=0)
    assert second.images[0, 0, 0, 0].item() == 200 and first.images[0, 0, 0, 0].item() == 0
    assert len(list((_cache / "folders").glob("d-*-train-*.pt"))) == 1  # the stale entry was replaced
