"""Small helpers shared by the book's notebooks (paths, seeding, display)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def repo_root(start: Path | None = None) -> Path:
    """The checkout containing this package (where ``pyproject.toml`` is), or the CWD."""
    for d in [Path(start or Path.cwd()).resolve(), *Path(start or Path.cwd()).resolve().parents,
              Path(__file__).resolve().parents[1]]:
        if (d / "pyproject.toml").exists() and (d / "mmdg").is_dir():
            return d
    return Path.cwd()


def repo_path(path: str | os.PathLike) -> Path:
    """``path`` as given if absolute, else relative to the repository root (notebooks run from anywhere)."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p


def setup(seed: int = 0, threads: int | None = 2) -> None:
    """Seed, fix the CPU thread count (reproducible float reductions) and set plot/table styles."""
    import matplotlib.pyplot as plt
    import pandas as pd
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(min(threads, os.cpu_count() or threads))
    plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.4, 3.6), "axes.grid": True,
                         "grid.alpha": 0.3})
    pd.set_option("display.precision", 2)
