"""The version of the code that produces a run record's numbers, as a content hash.

A git commit names the whole checkout: a table whose records span several commits may still come
from one training code (only prose or tables changed in between), or not.  ``code_version()`` hashes
the library files that determine what a run computes and records (data, models, objectives,
strategies, methods, the trainer, evaluation, diagnostics, packaged resources) and leaves out those
that only launch runs or show their results (``experiments``, the CLI, notebook and plot helpers,
the FLOP counter).  Records with equal versions were trained by the same code.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
#: paths below the package that do not change what a run computes
NOT_TRAINING = ("experiments", "__main__.py", "notebook.py", "plots.py", "flops.py", "code_version.py",
                "resources/paper_numbers.yaml")


def training_files(root: Path = PACKAGE) -> list[Path]:
    """The files hashed by :func:`code_version`, sorted by their path below ``root``."""
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if (p.is_file() and not any(rel.as_posix() == x or rel.as_posix().startswith(x + "/") for x in NOT_TRAINING)
                and "__pycache__" not in rel.parts
                and p.suffix not in (".pyc", ".pyo")):
            files.append(p)
    return files


def code_version(root: Path = PACKAGE) -> str:
    """12 hex digits of SHA-256 over the relative path and bytes of every :func:`training_files` entry."""
    h = hashlib.sha256()
    for p in training_files(root):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def current() -> str:
    """:func:`code_version` of the installed package, computed once per process."""
    return code_version()
