"""Batched augmentation: every transform takes a whole ``(N, C, H, W)`` batch on any device and returns one
of the same shape and dtype, with per-sample random parameters.

Random parameters (O(N) numbers) are drawn on the CPU from the ``generator`` given (else torch's global
one), so a seed gives the same augmentation on CPU and GPU; per-pixel noise is drawn on the batch's device
from a generator seeded by that CPU stream. Value scale: a uint8 batch is 0-255; a float batch is taken as
0-1 unless ``value_range`` says otherwise (e.g. 255 for floats that were not divided).

Sources: Keras ``ImageDataGenerator`` (rotation/shift/shear/zoom as one affine map, its units: degrees,
fractions of the size, degrees, ``[1-z, 1+z]``); CIFAR pad-and-crop (He et al. 2016); random-resized crops
(Szegedy et al. 2015, torchvision's ``RandomResizedCrop``: area 8-100%, aspect 3/4-4/3; the one transform that
changes the size, from the stored size to the one the model reads); random erasing
(Zhong et al. 2017, with seed 003's parameters p=0.5, area 0.02-0.4, aspect 0.3-1/0.3, per-pixel values);
RGB intensity / PCA colour jitter (Krizhevsky et al. 2012, section 4.1, alpha ~ N(0, 0.1)); per-channel
and per-pixel statistics (seed 003's ``subtract_pixel_mean``; the normalising map itself is
``train/preprocess.py``, which travels in checkpoints).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from ..errors import CnnlabError

Gen = torch.Generator | None
# ImageNet RGB eigen-decomposition on 0-1 pixels, as used since fb.resnet.torch (eigenvectors are columns).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
_PADDING = {"nearest": "border", "constant": "zeros", "reflect": "reflection"}
_CROP_FILL = {"constant": "constant", "reflect": "reflect", "nearest": "replicate"}


def _check(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise CnnlabError(f"augmentation needs a batch (N, C, H, W), got shape {tuple(x.shape)}")


def _uniform(n: int, lo: float, hi: float, g: Gen) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo


def _chance(n: int, p: float, g: Gen) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def _back(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return to the input's dtype; uint8 is rounded and clamped rather than wrapped."""
    if like.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(like.dtype)


def _scale(x: torch.Tensor, value_range: float | None) -> float:
    return float(value_range) if value_range is not None else (255.0 if x.dtype == torch.uint8 else 1.0)


def _device_generator(x: torch.Tensor, g: Gen) -> torch.Generator:
    dg = torch.Generator(device=x.device)
    dg.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    return dg


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.to(a.device).view(-1, 1, 1, 1), a, b)


