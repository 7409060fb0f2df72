"""Run records on disk: one JSON per run, written atomically, never overwritten silently."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_record(path: Path, record: dict, overwrite: bool = False) -> Path:
    """Write ``record`` as JSON at ``path``; refuse to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"result record {path} already exists; pass overwrite=True "
                              f"(CLI: --overwrite) to replace it")
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return path


def read_record(path: Path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"result record {path} is not valid JSON: {e}") from e
    for key in ("config", "epochs", "final"):
        if key not in record:
            raise ValueError(f"result record {path} lacks the key {key!r}")
    return record


def iter_records(root: Path):
    """All records below ``root`` (checkpoint folders excluded)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"results directory {root} does not exist")
    for path in sorted(root.rglob("*.json")):
        if "_checkpoints" in path.parts or path.name.startswith("."):
            continue
        yield path, read_record(path)
