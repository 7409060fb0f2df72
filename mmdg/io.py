"""Atomic file writes: through a temporary file in the same folder, then a rename.

Files are created with the user's umask (not mkstemp's 0600); a full disk is reported as
``no space left on device`` with the path.  The bottom floor: records, checkpoints and caches
all write through here.
"""
from __future__ import annotations

import errno
import io
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch


def _umask() -> int:
    """The process umask (read from /proc where it can be: setting it to read it races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(e, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException as e:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_error(e, path) from None
        raise


def write_error(e: OSError, path: Path) -> OSError:
    """``e`` as an OSError naming ``path`` (a full disk: ``no space left on device``)."""
    if e.errno == errno.ENOSPC:
        return OSError(errno.ENOSPC, f"no space left on device while writing {path}")
    return OSError(e.errno, f"cannot write {path}: {e.strerror or e}")


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def move_aside(path: Path, why: str) -> Path:
    """Rename a bad file to ``<name>.corrupt-<timestamp>`` (kept for inspection) and warn naming both."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, aside)
    warnings.warn(f"{path}: {why}; moved it aside to {aside.name}", stacklevel=2)
    return aside


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files a killed writer of ``path`` left (call while holding its run lock)."""
    path = Path(path)
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