def hflip(x: torch.Tensor, p: float = 0.5, generator: Gen = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check(x)
    return _where(_chance(len(x), p, generator), x.flip(-1), x)


def vflip(x: torch.Tensor, p: float = 0.5, generator: Gen = None) -> torch.Tensor:
    """Mirror each image top-bottom with probability ``p`` (not for digits or upright photos)."""
    _check(x)
    return _where(_chance(len(x), p, generator), x.flip(-2), x)


def _pair(v: float | tuple[float, float]) -> tuple[float, float]:
    return (float(v), float(v)) if isinstance(v, int | float) else (float(v[0]), float(v[1]))


def affine(x: torch.Tensor, rotation: float = 0.0, shift: float | tuple[float, float] = 0.0, shear: float = 0.0,
           zoom: float | tuple[float, float] = 0.0, fill: str = "nearest", interpolation: str = "bilinear",
           generator: Gen = None) -> torch.Tensor:
    """Random rotation, shift, shear and zoom in one ``affine_grid`` + ``grid_sample`` pass, Keras-style.

    ``rotation``: degrees, uniform in +-rotation. ``shift``: fraction of (height, width), or one for both.
    ``shear``: degrees (Keras' unit: its ``shear_range=0.2`` is 0.2 degrees). ``zoom``: z for ``[1-z, 1+z]``
    or ``(lo, hi)``, drawn separately for x and y as Keras does. ``fill``: nearest | constant (0) | reflect.
    """
    _check(x)
    n, _, h, w = x.shape
    g = generator
    sh, sw = _pair(shift)
    zlo, zhi = (1 - zoom, 1 + zoom) if isinstance(zoom, int | float) else zoom
    angle = _uniform(n, -rotation, rotation, g)
    ty, tx = _uniform(n, -sh, sh, g) * h, _uniform(n, -sw, sw, g) * w
    s = _uniform(n, -shear, shear, g)
    zx, zy = _uniform(n, zlo, zhi, g), _uniform(n, zlo, zhi, g)
    return warp(x, angle, tx, ty, s, zx, zy, fill, interpolation)


def warp(x: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, shear: torch.Tensor,
         zx: torch.Tensor, zy: torch.Tensor, fill: str = "nearest", interpolation: str = "bilinear") -> torch.Tensor:
    """Apply per-sample affine maps given explicitly (degrees, pixels, zoom factors); :func:`affine` draws them.

    Each output pixel (x, y), measured from the image centre, samples the input at
    ``rotate(angle) . shift(tx, ty) . shear . zoom(zx, zy)`` applied to it, the order Keras composes them in.
    """
    _check(x)
    if fill not in _PADDING:
        raise CnnlabError(f"unknown fill '{fill}': use {', '.join(_PADDING)}")
    n, _, h, w = x.shape
    a, s = torch.deg2rad(angle.double()), torch.deg2rad(shear.double())
    one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack([v.double().expand(n) for v in r], -1) for r in rows], -2)

    m = (mat([[a.cos(), -a.sin(), zero], [a.sin(), a.cos(), zero], [zero, zero, one]])
         @ mat([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
         @ mat([[one, -s.sin(), zero], [zero, s.cos(), zero], [zero, zero, one]])
         @ mat([[zx, zero, zero], [zero, zy, zero], [zero, zero, one]]))
    # Pixel units -> affine_grid's [-1, 1] units (align_corners=False: the centre is 0, an edge is +-1).
    to_norm = torch.tensor([[2 / w, 0, 0], [0, 2 / h, 0], [0, 0, 1]], dtype=torch.float64)
    from_norm = torch.tensor([[w / 2, 0, 0], [0, h / 2, 0], [0, 0, 1]], dtype=torch.float64)
    theta = (to_norm @ m @ from_norm)[:, :2].to(x.device, torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode=interpolation, padding_mode=_PADDING[fill], align_corners=False)
    return _back(out, x)


def random_crop(x: torch.Tensor, padding: int = 4, fill: str = "constant", generator: Gen = None) -> torch.Tensor:
    """Pad by ``padding`` pixels and crop back to the original size at a random offset (CIFAR style)."""
    _check(x)
    if fill not in _CROP_FILL:
        raise CnnlabError(f"unknown fill '{fill}': use {', '.join(_CROP_FILL)}")
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode=_CROP_FILL[fill])
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cols = (ox[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def crop_boxes(n: int, hw: tuple[int, int], scale: tuple[float, float] = (0.08, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10, generator: Gen = None) -> torch.Tensor:
    """``(n, 4)`` boxes ``(top, left, height, width)`` of random-resized crops in ``hw`` images (Szegedy et al. 2015,
    torchvision's ``RandomResizedCrop.get_params``): area a uniform fraction ``scale`` of the image, aspect ratio
    (width / height) log-uniform in ``ratio``, rounded to whole pixels; the first of ``tries`` draws that fits is
    placed uniformly, and an image with none that fits takes its centre (the whole image, narrowed to ``ratio``).

    Drawn for the whole batch at once on the CPU, so a seed gives the same boxes on any device."""
    h, w = hw
    g = generator
    area = (torch.rand(n, tries, generator=g, dtype=torch.float64) * (scale[1] - scale[0]) + scale[0]) * h * w
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.rand(n, tries, generator=g, dtype=torch.float64) * (hi - lo) + lo)
    bw, bh = (area * aspect).sqrt().round().long(), (area / aspect).sqrt().round().long()
    fits = (bw > 0) & (bw <= w) & (bh > 0) & (bh <= h)
    pick = fits.to(torch.uint8).argmax(1, keepdim=True)
    bw, bh = bw.gather(1, pick)[:, 0], bh.gather(1, pick)[:, 0]
    top = (torch.rand(n, generator=g, dtype=torch.float64) * (h - bh + 1)).floor().long()
    left = (torch.rand(n, generator=g, dtype=torch.float64) * (w - bw + 1)).floor().long()
    # torchvision's fallback: the whole image, or its centre at the nearest aspect ratio in range
    fw, fh = w, h
    if w / h < min(ratio):
        fh = int(round(w / min(ratio)))
    elif w / h > max(ratio):
        fw = int(round(h * max(ratio)))
    none = ~fits.any(1)
    bh, bw = bh.masked_fill(none, fh), bw.masked_fill(none, fw)
    top, left = top.masked_fill(none, (h - fh) // 2), left.masked_fill(none, (w - fw) // 2)
    return torch.stack([top, left, bh, bw], 1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], flip: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Cut ``boxes`` (``(N, 4)``: top, left, height, width) out of the batch, resize each to ``size`` bilinearly and
    mirror the images ``flip`` marks, in one ``affine_grid`` + ``grid_sample`` pass on the batch's device.

    Each output pixel samples where ``F.interpolate(box, size, mode='bilinear', align_corners=False)`` would, with
    the coordinates clamped to the box's own pixels, so the result is that of cutting each box and resizing it
    (without antialiasing), mirrored or not."""
    _check(x)
    n, c, h, w = x.shape
    top, left, bh, bw = (boxes[:, k].double() for k in range(4))
    sign = 1.0 - 2.0 * flip.double() if flip is not None else torch.ones(n, dtype=torch.float64)
    zero = torch.zeros(n, dtype=torch.float64)
    # output [-1, 1] -> input [-1, 1] (align_corners=False): scale by the box's share, centre on the box's centre
    theta = torch.stack([torch.stack([sign * bw / w, zero, (2 * left + bw) / w - 1], 1),
                         torch.stack([zero, bh / h, (2 * top + bh) / h - 1], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, torch.float32), [n, c, *size], align_corners=False)
    # the centres of the box's first and last pixels: interpolation never reaches outside the box
    low = torch.stack([(2 * left + 1) / w - 1, (2 * top + 1) / h - 1], 1)
    high = torch.stack([(2 * (left + bw) - 1) / w - 1, (2 * (top + bh) - 1) / h - 1], 1)
    grid = torch.max(torch.min(grid, high.to(x.device, torch.float32).view(n, 1, 1, 2)),
                     low.to(x.device, torch.float32).view(n, 1, 1, 2))
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _back(out, x)


def random_resized_crop(x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: float = 0.5, tries: int = 10,
                        generator: Gen = None) -> torch.Tensor:
    """Inception-style training crops: a random box per image (:func:`crop_boxes`), resized bilinearly to ``size``
    and mirrored left-right with probability ``flip``; returns ``(N, C, *size)`` in the input's dtype."""
    _check(x)
    boxes = crop_boxes(len(x), (x.shape[2], x.shape[3]), scale, ratio, tries, generator)
    return resized_crop(x, boxes, size, _chance(len(x), flip, generator))


def random_erasing(x: torch.Tensor, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                   ratio: tuple[float, float] = (0.3, 1 / 0.3), pixel_level: bool = True,
                   values: tuple[float, float] | None = None, value_range: float | None = None,
                   generator: Gen = None, tries: int = 16) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017): with probability ``p`` fill one random rectangle with noise.

    As in the paper and seed 003, area and aspect ratio are drawn, then a top-left corner, and the draw is
    rejected until the rectangle fits; here ``tries`` candidates per image are drawn at once and the first
    that fits is used. ``values``: noise range, default the full value range; ``pixel_level``: fresh noise
    per pixel and channel, else one value per rectangle.
    """
    _check(x)
    n, c, h, w = x.shape
    g = generator
    s = (torch.rand(n, tries, generator=g, dtype=torch.float64) * (area[1] - area[0]) + area[0]) * h * w
    r = torch.rand(n, tries, generator=g, dtype=torch.float64) * (ratio[1] - ratio[0]) + ratio[0]
    ew, eh = (s / r).sqrt().floor().long(), (s * r).sqrt().floor().long()
    left = (torch.rand(n, tries, generator=g, dtype=torch.float64) * w).floor().long()
    top = (torch.rand(n, tries, generator=g, dtype=torch.float64) * h).floor().long()
    fits = (left + ew <= w) & (top + eh <= h)
    pick = fits.to(torch.uint8).argmax(1, keepdim=True)
    apply = _chance(n, p, g) & fits.any(1)
    ew, eh, left, top = (t.gather(1, pick) for t in (ew, eh, left, top))
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    mask = ((ys >= top[:, :, None]) & (ys < (top + eh)[:, :, None]) & (xs >= left[:, :, None])
            & (xs < (left + ew)[:, :, None]) & apply.view(n, 1, 1))
    lo, hi = values if values is not None else (0.0, _scale(x, value_range))
    dg = _device_generator(x, g)
    mask = mask.to(x.device).unsqueeze(1).expand(n, c, h, w)
    if pixel_level:  # noise only for the erased pixels: a rectangle covers a fifth of the image on average
        noise = torch.rand(int(mask.sum()), generator=dg, device=x.device) * (hi - lo) + lo
    else:
        noise = (torch.rand(n, 1, 1, 1, generator=dg, device=x.device) * (hi - lo) + lo).expand(n, c, h, w)[mask]
    return _back(x.to(torch.float32, copy=True).masked_scatter_(mask, noise), x)


def pca_basis(images: torch.Tensor, max_pixels: int = 1_000_000, generator: Gen = None) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the RGB covariance of 0-1 pixels.

    Krizhevsky et al. compute this over the training set; a random sample of ``max_pixels`` pixels gives
    the same 3 x 3 matrix to three decimals at a fraction of the cost.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise CnnlabError(f"PCA colour jitter needs RGB images (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    idx = torch.randint(0, n * h * w, (min(max_pixels, n * h * w),), generator=generator)
    idx = idx.to(images.device)
    # Gather the sampled pixels only: a channel-first reshape would copy the whole set (a mapped store too).
    pix = images[idx // (h * w), :, (idx % (h * w)) // w, idx % w].T.double().cpu()
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    vals, vecs = torch.linalg.eigh(torch.cov(pix / scale))
    return vals.flip(0).float(), vecs.flip(1).float()


def pca_jitter(x: torch.Tensor, std: float = 0.1, eigvals: torch.Tensor | tuple[float, ...] = IMAGENET_EIGVAL,
               eigvecs: torch.Tensor | tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC,
               value_range: float | None = None, generator: Gen = None) -> torch.Tensor:
    """AlexNet's RGB intensity jitter: add ``P (alpha * lambda)`` to every pixel, ``alpha ~ N(0, std)`` per image.

    ``eigvals``/``eigvecs``: the RGB PCA of the training set on 0-1 pixels (:func:`pca_basis`); the default
    is ImageNet's. uint8 results are clamped to 0-255; float ones are not (as in the paper).
    """
    _check(x)
    if x.shape[1] != 3:
        raise CnnlabError(f"PCA colour jitter needs 3 channels, the batch has {x.shape[1]}: use a preset "
                          "without it (e.g. 'mnist') for greyscale images")
    vals = torch.as_tensor(eigvals, dtype=torch.float32)
    vecs = torch.as_tensor(eigvecs, dtype=torch.float32)
    alpha = torch.randn(len(x), 3, generator=generator) * std
    shift = (alpha * vals) @ vecs.T * _scale(x, value_range)
    return _back(x.float() + shift.to(x.device).view(-1, 3, 1, 1), x)


def _chunks(images: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    return [images[i:i + chunk].double() for i in range(0, len(images), chunk)]


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of 0-1 pixels, accumulated in float64 chunks so memory stays bounded."""
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    s = torch.zeros(images.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for b in _chunks(images, chunk):
        b = b / scale
        s += b.sum((0, 2, 3)).cpu()
        s2 += (b * b).sum((0, 2, 3)).cpu()
    count = images.numel() / images.shape[1]
    mean = s / count
    return mean.float(), (s2 / count - mean * mean).clamp_min(0).sqrt().float()


def pixel_mean(images: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """The mean image ``(C, H, W)`` on 0-1 pixels: what seed 003 subtracts (``subtract_pixel_mean``)."""
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    total = sum((b.sum(0).cpu() for b in _chunks(images, chunk)), torch.zeros(images.shape[1:], dtype=torch.float64))
    return (total / (len(images) * scale)).float()


@dataclass(frozen=True)
class AugmentConfig:
    """What :class:`Augment` does; a zero disables a step. Units as in Keras' ImageDataGenerator."""

    hflip: float = 0.0  # probability of a left-right mirror
    vflip: float = 0.0  # probability of a top-bottom mirror
    rotation: float = 0.0  # degrees, +-
    shift: float | tuple[float, float] = 0.0  # fraction of (height, width), +-
    shear: float = 0.0  # degrees, +-
    zoom: float | tuple[float, float] = 0.0  # z -> [1-z, 1+z], or (lo, hi)
    fill: str = "nearest"  # outside the image after rotation/shift/shear/zoom: nearest | constant | reflect
    interpolation: str = "bilinear"  # bilinear | nearest
    crop_padding: int = 0  # pad-and-crop, pixels
    crop_fill: str = "constant"  # constant | reflect | nearest
    erase: float = 0.0  # probability of random erasing
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_ratio: tuple[float, float] = (0.3, 1 / 0.3)
    erase_pixel_level: bool = True
    pca_std: float = 0.0  # std of AlexNet's alpha; 0.1 in the paper
    eigvals: tuple[float, ...] = IMAGENET_EIGVAL
    eigvecs: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC
    value_range: float | None = None  # None: 255 for uint8 batches, 1 for float ones

    def __post_init__(self) -> None:
        for f in ("hflip", "vflip", "erase"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise CnnlabError(f"augmentation {f}={getattr(self, f)} is a probability: give a value in [0, 1]")
        for f in ("rotation", "shear", "crop_padding", "pca_std"):
            if getattr(self, f) < 0:
                raise CnnlabError(f"augmentation {f}={getattr(self, f)} is negative: give a value >= 0")
        zlo, _ = (1 - self.zoom, 0) if isinstance(self.zoom, int | float) else self.zoom
        if zlo <= 0:
            raise CnnlabError(f"augmentation zoom={self.zoom} would scale by <= 0: keep it below 1")
        if self.fill not in _PADDING or self.crop_fill not in _CROP_FILL:
            raise CnnlabError(f"unknown fill '{self.fill}'/'{self.crop_fill}': use nearest, constant or reflect")
        if self.interpolation not in ("bilinear", "nearest"):
            raise CnnlabError(f"unknown interpolation '{self.interpolation}': use bilinear or nearest")

    @property
    def geometric(self) -> bool:
        return bool(self.rotation or any(_pair(self.shift)) or self.shear or self.zoom != 0.0)


class Augment:
    """A configured augmentation: ``Augment(config)(batch, generator) -> batch``, same shape and dtype.

    Order: affine (rotation, shift, shear, zoom), pad-and-crop, flips, PCA colour jitter, random erasing
    (last, as Zhong et al. apply it).
    """

    def __init__(self, config: AugmentConfig | None = None, name: str = "") -> None:
        self.config = config or AugmentConfig()
        self.name = name

    def __call__(self, x: torch.Tensor, generator: Gen = None) -> torch.Tensor:
        c, g = self.config, generator
        _check(x)
        if c.geometric:
            x = affine(x, c.rotation, c.shift, c.shear, c.zoom, c.fill, c.interpolation, g)
        if c.crop_padding:
            x = random_crop(x, c.crop_padding, c.crop_fill, g)
        if c.hflip:
            x = hflip(x, c.hflip, g)
        if c.vflip:
            x = vflip(x, c.vflip, g)
        if c.pca_std:
            x = pca_jitter(x, c.pca_std, c.eigvals, c.eigvecs, c.value_range, g)
        if c.erase:
            x = random_erasing(x, c.erase, c.erase_area, c.erase_ratio, c.erase_pixel_level,
                               value_range=c.value_range, generator=g)
        return x

    @property
    def active(self) -> bool:
        """False when the call returns its input unchanged, so a trainer can skip it."""
        c = self.config
        return bool(c.geometric or c.crop_padding or c.hflip or c.vflip or c.pca_std or c.erase)

    def fit(self, images: torch.Tensor, generator: Gen = None) -> Augment:
        """Like Keras' ``datagen.fit``: a copy whose PCA colour jitter uses these images' RGB basis."""
        if not self.config.pca_std:
            return self
        vals, vecs = pca_basis(images, generator=generator)
        cfg = replace(self.config, eigvals=tuple(vals.tolist()), eigvecs=tuple(map(tuple, vecs.tolist())))
        return Augment(cfg, self.name)

    def __repr__(self) -> str:
        default = AugmentConfig()
        changed = [f"{f.name}={getattr(self.config, f.name)!r}" for f in fields(self.config)
                   if getattr(self.config, f.name) != getattr(default, f.name)]
        return f"Augment({self.name or 'custom'}: {', '.join(changed) or 'nothing'})"


PRESETS: dict[str, tuple[AugmentConfig, str]] = {
    "none": (AugmentConfig(), "no augmentation"),
    "mnist": (AugmentConfig(rotation=10, shift=0.1, zoom=0.1, fill="constant"),
              "digits: rotation +-10 deg, shifts +-10%, zoom +-10%, no flips"),
    "cifar": (AugmentConfig(crop_padding=4, hflip=0.5), "pad 4 + random 32x32 crop, horizontal flip (He et al.)"),
    "cifar-erasing": (AugmentConfig(crop_padding=4, hflip=0.5, erase=0.5),
                      "cifar + random erasing p=0.5, area 0.02-0.4, aspect 0.3-3.3 (Zhong et al.; seed 003)"),
    "imagenet": (AugmentConfig(hflip=0.5, pca_std=0.1),
                 "horizontal flip + RGB PCA colour jitter, alpha ~ N(0, 0.1) (AlexNet section 4.1)"),
    "keras": (AugmentConfig(rotation=40, shift=0.2, shear=0.2, zoom=0.2, hflip=0.5, fill="nearest"),
              "seed 003's ImageDataGenerator: rotation 40, shifts 0.2, shear 0.2 (degrees, Keras' unit), "
              "zoom 0.2, horizontal flip, fill nearest"),
}


def preset(name: str) -> Augment:
    """A named augmentation (see ``PRESETS``)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CnnlabError(f"unknown augmentation '{name}': {hint}use one of {', '.join(PRESETS)}")
    return Augment(PRESETS[name][0], name)


def describe() -> dict[str, str]:
    """Preset names and one line on each, for ``--help`` texts."""
    return {k: v[1] for k, v in PRESETS.items()}


__all__ = ["PRESETS", "Augment", "AugmentConfig", "affine", "channel_stats", "crop_boxes", "describe", "hflip",
           "pca_basis", "pca_jitter", "pixel_mean", "preset", "random_crop", "random_erasing", "random_resized_crop",
           "resized_crop", "vflip", "warp"]
