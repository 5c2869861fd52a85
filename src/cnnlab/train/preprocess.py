"""uint8 images -> model input, as one affine map and a zero pad, fitted on the training set.

Data stays uint8 in memory (a quarter of the float size); each batch is converted on the device
it trains on. The map travels in the checkpoint, so evaluation and prediction see exactly the
inputs training saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CnnlabError

Pad4 = tuple[int, int, int, int]  # left, right, top, bottom (F.pad order)


def fit_padding(data_hw: tuple[int, int], model_hw: tuple[int, int], mode: str = "auto") -> Pad4:
    """Zero padding that centres data in a larger design input.

    ``auto`` pads only when the data is at most 8 pixels smaller each way: LeNet-5 reads MNIST's
    28x28 digits centred in a 32x32 field. Anything else runs at the data's own size."""
    dh, dw = model_hw[0] - data_hw[0], model_hw[1] - data_hw[1]
    if mode == "native" or (mode == "auto" and not (0 <= dh <= 8 and 0 <= dw <= 8)):
        return (0, 0, 0, 0)
    if dh < 0 or dw < 0:
        raise CnnlabError(f"cannot pad {data_hw[0]}x{data_hw[1]} images to the smaller design input "
                          f"{model_hw[0]}x{model_hw[1]}; use --fit native or --size")
    return (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)


