"""Imports point one way: every import inside mmdg/ (module level or in a function) goes to the
same layer or one below.

Layers, bottom to top (a module may import its own layer and those below it):

0. ``mmdg`` (the package's version), ``registry``, ``hparams``, ``io``, ``optim``, ``feature_stats``,
   ``distributed``, ``code_version``: helpers
   that two layers above need
1. ``data``
2. ``models``
3. ``objectives``
4. ``strategies``
5. ``methods`` (objectives + a strategy, with their hyperparameters)
6. ``evaluation``, ``diagnostics``, ``trunk_cache``: what runs a trained model or prepares its inputs
7. ``train`` (the trainer)
8. ``experiments``, ``flops``: sweeps, records, measurements
9. ``plots``, ``notebook``: what the book's chapters call
10. ``__main__`` (the CLI)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmdg"

LAYERS: list[tuple[str, ...]] = [
    ("mmdg", "registry", "hparams", "io", "optim", "feature_stats", "distributed", "code_version"),
    ("data",),
    ("models",),
    ("objectives",),
    ("strategies",),
    ("methods",),
    ("evaluation", "diagnostics", "trunk_cache"),
    ("train",),
    ("experiments", "flops"),
    ("plots", "notebook"),
    ("__main__",),
]
LAYER = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_modules(path: Path, root: Path) -> list[tuple[int, list[str]]]:
    """``(line, dotted module parts)`` of every import of the package in ``path``, relative ones resolved."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
                if node.module is None:                                 # from . import a, b
                    found += [(node.lineno, target + [a.name]) for a in node.names]
                    continue
            else:
                target = node.module.split(".")
            found.append((node.lineno, target))
    return [(line, parts) for line, parts in found if parts[0] == root.name]


def room(parts: list[str]) -> str:
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(root: Path) -> list[str]:
    """One line per import from a higher layer, and per module no layer names."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        mine = room(module_name(path, root))
        if mine not in LAYER:
            problems.append(f"{path.relative_to(root.parent)}: module {mine!r} is in no layer (add it to LAYERS)")
            continue
        for line, parts in imported_modules(path, root):
            theirs = room(parts)
            if theirs not in LAYER:
                continue                                   # e.g. 'from . import __version__' inside mmdg
            if LAYER[theirs] > LAYER[mine]:
                problems.append(f"{path.relative_to(root.parent)}:{line}: {mine} (layer {LAYER[mine]}) imports "
                                f"{'.'.join(parts)} (layer {LAYER[theirs]})")
    return problems


def test_imports_point_one_way():
    problems = upward_imports(PACKAGE)
    assert not problems, "upward imports:\n" + "\n".join(problems)


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mmdg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_catches_a_planted_upward_import(tmp_path):
    root = _plant(tmp_path, {"__init__.py": "", "data/__init__.py": "", "data/base.py": "import torch\n",
                             "data/bad.py": "def f():\n    from ..experiments.results import atomic_torch_save\n",
                             "experiments/__init__.py": "", "experiments/results.py": "from ..data.base import x\n",
                             "models/__init__.py": "from .. import methods\n", "methods.py": "import mmdg.train\n",
                             "train.py": "from .data import base\nfrom .methods import resolve\n"})
    problems = upward_imports(root)
    assert problems == [
        "mmdg/data/bad.py:2: data (layer 1) imports mmdg.experiments.results (layer 8)",
        "mmdg/methods.py:1: methods (layer 5) imports mmdg.train (layer 7)",
        "mmdg/models/__init__.py:1: models (layer 2) imports mmdg.methods (layer 5)",
    ]


def test_the_checker_names_a_module_in_no_layer(tmp_path):
    root = _plant(tmp_path, {"__init__.py": "", "newroom.py": "x = 1\n"})
    assert upward_imports(root) == ["mmdg/newroom.py: module 'newroom' is in no layer (add it to LAYERS)"]


@pytest.mark.parametrize("rooms", LAYERS)
def test_every_layer_names_something_that_exists(rooms):
    for r in rooms:
        assert r == "mmdg" or (PACKAGE / r).is_dir() or (PACKAGE / f"{r}.py").exists(), r
