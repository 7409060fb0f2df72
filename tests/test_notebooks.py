"""Notebook conventions, enforced: sources, parameters, goldens, and that nbval catches changes."""
import json
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
from run_notebooks import toc_notebooks  # noqa: E402

SOURCES = sorted((ROOT / "notebooks").glob("*.ipynb"))
GOLDENS = sorted((ROOT / "tests" / "golden").glob("*.ipynb"))
READS_OTHER_CHAPTERS = {"11_reproduction_report"}
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


def test_nbval_fails_when_an_output_changes(tmp_path):
    """Perturb one stored output of the cheapest golden; nbval must report a failure."""
    # chapters that only read other chapters' records need those runs first: not self-contained
    standalone = [p for p in GOLDENS if p.stem not in READS_OTHER_CHAPTERS]
    golden = min(standalone, key=lambda p: p.stat().st_size)
    nb = json.loads(golden.read_text())
    textual = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
               if o.get("output_type") == "stream" or "text/plain" in o.get("data", {})]
    out = textual[0]
    changed = ["this output was changed by the test\n"]
    if out["output_type"] == "stream":
        out["text"] = changed
    else:
        out["data"]["text/plain"] = changed
    bad = tmp_path / golden.name
    bad.write_text(json.dumps(nb))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
           "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), str(bad)]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert res.returncode == 1, res.stdout[-2000:]
    assert "this output was changed by the test" in res.stdout
