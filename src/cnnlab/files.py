"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file cnnlab writes (checkpoints, weights, metrics, plots, reports, specs, exports) goes
through :func:`atomic_path`: the content is written to a temporary file beside the target, flushed
to disk, then moved over it with ``os.replace``. A crash, a full disk or an interrupt leaves the
old file in place and no temporary file behind. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import CnnlabError

__all__ = ["atomic_path", "write_bytes", "write_text"]


def tmp_path(path: Path) -> Path:
    """Where ``path`` is written first: ``NAME.tmp`` beside it, or ``STEM.tmp.SUFFIX`` for images,
    whose writers pick the format from the suffix."""
    if path.suffix.lower() in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        return path.with_name(f"{path.stem}.tmp{path.suffix}")
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on leaving, sync it to disk and
    move it over ``path``. On any failure the temporary file is removed and ``path`` is untouched;
    an ``OSError`` (full disk, no permission) becomes one line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CnnlabError(f"cannot write {path}: it is a directory; give a file name")
    if not path.parent.is_dir():
        raise CnnlabError(f"cannot write {path}: no directory {path.parent}; create it first")
    tmp = tmp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CnnlabError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
