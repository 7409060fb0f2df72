#!/usr/bin/env python
"""Execute the book's notebooks with papermill in a profile.

Every chapter listed in ``_toc.yml`` as ``book/executed/<name>`` has its source in
``notebooks/<name>.ipynb``.  Profiles: ``book`` (the notebooks' own defaults: the
2-core CPU book), ``smoke`` (tiny sizes: CI and the regression goldens), ``gpu``
(the full runs); a profile's parameters live in ``notebooks/params/<profile>.yaml``
(``_all`` applies to every notebook, a notebook's name to that one).

  python scripts/run_notebooks.py --profile book                      # -> book/executed/
  python scripts/run_notebooks.py --profile smoke --golden --out tests/golden
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
VOLATILE_CELL_KEYS = ("papermill", "execution")


def toc_notebooks(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Names of the chapters rendered from executed notebooks, in book order."""
    def walk(node):
        if isinstance(node, dict):
            f = node.get("file")
            if isinstance(f, str) and f.startswith("book/executed/"):
                yield f.split("/")[-1]
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)
    return list(walk(yaml.safe_load(toc.read_text())))


def profile_parameters(profile: str, name: str) -> dict:
    if profile == "book":
        return {}
    path = ROOT / "notebooks" / "params" / f"{profile}.yaml"
    if not path.exists():
        raise SystemExit(f"error: no parameter file {path} for profile {profile!r}")
    table = yaml.safe_load(path.read_text()) or {}
    unknown = set(table) - set(toc_notebooks()) - {"_all"}
    if unknown:
        raise SystemExit(f"error: {path} names notebooks not in _toc.yml: {sorted(unknown)}")
    return {**(table.get("_all") or {}), **(table.get(name) or {})}


def finish(path: Path, golden: bool) -> None:
    """Hide parameter cells in the book; for goldens drop volatile metadata but keep outputs and counts."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.id = "injected-parameters"  # papermill draws a random id; keep goldens stable
        if not golden and ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
    nbformat.write(nb, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="book", choices=["book", "smoke", "gpu"])
    ap.add_argument("--out", default=str(ROOT / "book" / "executed"))
    ap.add_argument("--only", nargs="*", help="notebook names (default: all in _toc.yml)")
    ap.add_argument("--golden", action="store_true", help="write regression goldens (keep parameter cells)")
    a = ap.parse_args(argv)
    os.environ.pop("MPLBACKEND", None)  # a non-inline backend would silently drop every figure
    names = a.only or toc_notebooks()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        src = ROOT / "notebooks" / f"{name}.ipynb"
        if not src.exists():
            raise SystemExit(f"error: _toc.yml lists book/executed/{name} but {src} does not exist")
        params = profile_parameters(a.profile, name)
        dst = out / f"{name}.ipynb"
        t0 = time.time()
        try:
            pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3",
                                cwd=str(ROOT / "notebooks"), progress_bar=False)
            status = "ok"
        except pm.PapermillExecutionError as e:
            failed.append(name)
            status = f"FAILED: {e.ename}: {e.evalue}"
        if dst.exists():
            finish(dst, a.golden)
        print(f"[{a.profile}] {name}: {status} ({time.time() - t0:.1f} s)", flush=True)
    if failed:
        print(f"error: {len(failed)} notebook(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
