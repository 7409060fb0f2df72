"""requirements.txt (exact pins), pyproject.toml (ranges) and environment.yml cannot drift apart."""
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.+\-]+)", line)
            assert m, f"requirements.txt line {line!r} is not an exact pin name==version"
            out[m.group(1).lower()] = m.group(2)
    return out


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_pin_satisfies_the_pyproject_range():
    p = pins()
    reqs = [Requirement(r) for r in project()["dependencies"]]
    reqs += [Requirement(r) for extra in project()["optional-dependencies"].values() for r in extra]
    for r in reqs:
        name = r.name.lower()
        assert name in p, f"pyproject.toml requires {name} but requirements.txt does not pin it"
        assert r.specifier.contains(p[name], prereleases=True), f"pin {name}=={p[name]} outside {r.specifier}"


def test_ranges_admit_the_gpu_image():
    deps = {Requirement(r).name: Requirement(r).specifier for r in project()["dependencies"]}
    for name, version in {"torch": "2.11.0", "torchvision": "0.26.0", "torchaudio": "2.11.0"}.items():
        assert deps[name].contains(version), f"{name} {version} (GPU image) not admitted by {deps[name]}"


def test_environment_yml_delegates_to_the_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert len(python) == 1
    version = python[0].split("=", 1)[1]
    assert SpecifierSet(project()["requires-python"]).contains(version + ".0")
    pip = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip == [["-r requirements.txt", "-e ."]], "environment.yml must only delegate to requirements.txt"
    assert [d for d in deps if isinstance(d, str)] == [python[0], "pip"], "no second source of pins"


def test_book_skips_hidden_and_tool_folders():
    """CI installs mmaction2 into .mmaction-ref, whose LICENSES.md sphinx read as an orphan page (-W failed)."""
    from sphinx.util.matching import Matcher

    excluded = Matcher(yaml.safe_load((ROOT / "_config.yml").read_text())["exclude_patterns"])
    # sphinx prunes a folder whose path matches a pattern; it never looks inside
    for folder in (".mmaction-ref", ".venv", ".venv-gpu", ".cache", ".ci", ".github", "_build", "results",
                   "tests", "notebooks", "mmdg", "book/executed/.ipynb_checkpoints"):
        assert excluded(folder), f"the book would read the files under {folder}/"
    assert not excluded("book") and not excluded("book/executed") and not excluded("book/intro.md")
