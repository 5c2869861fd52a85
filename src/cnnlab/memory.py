"""How much memory this process may still take, so a request too large for the machine fails in one line.

Without the check a data set decoded at ``--size 99999x99999`` asks the allocator for hundreds of GiB and
ends in a MemoryError traceback, or in the kernel's OOM killer, minutes later. Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CnnlabError

__all__ = ["available_bytes", "check_fits", "human_bytes"]

_CGROUP = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) and anything odd count as unknown


def available_bytes() -> int | None:
    """Memory available to this process now: the kernel's MemAvailable, capped by a cgroup v2 limit; None if
    neither can be read (the check is then skipped)."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, OSError, ValueError):
            pass
    limit, used = _read_int(_CGROUP / "memory.max"), _read_int(_CGROUP / "memory.current")
    if limit is not None and used is not None:
        found.append(max(0, limit - used))
    return min(found) if found else None


def human_bytes(n: float) -> str:
    """``n`` bytes as B, KiB, MiB, GiB or TiB with at most one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def check_fits(nbytes: int, what: str, fix: str) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` when the machine has less memory available."""
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise CnnlabError(f"{what} needs {human_bytes(nbytes)} of memory but only {human_bytes(avail)} is "
                          f"available; {fix}")
