"""Run records on disk: one JSON per run, written atomically, never overwritten silently.

Files are created with the user's umask (not mkstemp's 0600); a full disk is reported as
``no space left on device`` with the path; JSON never holds NaN or Infinity (they are written as
``null``).  A run in progress holds a lock file (holder's pid and host) next to its checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import socket
import warnings
from pathlib import Path

from ..io import atomic_write_bytes, write_error


def json_ready(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def dumps(obj) -> bytes:
    return (json.dumps(json_ready(obj), indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def write_record(path: Path, record: dict, overwrite: bool = False) -> Path:
    """Write ``record`` as JSON at ``path``; refuse to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"result record {path} already exists; pass overwrite=True "
                              f"(CLI: --overwrite) to replace it")
    atomic_write_bytes(path, dumps(record))
    return path


class BadRecord(ValueError):
    """A result record that is not valid JSON or lacks what every record has."""


def read_record(path: Path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRecord(f"result record {path} is not valid JSON: {e}") from None
    if not isinstance(record, dict):
        raise BadRecord(f"result record {path} holds a {type(record).__name__}, not a JSON object")
    for key in ("config", "epochs", "final"):
        if key not in record:
            raise BadRecord(f"result record {path} lacks the key {key!r}")
    return record


def check_run_record(path: Path, record: dict) -> dict:
    """``record`` if its config names the benchmark, method, target and seed, else a BadRecord."""
    cfg = record["config"]
    missing = [k for k in ("benchmark", "method", "target", "seed") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise BadRecord(f"result record {path}: its config lacks {missing}")
    return record


def iter_records(root: Path, bad: list | None = None):
    """All records below ``root`` (checkpoint folders and hidden files excluded) as (path, record).

    An unreadable record is skipped with a warning naming it, and appended to ``bad`` as
    ``(path, reason)`` if given; it never stops the listing.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"results directory {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"results directory {root} is a file, not a directory")
    for path in sorted(root.rglob("*.json")):
        if "_checkpoints" in path.parts or path.name.startswith("."):
            continue
        try:
            record = check_run_record(path, read_record(path))
        except (BadRecord, OSError) as e:
            warnings.warn(f"skipping {e}", stacklevel=2)
            if bad is not None:
                bad.append((path, str(e)))
            continue
        yield path, record


# ---------------------------------------------------------------- run locks

class RunLocked(RuntimeError):
    """The run is held by another live process."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``with RunLock(path):`` holds ``path`` (JSON: pid, host) for this process.

    A lock held by a live process raises :class:`RunLocked`; one whose holder on this host is
    gone (or that cannot be read) is taken over.  A lock from another host is respected: remove
    it by hand if that host's run is dead.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.host = socket.gethostname()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("tmp", "stale"):  # left by a process killed while taking the lock
            for old in self.path.parent.glob(f".{self.path.name}.*.{suffix}"):
                pid = old.name.split(".")[-2]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    old.unlink(missing_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            for attempt in range(5):  # another sweep may remove the (empty) folder in between
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the umask applies
                    break
                except FileNotFoundError:
                    if attempt == 4:
                        raise
            try:
                os.write(fd, json.dumps({"pid": os.getpid(), "host": self.host}).encode())
            finally:
                os.close(fd)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise write_error(e, self.path) from None
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)  # atomic: fails if the lock exists
                    return
                except FileExistsError:
                    holder = self.holder()
                    if holder is not None and (holder.get("host") != self.host or _pid_alive(int(holder["pid"]))):
                        raise RunLocked(f"run lock {self.path} is held by pid {holder['pid']} on host "
                                        f"{holder['host']}" + ("" if holder["host"] == self.host else
                                                               " (remove the file if that run is dead)"))
                    self._take_over(holder)
            raise RunLocked(f"run lock {self.path}: could not take it over")
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over(self, stale: dict | None) -> None:
        """Remove the lock of a dead holder; if another process replaced it meanwhile, put theirs back."""
        aside = self.path.with_name(f".{self.path.name}.{os.getpid()}.stale")
        try:
            os.rename(self.path, aside)  # atomic: of two processes taking it over, one moves it
        except FileNotFoundError:
            return
        if RunLock(aside).holder() != stale:  # a live lock taken in between: restore it
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        holder = self.holder()
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == self.host:
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
