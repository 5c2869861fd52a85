"""One image file to 8-bit pixels, the same way for the folder loader and for ``predict``.

Pillow's ``convert("L")`` clips 16-bit greyscale (modes ``I;16*`` and ``I``) at 255, so a 16-bit PNG
becomes almost all white; here those modes are scaled from 0-65535 to 0-255 first. Images too large for
Pillow's decompression-bomb limit are refused before their pixels are decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CnnlabError
from ..memory import check_fits
from ..text import safe_text

GREY = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIXTEEN_BIT = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)


def to_mode(im: Image.Image, mode: str) -> Image.Image:
    """``im`` as 8-bit ``L`` or ``RGB``; 16-bit greyscale is scaled (0-65535 -> 0-255, rounded), not clipped."""
    if im.mode in SIXTEEN_BIT:
        a = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        im = Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    return im if im.mode == mode else im.convert(mode)


def fit(im: Image.Image, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """``im`` converted to ``mode`` and, given ``size=(H, W)``, scaled to cover it and centre-cropped; HxW(xC)."""
    if size is not None:
        im.draft(mode, (size[1], size[0]))  # JPEG: decode at a reduced scale that still covers size
    im = to_mode(im, mode)
    if size is not None and im.size != (size[1], size[0]):
        im = ImageOps.fit(im, (size[1], size[0]), method=Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 ``(H, W)`` or ``(H, W, 3)``, or a one-line CnnlabError saying why it cannot be."""
    name = safe_text(str(path))
    h, w = size
    check_fits(h * w * channels * 5, f"an image of {h}x{w} (uint8, then float32)",  # pixels and the model's input
               "the model's input size is too large for this machine")
    try:
        with Image.open(path) as im:
            return fit(im, "L" if channels == 1 else "RGB", size)
    except FileNotFoundError:
        raise CnnlabError(f"no image file {name}") from None
    except Image.DecompressionBombError:
        raise CnnlabError(f"{name} is too large to decode safely (over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
                          f"pixels): scale it down first, e.g. to {w}x{h}") from None
    except UNREADABLE as e:
        raise CnnlabError(f"{name} is not a readable image ({type(e).__name__})") from None
