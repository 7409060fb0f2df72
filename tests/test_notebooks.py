"""Notebook conventions, enforced: sources, parameters, goldens, and that nbval catches changes."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from run_notebooks import RECORDS, toc_notebooks  # noqa: E402

SOURCES = sorted((ROOT / "notebooks").glob("*.ipynb"))
GOLDENS = sorted((ROOT / "tests" / "golden").glob("*.ipynb"))
NBVAL = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg")]
PARAM_LINE = re.compile(r"^(\w+)\s*:\s*[\w\[\], |.]+\s*=\s*.+#\s*\S.*$")


def code_sources(nb, skip_injected=True):
    return [c.source for c in nb.cells if c.cell_type == "code"
            and not (skip_injected and "injected-parameters" in c.metadata.get("tags", []))]


def test_toc_and_sources_match():
    names = toc_notebooks()
    assert names, "_toc.yml lists no executed notebooks"
    assert sorted(names) == sorted(p.stem for p in SOURCES), "every source notebook must be in _toc.yml"
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", n) for n in names), "notebooks are named NN_name"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_source_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "first cell must be a # Title"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"exactly one 'parameters' cell, found {len(tagged)}"
    for line in tagged[0].source.splitlines():
        if line.strip() and not line.startswith("#"):
            assert PARAM_LINE.match(line), f"parameter line needs 'name: type = value  # help': {line!r}"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, "source notebooks are stored without outputs"
    params = pm.inspect_notebook(str(path))
    for name, p in params.items():
        assert p["inferred_type_name"] != "None" and p["help"], f"parameter {name} lacks a type or help"
    after = next(c for c in nb.cells[nb.cells.index(tagged[0]) + 1:] if c.cell_type == "code")
    assert f'parameters("{path.stem}", globals()' in after.source, \
        "the cell after the parameters cell must check them: parameters(<notebook name>, globals())"
    for name, p in params.items():
        if name == "results_dir" or name.endswith("_results"):
            assert p["default"].strip("'\"").startswith("results/book/"), f"{name}: the book profile's records"


@pytest.mark.parametrize("profile", ["smoke", "gpu"])
def test_profile_parameters_exist_in_notebooks(profile):
    path = ROOT / "notebooks" / "params" / f"{profile}.yaml"
    table = yaml.safe_load(path.read_text()) or {}
    known = {p.stem: set(pm.inspect_notebook(str(p))) for p in SOURCES}
    for name, params in table.items():
        targets = known if name == "_all" else {name: known[name]}
        for nb_name, names in targets.items():
            missing = set(params or {}) - names
            if name != "_all":
                assert not missing, f"{path.name}: {name} has no parameters {sorted(missing)}"
        for key, value in (params or {}).items():
            if key == "results_dir" or key.endswith("_results"):
                assert str(value).startswith(f"results/{profile}/"), f"{path.name}: {name}.{key} outside results/{profile}/"


def test_every_notebook_has_a_golden():
    assert sorted(p.stem for p in GOLDENS) == sorted(p.stem for p in SOURCES), "run `make goldens`"


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: p.stem)
def test_golden_is_current_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    src = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    assert code_sources(nb) == code_sources(src), "golden is stale: regenerate with `make goldens`"
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "goldens keep execution counts"
    assert any(c.outputs for c in code), "goldens keep outputs"
    for c in nb.cells:
        assert not {"papermill", "execution"} & set(c.metadata), "volatile metadata must be stripped"


def test_goldens_render_committed_records():
    """Every record folder a golden reads is below tests/golden/records and holds records."""
    for path in GOLDENS:
        nb = nbformat.read(path, as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        folders = re.findall(r"^(?:results_dir|\w+_results) = ['\"]([^'\"]+)['\"]$",
                             injected[0].source if injected else "", re.M)
        for folder in folders:
            assert folder.startswith(RECORDS + "/"), f"{path.name}: records in {folder}, not below {RECORDS}"
            assert any((ROOT / folder).rglob("*.json")), f"{path.name}: no records in {folder}: run `make goldens`"


ABSOLUTE = re.compile(r"(?<![\w.~])/(?:work|home|root|Users|mnt|scratch|tmp)/[\w.+-]")
PATTERN_FILES = {"tests/nbval_sanitize.cfg"}  # regexes that match such paths, not paths


def test_no_absolute_machine_paths_in_tracked_files_or_golden_outputs():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\0")
    found = []
    for name in filter(None, tracked):
        path = ROOT / name
        if name in PATTERN_FILES or not path.is_file() or path.stat().st_size > 20_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {text[m.start():m.start() + 60]!r}" for m in ABSOLUTE.finditer(text)]
    assert not found, "absolute machine paths (use paths relative to the checkout):\n" + "\n".join(found[:20])
    assert ABSOLUTE.search("ran in /tm" + "p/abc and /wor" + "k/main/x")  # the check can fail


def run_nbval(paths, tmp_path, startup=""):
    """nbval on goldens, in place, with an IPython startup file run in the kernel before the notebook."""
    ipython = tmp_path / ("ipython-perturbed" if startup else "ipython")
    (ipython / "profile_default" / "startup").mkdir(parents=True)
    (ipython / "profile_default" / "startup" / "00-perturb.py").write_text(startup)
    env = {**os.environ, "IPYTHONDIR": str(ipython), "PYTHONPATH": str(ROOT)}
    return subprocess.run(NBVAL + [str(p) for p in paths], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


# real edits of library code, applied in the kernel before the chapter runs
PERTURB = '''
import inspect
import mmdg.experiments.collect as collect
import mmdg.strategies.gmp as gmp

def perturb(module, name, old, new):
    src = inspect.getsource(getattr(module, name))
    assert src.count(old) == 1, (name, old)
    exec(compile(src.replace(old, new), module.__file__, "exec"), module.__dict__)

perturb(gmp, "suppression", "torch.tanh(alpha * x)", "torch.tanh(1.1 * alpha * x)")  # GMP Eqs. 9-10
perturb(collect, "summarize", "grouped.std(ddof=1)", "grouped.std(ddof=0)")  # the tables' std over seeds
'''


def test_nbval_passes_unchanged_and_fails_when_library_code_changes(tmp_path):
    """Chapter 4 draws GMP's coefficients (suppression), Chapter 1 tabulates mean ± std over seeds from its
    committed records (summarize): both pass as they are, and both fail once that code changes."""
    goldens = [ROOT / "tests" / "golden" / f"{n}.ipynb" for n in ("01_overview", "04_gmp_explained")]
    clean = run_nbval(goldens, tmp_path)
    assert clean.returncode == 0, clean.stdout[-3000:]
    perturbed = run_nbval(goldens, tmp_path, PERTURB)
    assert perturbed.returncode == 1, perturbed.stdout[-3000:]
    failed = re.findall(r"^FAILED tests/golden/(\w+)\.ipynb::Cell (\d+)", perturbed.stdout, re.M)
    assert {n for n, _ in failed} == {"01_overview", "04_gmp_explained"}, perturbed.stdout[-3000:]


def test_golden_comparison_matches_what_nbval_compares():
    from run_notebooks import compared, golden_parameters, sanitizer
    clean = sanitizer()
    cell = {"outputs": [{"output_type": "stream", "name": "stdout", "text": "Measured on 2026-01-02 "},
                        {"output_type": "stream", "name": "stdout", "text": "in 3.5 s\n"},
                        {"output_type": "display_data", "metadata": {"a": 1},
                         "data": {"text/plain": ["<Figure size 10x10>"], "image/png": "AAAA"}}]}
    same = {"outputs": [{"output_type": "stream", "name": "stdout", "text": "Measured on 2025-12-31 in 9 s\n"},
                        {"output_type": "display_data", "metadata": {},
                         "data": {"text/plain": "<Figure size 10x10>", "image/png": "BBBB"}}]}
    assert compared(cell, clean) == compared(same, clean)  # dates, durations, pixels and metadata aside
    other = {"outputs": [same["outputs"][0], {"output_type": "display_data", "metadata": {},
                                              "data": {"text/plain": "<Figure size 10x11>"}}]}
    assert compared(cell, clean) != compared(other, clean)
    assert golden_parameters({"results_dir": "results/smoke/foley_av", "epochs": 1, "x": "results/book/a"}) == {
        "results_dir": RECORDS + "/foley_av", "epochs": 1, "x": "results/book/a"}
