"""Image folders and image files against hostile or careless input: 16-bit PNGs, mixed colour modes, links out
of the folder, forged names, sizes beyond memory, decompression bombs, negative seeds, no validation split."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import data, memory
from cnnlab.data import folder, images
from cnnlab.errors import CnnlabError


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def grey(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8), "L").save(path)


def colour(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size[::-1], 3), rgb, np.uint8), "RGB").save(path)


def bomb_png(path: Path, width: int, height: int) -> None:
    """A PNG header claiming width x height greyscale pixels: Pillow's size check runs before any pixel is read."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


# --- 16-bit greyscale -------------------------------------------------------------------------------------------

def test_16_bit_greyscale_png_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    ramp = (np.arange(6 * 8, dtype=np.uint16).reshape(6, 8) * 1393)  # 0 .. 65471 across the image
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        Image.fromarray(ramp).save(tmp_path / "d" / cls / "x.png")
    with Image.open(tmp_path / "d" / "a" / "x.png") as im:
        assert im.mode in images.SIXTEEN_BIT  # Pillow really wrote and reads a 16-bit PNG
        assert np.array_equal(np.asarray(im), ramp)
    out = data.load(tmp_path / "d", "train", val_fraction=0)
    assert out.images.shape == (2, 1, 6, 8)
    want = np.round(ramp / 257).astype(np.uint8)
    assert np.array_equal(out.images[0, 0].numpy(), want)
    assert (out.images == 255).float().mean().item() < 0.05  # clipping made 98% of these pixels 255
    assert out.images[0, 0, 0, 0].item() == 0 and out.images[0, 0, -1, -1].item() == round(47 * 1393 / 257)


def test_16_bit_greyscale_in_a_colour_folder_is_scaled_then_expanded(tmp_path: Path) -> None:
    Image.fromarray(np.full((6, 8), 32768, np.uint16)).save(tmp_path / "half.png")
    with Image.open(tmp_path / "half.png") as im:
        assert im.mode in images.SIXTEEN_BIT
        assert np.array_equal(images.fit(im, "RGB", None), np.full((6, 8, 3), 128, np.uint8))
        assert np.array_equal(images.fit(im, "L", (3, 4)), np.full((3, 4), 128, np.uint8))
    as_i = Image.fromarray(np.array([[0, 32768, 65535, 70000, -5]], np.int32))  # mode I, as TIFF and old PNG readers
    assert as_i.mode == "I" and images.fit(as_i, "L", None).tolist() == [[0, 128, 255, 255, 0]]


# --- mixed colour modes -----------------------------------------------------------------------------------------

