"""Batched augmentation: shape and dtype kept, seeded determinism, and each transform's geometry and statistics."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.data import augment as A
from cnnlab.errors import CnnlabError


def batch(n: int = 16, c: int = 3, h: int = 12, w: int = 10, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    x = torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(123), dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype) / 255


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


TRANSFORMS = {
    "hflip": lambda x, gen: A.hflip(x, 0.5, gen),
    "vflip": lambda x, gen: A.vflip(x, 0.5, gen),
    "affine": lambda x, gen: A.affine(x, rotation=30, shift=0.2, shear=10, zoom=0.2, generator=gen),
    "crop": lambda x, gen: A.random_crop(x, 4, generator=gen),
    "crop-reflect": lambda x, gen: A.random_crop(x, 3, "reflect", generator=gen),
    "erasing": lambda x, gen: A.random_erasing(x, 0.9, generator=gen),
    "erasing-block": lambda x, gen: A.random_erasing(x, 0.9, pixel_level=False, generator=gen),
    "pca": lambda x, gen: A.pca_jitter(x, 0.5, generator=gen),
    **{f"preset-{k}": A.preset(k) for k in A.PRESETS if k != "none"},
}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("name", TRANSFORMS)
def test_shape_dtype_kept_and_seeded(name: str, dtype: torch.dtype) -> None:
    x = batch(dtype=dtype)
    before = x.clone()
    f = TRANSFORMS[name]
    a, b, c = f(x, g(1)), f(x, g(1)), f(x, g(2))
    assert torch.equal(x, before), "the input batch is left alone"
    assert a.shape == x.shape and a.dtype == dtype and a.device == x.device
    assert torch.equal(a, b), "same seed, same result"
    assert not torch.equal(a, c), "another seed, another result"
    assert not torch.equal(a, x), "it changed something"
    if dtype == torch.float32 and name not in ("pca", "preset-imagenet"):  # colour jitter may leave 0-1 floats
        assert a.min() >= 0 and a.max() <= 1.0 + 1e-6


def test_global_generator_is_used_when_none_is_given() -> None:
    x = batch()
    torch.manual_seed(5)
    a = A.preset("keras")(x)
    torch.manual_seed(5)
    assert torch.equal(a, A.preset("keras")(x))


def test_flips_with_probability_one_and_zero() -> None:
    x = batch()
    assert torch.equal(A.hflip(x, 1.0), x.flip(-1)) and torch.equal(A.vflip(x, 1.0), x.flip(-2))
    assert torch.equal(A.hflip(x, 0.0), x)
    half = A.hflip(x, 0.5, g(0))
    flipped = sum(torch.equal(half[i], x[i].flip(-1)) for i in range(len(x)))
    assert 0 < flipped < len(x)


def _one(v: float) -> torch.Tensor:
    return torch.tensor([float(v)])


def test_warp_geometry_matches_exact_transforms() -> None:
    zero, one = _one(0), _one(1)
    sq = torch.arange(36.0).view(1, 1, 6, 6)
    assert torch.allclose(A.warp(sq, _one(90), zero, zero, zero, one, one), torch.rot90(sq, 1, (2, 3)), atol=1e-4)
    rect = torch.arange(60.0).view(1, 1, 6, 10)  # non-square: the [-1, 1] grid units must not distort
    assert torch.allclose(A.warp(rect, _one(180), zero, zero, zero, one, one), rect.flip(-1).flip(-2), atol=1e-4)
    shifted = A.warp(rect, zero, _one(2), _one(1), zero, one, one, fill="constant")
    expect = torch.zeros_like(rect)
    expect[..., :5, :8] = rect[..., 1:, 2:]
    assert torch.allclose(shifted, expect, atol=1e-3)
    # zoom 0.5 samples the centre at half spacing: output pixels 2 apart come from input pixels 1 apart.
    zoomed = A.warp(rect, zero, zero, zero, zero, _one(0.5), _one(0.5), interpolation="bilinear")
    assert torch.allclose(zoomed[0, 0, 1, 1:9:2], rect[0, 0, 2, 3:7] - 2.75, atol=1e-4)
    # shear keeps the centre row where it is and moves the others sideways
    s = torch.zeros(1, 1, 9, 9)
    s[..., :, 4] = 1.0
    sheared = A.warp(s, zero, zero, zero, _one(45), one, one, interpolation="nearest", fill="constant")
    assert sheared[0, 0, 4].argmax().item() == 4 and sheared[0, 0, 0].argmax().item() != 4


def test_affine_draws_stay_within_their_ranges() -> None:
    x = torch.zeros(64, 1, 21, 21)
    x[..., 10, 10] = 1.0  # one bright pixel at the centre
    out = A.affine(x, shift=(0.1, 0.2), fill="constant", interpolation="nearest", generator=g(0))
    ys, xs = (out[:, 0] > 0.5).nonzero(as_tuple=True)[1:]
    assert (ys - 10).abs().max() <= 3 and (xs - 10).abs().max() <= 5  # 0.1 * 21 and 0.2 * 21, rounded
    assert (xs - 10).abs().max() >= 3  # and they do move
    same = A.affine(x, rotation=0, generator=g(0))
    assert torch.equal(same, x)


def test_random_crop_takes_windows_of_the_padded_image() -> None:
    x = batch(n=32, c=2, h=8, w=8)
    out = A.random_crop(x, 2, generator=g(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert hits, f"sample {i} is not a crop"
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets vary across the batch
    assert torch.equal(A.random_crop(x, 0), x)


def test_random_erasing_rectangles_follow_the_paper() -> None:
    x = torch.full((400, 3, 32, 32), 128, dtype=torch.uint8)
    out = A.random_erasing(x, p=0.5, generator=g(0))
    changed = (out != 128).any(1)  # (N, H, W)
    erased = changed.flatten(1).any(1)
    assert 150 < erased.sum() < 250  # p = 0.5
    for m in changed[erased][:50]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert h * w >= m.sum()  # one rectangle (noise may equal 128 in a few pixels)
        assert 0.02 * 1024 * 0.9 <= h * w <= 0.4 * 1024
        assert 0.3 * 0.7 <= h / w <= 1 / 0.3 / 0.7
    block = A.random_erasing(x, p=1.0, pixel_level=False, values=(10, 20), generator=g(0))
    vals = block[block != 128]
    assert vals.min() >= 10 and vals.max() <= 20
    assert torch.equal(A.random_erasing(x, p=0.0, generator=g(0)), x)


def test_pca_jitter_shifts_each_image_along_the_basis_with_the_right_spread() -> None:
    x = torch.full((2000, 3, 2, 2), 0.5)
    out = A.pca_jitter(x, std=0.1, generator=g(0))
    shift = out - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)  # one colour per image
    vecs = torch.tensor(A.IMAGENET_EIGVEC)
    coeff = shift[:, :, 0, 0] @ vecs  # coordinates along the eigenvectors = alpha * lambda
    expected = 0.1 * torch.tensor(A.IMAGENET_EIGVAL)
    assert torch.allclose(coeff.std(0), expected, rtol=0.08)
    with pytest.raises(CnnlabError, match="needs 3 channels, the batch has 1"):
        A.pca_jitter(torch.zeros(2, 1, 4, 4))


def test_pca_basis_recovers_a_known_colour_covariance() -> None:
    gen = g(0)
    direction = torch.tensor([0.6, 0.0, 0.8])
    t = torch.randn(200, 1, 16, 16, generator=gen) * 40
    noise = torch.randn(200, 3, 16, 16, generator=gen) * 4
    images = (128 + t * direction.view(1, 3, 1, 1) + noise).clamp(0, 255).round().to(torch.uint8)
    vals, vecs = A.pca_basis(images, generator=g(1))
    assert vals[0] > 20 * vals[1] and vals[1] >= vals[2]
    assert abs(float(vecs[:, 0] @ direction)) > 0.999
    assert vals[0].item() == pytest.approx((40**2 + 4**2) / 255**2, rel=0.05)
    fitted = A.preset("imagenet").fit(images)
    assert fitted.config.eigvals[0] == pytest.approx(vals[0].item(), rel=0.05)


def test_normalisation_helpers_match_direct_computation() -> None:
    x = batch(n=50, c=3, h=5, w=7)
    xf = x.double() / 255
    mean, std = A.channel_stats(x, chunk=7)
    assert torch.allclose(mean.double(), xf.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(std.double(), xf.permute(1, 0, 2, 3).reshape(3, -1).std(1, unbiased=False), atol=1e-5)
    pm = A.pixel_mean(x, chunk=7)
    assert pm.shape == (3, 5, 7) and torch.allclose(pm.double(), xf.mean(0), atol=1e-6)
    from cnnlab.train.preprocess import Preprocess

    per_pixel = Preprocess.fit(x, "pixel")(x)
    assert per_pixel.dtype == torch.float32 and per_pixel.mean(0).abs().max() < 1e-5
    per_channel = Preprocess.fit(x, "channel")(x)
    assert torch.allclose(per_channel.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(Preprocess.fit(x, "scale")(x), x.float() / 255)


def test_config_validation_presets_and_repr() -> None:
    for bad, msg in ((dict(hflip=1.5), "hflip=1.5 is a probability"), (dict(rotation=-1), "rotation=-1 is negative"),
                     (dict(zoom=1.0), "scale by <= 0"), (dict(fill="wrap"), "unknown fill"),
                     (dict(interpolation="cubic"), "unknown interpolation")):
        with pytest.raises(CnnlabError, match=msg):
            A.AugmentConfig(**bad)
    with pytest.raises(CnnlabError, match="unknown augmentation 'cifr': did you mean 'cifar'"):
        A.preset("cifr")
    assert not A.preset("none").active and A.preset("cifar").active
    x = batch()
    assert A.preset("none")(x) is x
    assert repr(A.preset("cifar")) == "Augment(cifar: hflip=0.5, crop_padding=4)"
    assert set(A.describe()) == set(A.PRESETS)
    with pytest.raises(CnnlabError, match="needs a batch"):
        A.hflip(torch.zeros(3, 4, 4))


def test_keras_preset_uses_keras_units() -> None:
    c = A.preset("keras").config
    assert (c.rotation, c.shift, c.shear, c.zoom, c.hflip, c.fill) == (40, 0.2, 0.2, 0.2, 0.5, "nearest")
    # Keras' shear_range is in degrees: 0.2 degrees moves a corner of a 32-pixel image by under 0.06 px.
    assert 16 * math.tan(math.radians(0.2)) < 0.06


def test_crop_boxes_stay_inside_and_follow_the_inception_ranges() -> None:
    n, h, w = 8000, 200, 200
    top, left, bh, bw = A.crop_boxes(n, (h, w), generator=g(0)).T
    assert (top >= 0).all() and (left >= 0).all() and (bh >= 1).all() and (bw >= 1).all()
    assert (top + bh <= h).all() and (left + bw <= w).all()
    frac, aspect = (bh * bw).double() / (h * w), bw.double() / bh
    # The smallest box has sides of at least sqrt(0.08 * 40000 * 3/4) = 49 pixels, so rounding each side to a whole
    # pixel moves the area and the aspect ratio by at most 2 * 0.5 / 49 = 2%.
    assert frac.min() >= 0.08 * 0.98 and frac.max() <= 1.0
    assert aspect.min() >= 0.75 * 0.98 and aspect.max() <= 4 / 3 / 0.98
    assert frac.min() < 0.09 and frac.max() > 0.97 and aspect.min() < 0.76 and aspect.max() > 1.31  # ranges reached
    # Area is uniform: below 3/4 of a square image every box fits, so [0.1, 0.4) and [0.4, 0.7) hold as many boxes,
    # each 8000 * 0.3 / 0.92 / 0.858 = 3040, where 0.858 is the chance a draw fits: (E[min(r, 1/r)] - 0.08) / 0.92
    # with E[min(r, 1/r)] = (1 - 3/4) / ln(4/3) = 0.869. A log-uniform area would put 2.5 times more in the first.
    low, high = int(((frac >= 0.1) & (frac < 0.4)).sum()), int(((frac >= 0.4) & (frac < 0.7)).sum())
    assert 2850 < low < 3250 and abs(low - high) < 0.08 * low
    # Aspect is log-uniform on [3/4, 4/3], symmetric about 1 on a square image: mean log 0, sd 0.575 / sqrt(12).
    logs = aspect.log()
    assert abs(float(logs.mean())) < 0.01 and float(logs.std()) == pytest.approx(0.5754 / math.sqrt(12), rel=0.05)


def test_crop_boxes_fall_back_to_the_centre() -> None:
    # A 4x100 strip: an area of 90-100% (360-400 px) at an aspect of at most 4/3 is at least 16 pixels high, so no
    # draw fits; torchvision then takes the full height at the widest aspect, round(4 * 4/3) = 5, centred at 47.
    boxes = A.crop_boxes(50, (4, 100), scale=(0.9, 1.0), generator=g(0))
    assert boxes.tolist() == [[0, 47, 4, 5]] * 50
    # 4x5 at aspect 2-3: at least sqrt(20 * 2) = 6.3 pixels wide, never fits; the full width, round(5 / 2) = 2 high
    # (halves round to even, as Python's round), at row (4 - 2) // 2 = 1
    assert A.crop_boxes(3, (4, 5), scale=(1.0, 1.0), ratio=(2.0, 3.0), generator=g(0)).tolist() == [[1, 0, 2, 5]] * 3
    # an image whose own aspect is in range falls back to the whole of it (an area over 100% never fits)
    assert A.crop_boxes(3, (10, 10), scale=(1.5, 2.0), generator=g(0)).tolist() == [[0, 0, 10, 10]] * 3


def test_resized_crop_resizes_each_box_like_interpolate() -> None:
    x = batch(n=24, c=3, h=40, w=36, dtype=torch.float32) * 255
    boxes = A.crop_boxes(24, (40, 36), generator=g(1))
    flip = torch.arange(24) % 3 == 0
    out = A.resized_crop(x, boxes, (24, 20), flip)
    assert out.shape == (24, 3, 24, 20)
    for i, (t, left, bh, bw) in enumerate(boxes.tolist()):
        ref = torch.nn.functional.interpolate(x[i:i + 1, :, t:t + bh, left:left + bw], size=(24, 20), mode="bilinear",
                                              align_corners=False)[0]
        assert torch.allclose(out[i], ref.flip(-1) if flip[i] else ref, atol=2e-3), i
    # the whole image, not mirrored: the batch resized
    full = torch.tensor([[0, 0, 40, 36]] * 24)
    assert torch.allclose(A.resized_crop(x, full, (24, 20)), torch.nn.functional.interpolate(
        x, size=(24, 20), mode="bilinear", align_corners=False), atol=2e-3)
    # By hand: the box [10, 20] of the row [0, 10, 20, 30] stretched to 4 pixels samples at -0.25, 0.25, 0.75, 1.25
    # box pixels, clamped to the box: 10, 12.5, 17.5, 20 (the pixel 0 left of the box is never mixed in).
    row = torch.tensor([0.0, 10, 20, 30]).view(1, 1, 1, 4)
    assert A.resized_crop(row, torch.tensor([[0, 1, 1, 2]]), (1, 4)).flatten().tolist() == [10, 12.5, 17.5, 20]
    # uint8 in, uint8 out: the float result rounded
    u = x.round().to(torch.uint8)
    got = A.resized_crop(u, boxes, (24, 20), flip)
    assert got.dtype == torch.uint8 and (got.float() - A.resized_crop(u.float(), boxes, (24, 20), flip)).abs().max() <= 0.5


def test_random_resized_crop_flips_half_and_is_seeded() -> None:
    x = batch(n=400, c=3, h=16, w=16)
    # the whole image at its own size: each output is the image or its mirror
    out = A.random_resized_crop(x, (16, 16), scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g(0))
    same = torch.tensor([torch.equal(out[i], x[i]) for i in range(len(x))])
    mirrored = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))])
    assert bool((same ^ mirrored).all())
    assert 150 < int(mirrored.sum()) < 250  # p = 0.5: 200 +- 10 expected
    assert torch.equal(A.random_resized_crop(x, (16, 16), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0), x)
    y = batch(n=8, c=3, h=32, w=28)
    a, b, c = (A.random_resized_crop(y, (12, 10), generator=g(s)) for s in (5, 5, 6))
    assert a.shape == (8, 3, 12, 10) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