@dataclass
class Preprocess:
    """``x -> pad(x) * scale + shift``; ``scale``/``shift`` broadcast over the padded (C, H, W).

    ``resize``: image files are first resized to this (H, W) (scale to cover, centre crop) and then
    centre-cropped to ``data_shape``, as torchvision's ``Resize(256), CenterCrop(224)``; None: they
    are resized to ``data_shape`` directly. A batch still at ``resize`` (a store prepared at that size)
    is cut to its centre here, batch by batch, so the set is never cropped whole."""

    mode: str
    data_shape: tuple[int, int, int]
    pad: Pad4
    scale: torch.Tensor
    shift: torch.Tensor
    resize: tuple[int, int] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.data_shape
        left, right, top, bottom = self.pad
        return (c, h + top + bottom, w + left + right)

    @classmethod
    def fit(cls, images: torch.Tensor, mode: str, pad: Pad4 = (0, 0, 0, 0), chunk: int = 4096) -> Preprocess:
        """Statistics of the training images, summed in chunks so float copies stay small."""
        n, c, h, w = images.shape
        if mode == "scale":
            scale = torch.full((c, 1, 1), 1 / 255)
            return cls(mode, (c, h, w), pad, scale, torch.zeros(c, 1, 1))
        if mode == "imagenet":
            return cls.imagenet((c, h, w), pad)
        s1 = torch.zeros(c, h, w, dtype=torch.float64)
        s2 = torch.zeros(c, dtype=torch.float64)
        chunk = max(1, min(chunk, (64 << 20) // max(1, c * h * w * 8)))  # float64 copies of at most 64 MiB
        for i in range(0, n, chunk):
            x = images[i:i + chunk].double()
            s1 += x.sum(0)
            s2 += (x * x).sum((0, 2, 3))
        pixel_mean = s1 / max(n, 1)
        mean = pixel_mean.mean((1, 2))
        std = (s2 / max(n * h * w, 1) - mean * mean).clamp_min(1e-6).sqrt()
        if mode == "channel":
            scale, shift = 1 / std, -mean / std
            return cls(mode, (c, h, w), pad, scale.float().view(c, 1, 1), shift.float().view(c, 1, 1))
        # pixel: the ResNet notebook's x/255 - mean(x/255) over the training set, per pixel.
        shift = F.pad(-pixel_mean / 255, pad)
        return cls(mode, (c, h, w), pad, torch.full((c, 1, 1), 1 / 255), shift.float())

    @classmethod
    def imagenet(cls, data_shape: tuple[int, int, int], pad: Pad4 = (0, 0, 0, 0)) -> Preprocess:
        """torchvision's ``Normalize(IMAGENET_MEAN, IMAGENET_STD)`` after ``/255``: the input map
        every published torchvision weight file was trained with."""
        if data_shape[0] != 3:
            raise CnnlabError(f"--normalize imagenet is for RGB images; these have {data_shape[0]} channels")
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        return cls("imagenet", data_shape, pad, (1 / (255 * std)).view(3, 1, 1), (-mean / std).view(3, 1, 1))

    def to(self, device: Any) -> Preprocess:
        return Preprocess(self.mode, self.data_shape, self.pad, self.scale.to(device), self.shift.to(device),
                          self.resize)

    @property
    def read_size(self) -> tuple[int, int]:
        """The size image files are read at, before the centre crop to the data shape."""
        return self.resize or (self.data_shape[1], self.data_shape[2])

    def reading(self, size: tuple[int, int]) -> Preprocess:
        """This map for images held at ``size``: batches of that size are cut to their centre data shape first."""
        h, w = self.data_shape[1:]
        if size[0] < h or size[1] < w:
            raise CnnlabError(f"cannot crop {h}x{w} from {size[0]}x{size[1]} images; give a --crop no larger than "
                              "--size")
        return self if tuple(size) == (h, w) else replace(self, resize=(int(size[0]), int(size[1])))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is not None and tuple(x.shape[-2:]) == tuple(self.resize) != tuple(self.data_shape[1:]):
            x = center_crop(x, self.data_shape[1:])
        if any(self.pad):
            x = F.pad(x, self.pad)
        return torch.addcmul(self.shift, x.float(), self.scale)

    def state_dict(self) -> dict[str, Any]:
        d = {"mode": self.mode, "data_shape": list(self.data_shape), "pad": list(self.pad),
             "scale": self.scale.cpu(), "shift": self.shift.cpu()}
        if self.resize is not None:
            d["resize"] = list(self.resize)
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Preprocess:
        """The map saved by :meth:`state_dict`, checked: it comes from a file."""
        if not isinstance(d, dict):
            raise CnnlabError("the input map is not a dict")
        mode, shape, pad = d.get("mode"), d.get("data_shape"), d.get("pad")
        if mode not in MODES:
            raise CnnlabError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if not _ints(shape, 3, 1):
            raise CnnlabError(f"data_shape {shape!r} is not three positive integers")
        if not _ints(pad, 4, 0):
            raise CnnlabError(f"pad {pad!r} is not four integers >= 0")
        resize = d.get("resize")
        if resize is not None and not (_ints(resize, 2, 1) and resize[0] >= shape[1] and resize[1] >= shape[2]):
            raise CnnlabError(f"resize {resize!r} is not two integers at least the data size {shape[1]}x{shape[2]}")
        prep = cls(mode, tuple(shape), tuple(pad), d.get("scale"), d.get("shift"),  # type: ignore[arg-type]
                   tuple(resize) if resize is not None else None)
        c, h, w = prep.input_shape
        for name in ("scale", "shift"):
            t = getattr(prep, name)
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise CnnlabError(f"{name} is not a float tensor")
            if t.dim() != 3 or t.shape[0] != c or tuple(t.shape[1:]) not in ((1, 1), (h, w)):
                raise CnnlabError(f"{name} has shape {tuple(t.shape)}; the input {c}x{h}x{w} needs ({c}, 1, 1) "
                                  f"or ({c}, {h}, {w})")
            if not bool(torch.isfinite(t).all()):
                raise CnnlabError(f"{name} holds NaN or infinite values")
        return prep


def center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre ``size`` of ``(..., H, W)`` images (torchvision's ``CenterCrop``: the odd pixel
    goes to the bottom and right)."""
    h, w = images.shape[-2:]
    ch, cw = size
    if ch > h or cw > w:
        raise CnnlabError(f"cannot crop {ch}x{cw} from {h}x{w} images; give a --crop no larger than --size")
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return images[..., top:top + ch, left:left + cw]


MODES = ("scale", "channel", "pixel", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _ints(v: Any, n: int, low: int) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == n
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= low for x in v))