def test_mixed_colour_modes_give_every_split_the_same_channels(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for cls in ("a", "b"):
        for i in range(10):
            grey(root / cls / f"{i}.png", 10 * i)
    colour(root / "a" / "9.png", (200, 0, 0))  # one colour image: wherever it lands, both splits are RGB
    for seed in (0, 1, 2, 3):
        train = data.load(root, "train", val_fraction=0.2, seed=seed)
        val = data.load(root, "val", val_fraction=0.2, seed=seed)
        assert train.shape == val.shape == (3, 6, 8), seed
        assert int((train.images[:, 0] == 200).any(dim=(1, 2)).sum() + (val.images[:, 0] == 200).any(
            dim=(1, 2)).sum()) == 1
    pre = tmp_path / "pre"
    for cls in ("a", "b"):
        grey(pre / "train" / cls / "0.png", 5)
        grey(pre / "val" / cls / "0.png", 6)
    colour(pre / "val" / "b" / "1.png", (0, 9, 0))
    assert data.load(pre, "train").shape == data.load(pre, "val").shape == (3, 6, 8)
    assert data.load(pre, "train").images[0].tolist() == [[[5] * 8] * 6] * 3  # grey expanded to RGB


def test_mixed_sizes_across_splits_are_one_clear_error(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        grey(tmp_path / "train" / cls / "0.png", 1)
        grey(tmp_path / "val" / cls / "0.png", 1, size=(9, 9))
    with pytest.raises(CnnlabError, match=r"differ in size \(.*val.*\): pass a size"):
        data.load(tmp_path, "train")
    assert data.load(tmp_path, "val", size=(4, 4)).shape == (1, 4, 4)


# --- links ------------------------------------------------------------------------------------------------------

def test_links_that_leave_the_folder_are_skipped_with_one_warning(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "d"
    for cls in ("a", "b"):
        for i in range(3):
            grey(root / cls / f"{i}.png", 40 * (cls == "b") + i)
    outside = tmp_path / "outside"
    for i in range(4):
        grey(outside / f"o{i}.png", 250)
    (root / "sys").symlink_to(outside, target_is_directory=True)  # a class folder linked out
    (root / "a" / "passwd.png").symlink_to("/etc/passwd")  # a file linked to a system file
    (root / "b" / "stray.png").symlink_to(outside / "o0.png")  # an image outside the folder
    (root / "b" / "nested").symlink_to(outside, target_is_directory=True)  # a sub-folder linked out
    (root / "a" / "copy.png").symlink_to(root / "b" / "0.png")  # inside the folder: followed
    probed: list[Path] = []
    real_probe = folder._probe
    monkeypatch.setattr(folder, "_probe", lambda p: probed.append(p) or real_probe(p))
    with pytest.warns(data.DataWarning) as caught:
        train = data.load(root, "train", val_fraction=0)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert msgs[0].startswith(f"skipped 4 link(s) in {root} that lead outside it: ")
    assert msgs[0].endswith(f"a/passwd.png -> /etc/passwd, b/nested -> {outside}, b/stray.png -> {outside}/o0.png "
                            "and 1 more")
    assert train.classes == ["a", "b"]  # 'sys' is no class
    assert sorted(train.images[:, 0, 0, 0].tolist()) == [0, 1, 2, 40, 40, 41, 42]  # copy.png counted, 250 never
    assert all(p.resolve().is_relative_to(root) for p in probed) and len(probed) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same links are not reported again for the val split of the run
        assert len(data.load(root, "val", val_fraction=0)) == 0


def test_a_link_loop_inside_the_folder_ends(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        grey(tmp_path / "d" / cls / "0.png", 3)
    (tmp_path / "d" / "a" / "loop").symlink_to(tmp_path / "d" / "a", target_is_directory=True)
    assert len(data.load(tmp_path / "d", "train", val_fraction=0)) == 2


# --- names in messages ------------------------------------------------------------------------------------------

def test_a_file_name_cannot_forge_a_line_in_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for cls in ("a", "b"):
        grey(root / cls / "0.png", 3)
    (root / "a" / "evil\ncnnlab: error: FAKE MESSAGE.png").write_text("not an image")
    (root / "b" / "\x1b[2Jclear.png").write_text("not an image")
    with pytest.warns(data.DataWarning) as caught:
        data.load(root, "train", val_fraction=0)
    (msg,) = [str(w.message) for w in caught]
    assert "\n" not in msg and "\x1b" not in msg
    assert "a/evil\\ncnnlab: error: FAKE MESSAGE.png" in msg and "b/\\x1b[2Jclear.png" in msg


def test_cli_one_line_warnings_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI: a forged name stays inside its warning line; --val-fraction 0 trains;
    a size beyond memory and a decompression bomb end in one error line with exit code 2."""
    from cnnlab.cli import main

    for cls in ("a", "b"):
        for i in range(3):
            grey(tmp_path / "d" / cls / f"{i}.png", 3 + 100 * (cls == "b"))
    (tmp_path / "d" / "a" / "evil\ncnnlab: error: FAKE MESSAGE.png").write_text("x")
    train = ["train", "lenet-rgb8", "--data", str(tmp_path / "d"), "--epochs", "1", "--in-channels", "1",
             "--no-progress", "--val-fraction", "0", "--seed", "3"]
    rc = main([*train, "--size", "32x32", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "6 training images, no validation set" in out and "best epoch 1: training accuracy" in out
    assert [ln for ln in err.splitlines() if "error" in ln and "warning" not in ln] == []
    assert "cnnlab: warning: skipped 1 file(s)" in err and "evil\\ncnnlab: error: FAKE MESSAGE.png" in err

    rc = main([*train, "--size", "99999x99999", "--out", str(tmp_path / "huge")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "GiB of memory but only" in err and "pass a smaller --size" in err

    bomb_png(tmp_path / "big.png", 20000, 20000)
    rc = main(["predict", str(tmp_path / "run" / "best.pt"), str(tmp_path / "big.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("cnnlab: error: ") and err.count("\n") == 1
    assert "big.png is too large to decode safely" in err


# --- memory -----------------------------------------------------------------------------------------------------

def test_a_size_beyond_memory_is_refused_before_allocating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in ("a", "b"):
        grey(tmp_path / "d" / cls / "0.png", 3)
    with pytest.raises(CnnlabError, match=r"decoding 2 images of d at 99999x99999x1 needs ([\d.]+) GiB of memory "
                                          r"but only .* is available; pass a smaller --size") as e:
        data.load(tmp_path / "d", "train", size=(99999, 99999), val_fraction=0)
    assert float(str(e.value).split(" needs ")[1].split()[0]) >= 2 * 99999**2 / 2**30  # at least the images
    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000)
    with pytest.raises(CnnlabError, match=r"needs [\d.]+ KiB of memory but only 9\.8 KiB is available"):
        data.load(tmp_path / "d", "train", size=(50, 50), val_fraction=0)
    assert data.load(tmp_path / "d", "train", size=(40, 40), val_fraction=0).shape == (1, 40, 40)  # fits 10 kB
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: no check
    assert data.load(tmp_path / "d", "train", size=(50, 50), val_fraction=0).shape == (1, 50, 50)


def test_available_memory_is_read_and_sizes_are_human() -> None:
    avail = memory.available_bytes()
    assert avail is not None and 0 < avail < 1 << 50
    assert [memory.human_bytes(n) for n in (512, 2048, 5 << 20, 3 << 30, 4.8e12)] == [
        "512 B", "2.0 KiB", "5.0 MiB", "3.0 GiB", "4.4 TiB"]
    memory.check_fits(1, "one byte", "never")
    with pytest.raises(CnnlabError, match=r"^x needs 1,024\.0 TiB of memory but only .* is available; fix$"):
        memory.check_fits(1 << 50, "x", "fix")


# --- decompression bombs ----------------------------------------------------------------------------------------

def test_a_decompression_bomb_is_refused_in_one_line_by_predict_and_skipped_by_folders(tmp_path: Path) -> None:
    bomb = tmp_path / "big.png"
    bomb_png(bomb, 20000, 20000)
    with pytest.raises(CnnlabError, match=r"big.png is too large to decode safely \(over [\d,]+ pixels\): "
                                          r"scale it down first, e.g. to 32x28$"):
        images.read_image(bomb, 1, (28, 32))
    from cnnlab.commands.predict import read_image

    with pytest.raises(CnnlabError, match="too large to decode safely"):
        read_image(str(bomb), 3, (28, 28))
    for cls in ("a", "b"):
        grey(tmp_path / "d" / cls / "0.png", 3)
    os.replace(bomb, tmp_path / "d" / "a" / "big.png")
    with pytest.warns(data.DataWarning, match=r"skipped 1 file\(s\) .*: a/big.png"):
        assert len(data.load(tmp_path / "d", "train", val_fraction=0)) == 2


def test_read_image_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="^no image file .*missing.png$"):
        images.read_image(tmp_path / "missing.png", 1, (4, 4))
    (tmp_path / "bad\n.png").write_text("text")
    with pytest.raises(CnnlabError, match=r"bad\\n\.png is not a readable image \(UnidentifiedImageError\)$"):
        images.read_image(tmp_path / "bad\n.png", 1, (4, 4))


# --- seeds and validation ---------------------------------------------------------------------------------------

def test_negative_seed_splits_like_its_value_modulo_2_64(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for cls in ("a", "b"):
        for i in range(10):
            grey(root / cls / f"{i}.png", 20 * (cls == "b") + i)
    minus = data.load(root, "val", val_fraction=0.3, seed=-1)
    wrapped = data.load(root, "val", val_fraction=0.3, seed=2**64 - 1)
    assert len(minus) == 6 and torch.equal(minus.images, wrapped.images)
    zero = data.load(root, "val", val_fraction=0.3, seed=0)
    assert not torch.equal(minus.images, zero.images)


def test_no_validation_split_with_val_fraction_zero(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for cls in ("a", "b"):
        grey(root / cls / "0.png", 3)
    assert len(data.load(root, "train", val_fraction=0)) == 2
    val = data.load(root, "val", val_fraction=0)
    assert len(val) == 0 and val.shape == (1, 6, 8) and val.num_classes == 2
    with pytest.raises(CnnlabError, match=r"holds out no image .*every class has one image.*or give 0 for no "
                                          r"validation"):
        data.load(root, "val", val_fraction=0.5)
