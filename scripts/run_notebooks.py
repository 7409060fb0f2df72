#!/usr/bin/env python
"""Execute the book's notebooks with papermill in a profile.

Every chapter listed in ``_toc.yml`` as ``book/executed/<name>`` has its source in
``notebooks/<name>.ipynb``.  Profiles: ``book`` (the notebooks' own defaults: the
2-core CPU book), ``smoke`` (tiny sizes: CI and the regression goldens), ``gpu``
(the full runs); a profile's parameters live in ``notebooks/params/<profile>.yaml``
(``_all`` applies to every notebook, a notebook's name to that one).

  python scripts/run_notebooks.py --profile book                      # -> book/executed/
  python scripts/run_notebooks.py --profile smoke --golden --out tests/golden

Goldens (``--golden``) are the regression checks of ``make test`` (``pytest --nbval``). What they
compare must be the same on any machine, but a few epochs of training end in different last bits
on another CPU, vector kernel or thread count, and so in different accuracies. So:

- their runs write records below ``tests/golden/records/`` (committed; wiped and rewritten by each
  full ``--golden`` run), and the goldens' parameters point there: when nbval re-executes a golden,
  every record exists and each table and figure is rendered from the same committed numbers;
- each golden is then executed a second time with other float kernels and one thread
  (``PERTURBED``); a cell whose outputs differ is tagged ``nbval-ignore-output`` in the golden and
  listed: nbval still runs it (an exception fails the check) but does not compare its outputs.
"""
from __future__ import annotations

import argparse
import configparser
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
VOLATILE_CELL_KEYS = ("papermill", "execution")
RECORDS = "tests/golden/records"  # the goldens' run records (committed)
IGNORE_TAG = "nbval-ignore-output"
# the second golden execution: portable vector kernels, no AVX in MKL / oneDNN, one thread
PERTURBED = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# output keys nbval does not compare (its defaults without nbdime)
NOT_COMPARED = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}


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


def golden_parameters(params: dict) -> dict:
    """The smoke profile's record folders (``results/smoke/...``) moved below ``RECORDS``."""
    return {k: (RECORDS + v[len("results/smoke"):] if isinstance(v, str) and v.startswith("results/smoke/") else v)
            for k, v in params.items()}


def sanitizer(cfg: Path = ROOT / "tests" / "nbval_sanitize.cfg"):
    """The replacements nbval applies before it compares (``--nbval-sanitize-with``)."""
    parser = configparser.ConfigParser()
    parser.read(cfg)
    rules = [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]

    def clean(text: str) -> str:
        for rx, rep in rules:
            text = rx.sub(rep, text)
        return text
    return clean


def compared(cell, clean) -> list:
    """What nbval compares of a cell's outputs: streams joined per name, then every other key."""
    streams, rest = {}, []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            streams[out["name"]] = streams.get(out["name"], "") + out["text"]
            continue
        items = {**{k: v for k, v in out.items() if k != "data"}, **out.get("data", {})}
        rest.append({k: clean(v if isinstance(v, str) else "".join(v) if isinstance(v, list) else str(v))
                     for k, v in items.items() if k not in NOT_COMPARED})
    return [{n: clean(t)} for n, t in sorted(streams.items())] + rest


def mark_unstable(golden: Path) -> list[int]:
    """Execute ``golden`` again under ``PERTURBED``; tag the cells whose compared outputs differ."""
    saved = {k: os.environ.get(k) for k in PERTURBED}
    os.environ.update(PERTURBED)  # the kernel papermill starts inherits them
    try:
        with tempfile.TemporaryDirectory() as tmp:
            again = Path(tmp) / golden.name
            pm.execute_notebook(str(golden), str(again), kernel_name="python3", cwd=str(golden.parent),
                                progress_bar=False)
            other = nbformat.read(again, as_version=4)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nb = nbformat.read(golden, as_version=4)
    clean, unstable = sanitizer(), []
    for i, (cell, rerun) in enumerate(zip(nb.cells, other.cells)):
        if cell.cell_type == "code" and compared(cell, clean) != compared(rerun, clean):
            unstable.append(i)
            tags = cell.metadata.get("tags", [])
            if IGNORE_TAG not in tags:
                cell.metadata["tags"] = tags + [IGNORE_TAG]
    nbformat.write(nb, golden)
    return unstable


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
    ap.add_argument("--golden", action="store_true",
                    help="write regression goldens: keep parameter cells, records below " + RECORDS
                         + ", tag cells whose outputs vary with float kernels")
    a = ap.parse_args(argv)
    os.environ.pop("MPLBACKEND", None)  # a non-inline backend would silently drop every figure
    names = a.only or toc_notebooks()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.golden and not a.only:
        shutil.rmtree(ROOT / RECORDS, ignore_errors=True)  # every golden record comes from this code
    failed = []
    for name in names:
        src = ROOT / "notebooks" / f"{name}.ipynb"
        if not src.exists():
            raise SystemExit(f"error: _toc.yml lists book/executed/{name} but {src} does not exist")
        params = profile_parameters(a.profile, name)
        if a.golden:
            params = golden_parameters(params)
        dst = out / f"{name}.ipynb"
        t0 = time.time()
        try:
            # a golden runs in its own folder, as nbval will run it (relative paths then agree)
            pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3",
                                cwd=str(out if a.golden else ROOT / "notebooks"), progress_bar=False)
            status = "ok"
        except pm.PapermillExecutionError as e:
            failed.append(name)
            status = f"FAILED: {e.ename}: {e.evalue}"
        if dst.exists():
            finish(dst, a.golden)
        if a.golden and status == "ok":
            try:
                unstable = mark_unstable(dst)
                status += f"; outputs of cells {unstable} vary with float kernels: not compared" if unstable else ""
            except pm.PapermillExecutionError as e:
                failed.append(name)
                status = f"FAILED with float kernels {PERTURBED}: {e.ename}: {e.evalue}"
        print(f"[{a.profile}] {name}: {status} ({time.time() - t0:.1f} s)", flush=True)
    if failed:
        print(f"error: {len(failed)} notebook(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
