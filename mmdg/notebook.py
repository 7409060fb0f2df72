"""Small helpers shared by the book's notebooks (paths, parameters, seeding, display).

A chapter's ``parameters`` cell declares each parameter once as ``name: type = default  # help``
(so ``papermill --help-notebook`` lists it typed and documented); the next cell calls
:func:`parameters`, which checks what papermill injected against those declarations.
"""
from __future__ import annotations

import ast
import html
import json
import os
from pathlib import Path

import torch
import yaml

from .train import _git_commit

TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
PROFILES = ("book", "smoke", "gpu")  # notebooks/params/<profile>.yaml; book is the notebooks' defaults
COMMITTED = ("book", "gpu")  # profiles whose results/<profile>/ folders are committed
OPEN_BOX = 6  # a parameter box with at most this many rows starts unfolded
UNCOMMITTED = "results/custom"  # where record folders of runs with other parameters go


class ParameterError(ValueError):
    """A notebook parameter of the wrong type or value, or one the notebook does not declare."""


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


def declared_parameters(source: str) -> dict[str, tuple[str, object, str]]:
    """``{name: (type name, default, help)}`` of a parameters cell's ``name: type = default  # help`` lines."""
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value):
            raise ParameterError(f"parameters cell: expected 'name: type = default  # help' lines, got "
                                 f"{ast.unparse(node)!r}")
        rest = lines[node.end_lineno - 1][node.end_col_offset:].strip()
        out[node.target.id] = (ast.unparse(node.annotation), ast.literal_eval(node.value), rest.lstrip("#").strip())
    return out


def notebook_parameters(notebook: str) -> dict[str, tuple[str, object, str]]:
    """The declared parameters of ``notebooks/<notebook>.ipynb`` (its cell tagged ``parameters``)."""
    path = repo_root() / "notebooks" / f"{notebook}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no notebook {path}: parameters() needs the chapter's file name, e.g. "
                                f"'01_overview'")
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{path.name}: expected one cell tagged 'parameters', found {len(cells)}")
    return declared_parameters("".join(cells[0]["source"]))


def _kind(value) -> str:
    return type(value).__name__


def coerce(name: str, value, type_name: str, default=None):
    """``value`` as the declared type; strings are parsed as JSON/YAML for lists and dicts (papermill ``-p``).

    A list parameter whose default holds items of one type (int, float, str, bool) must hold that type too
    (an int is accepted where a float is declared). Raises :class:`ParameterError` naming the parameter,
    the expected type and the value got.
    """
    base = type_name.split("[")[0]  # list[int] is checked as a list (items as in the default)
    if base not in TYPES:
        raise ParameterError(f"parameter {name}: unsupported annotation {type_name!r}; use one of {sorted(TYPES)}")
    kind = TYPES[base]
    item = None
    if kind is list and default:
        kinds = {type(v) for v in default}
        item = kinds.pop() if len(kinds) == 1 and next(iter(kinds)) in (int, float, str, bool) else None
    expected = f"a list of {item.__name__}" if item else ("a " if kind is not int else "an ") + base
    got = value
    if isinstance(value, str) and kind is not str:
        try:
            value = kind(value) if kind in (int, float) else yaml.safe_load(value)
        except (ValueError, yaml.YAMLError) as e:
            why = str(e).splitlines()[0]
            raise ParameterError(f"parameter {name}: expected {expected}, got {got!r} ({why})") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        hint = "; papermill -p reads numbers as numbers, -r NAME VALUE passes text" if kind is str else ""
        raise ParameterError(f"parameter {name}: expected {expected}, got {got!r} ({_kind(value)}{hint})")
    if item is not None:
        if item is float:
            value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        bad = [v for v in value if not isinstance(v, item) or (item is not bool and isinstance(v, bool))]
        if bad:
            raise ParameterError(f"parameter {name}: expected {expected}, got {got!r} "
                                 f"({bad[0]!r} is {_kind(bad[0])})")
    return value


def choose(name: str, value, allowed) -> None:
    """Raise :class:`ParameterError` unless ``value`` (or every item of a list ``value``) is in ``allowed``."""
    allowed = list(allowed)
    for v in value if isinstance(value, list) else [value]:
        if v not in allowed:
            raise ParameterError(f"parameter {name}: expected {'items' if isinstance(value, list) else 'one'} "
                                 f"of {allowed}, got {value!r} ({v!r} is unknown)")


def _kernel():
    """The running IPython shell (a notebook kernel), or None in tests and scripts."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def injected_names() -> list[str]:
    """Names assigned by papermill's injected cell (``# Parameters`` ...) in this IPython session, if any."""
    ip = _kernel()
    history = ip.user_ns.get("In", []) if ip is not None else []
    names = []
    for src in history:
        if src.startswith("# Parameters\n"):
            names = [t.id for node in ast.parse(src).body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)]
    return names


def profile_parameters(notebook: str, profile: str) -> dict:
    """The parameters ``notebook`` runs with in ``profile``: its defaults, then ``notebooks/params/<profile>.yaml``."""
    values = {k: d for k, (_, d, _) in notebook_parameters(notebook).items()}
    path = repo_root() / "notebooks" / "params" / f"{profile}.yaml"
    if profile != "book" and path.exists():
        table = yaml.safe_load(path.read_text()) or {}
        values.update({**(table.get("_all") or {}), **(table.get(notebook) or {})})
    return values


def is_record_folder(name: str) -> bool:
    """Parameters named ``results_dir`` or ``*_results`` hold record folders."""
    return name == "results_dir" or name.endswith("_results")


def run_profiles(notebook: str, values: dict) -> list[str]:
    """The profiles (of :data:`PROFILES`) whose parameters ``values`` are, record folders aside
    (the goldens keep the smoke profile's values with their own folders); ``[]`` for a custom run."""
    def settings(params: dict) -> dict:
        return {k: v for k, v in params.items() if not is_record_folder(k)}
    return [p for p in PROFILES if settings(values) == settings(profile_parameters(notebook, p))]


def _shown(value) -> str:
    return value if isinstance(value, str) else repr(value)


class ParameterBox:
    """What a chapter ran with: its resolved parameters, the profile they match and the code commit.

    Shown as a foldable HTML table in the book (``text/html``) and as ``name = value`` lines in plain text;
    neither holds a path of the machine or a time, so executed notebooks compare across machines (the
    commit reads ``code commit <hash>``, which tests/nbval_sanitize.cfg masks).
    """

    def __init__(self, notebook: str, values: dict, profiles: list[str], commit: str):
        self.declared = notebook_parameters(notebook)
        self.values, self.commit = values, commit
        self.profile = (f"profile {profiles[0]}" if len(profiles) == 1 else
                        f"profiles {' and '.join(profiles)} (their values agree)" if profiles else "profile custom")

    def title(self) -> str:
        return f"Parameters of this run: {self.profile}, code commit {self.commit}"

    def __repr__(self) -> str:
        return self.title() + "\n" + "\n".join(f"  {k} = {_shown(v)}" for k, v in self.values.items())

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(_shown(v))}</code></td>"
                       f"<td>{html.escape(self.declared[k][2])}</td></tr>" for k, v in self.values.items())
        unfold = " open" if len(self.values) <= OPEN_BOX else ""
        return (f'<details class="mmdg-parameters"{unfold}><summary>{html.escape(self.title())}</summary>'
                f"<table><thead><tr><th>parameter</th><th>value</th><th>meaning</th></tr></thead>"
                f"<tbody>{rows}</tbody></table></details>")


def show(obj) -> None:
    """Display ``obj`` when running in an IPython kernel (a notebook); do nothing elsewhere (tests, scripts)."""
    if _kernel() is not None:
        from IPython.display import display
        display(obj)


def record_folder(notebook: str, folder: str, values: dict) -> str:
    """``folder``, or its twin under ``results/custom/`` when it is a committed profile's folder
    (``results/book/...``, ``results/gpu/...``) and ``values`` are not that profile's parameters."""
    parts = Path(folder).parts
    if Path(folder).is_absolute() or len(parts) < 2 or parts[0] != "results" or parts[1] not in COMMITTED:
        return folder
    if values == profile_parameters(notebook, parts[1]):
        return folder
    return str(Path(UNCOMMITTED, *parts[2:]))


def parameters(notebook: str, namespace: dict, choices: dict | None = None) -> dict:
    """Check, coerce and return the parameters of ``notebook``, updating ``namespace`` (its ``globals()``).

    - every declared parameter is coerced to its declared type (:func:`coerce`); a wrong type or an
      unparsable ``-p`` string raises :class:`ParameterError` naming the parameter;
    - a name papermill injected that the parameters cell does not declare (a misspelt ``-p``) raises;
    - ``choices`` maps a parameter to its allowed values (or items, for a list), see :func:`choose`;
    - record folders (parameters named ``results_dir`` or ``*_results``) under a committed profile's
      folder are redirected to ``results/custom/...`` unless every parameter equals that profile's
      (the notebook's defaults for ``results/book``, plus ``notebooks/params/gpu.yaml`` for
      ``results/gpu``), so committed folders only receive the records of the profile that owns them;
    - in a notebook, the resolved values are displayed once as a :class:`ParameterBox`.
    """
    declared = notebook_parameters(notebook)
    unknown = [n for n in injected_names() if n not in declared]
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown} for {notebook}; it declares {sorted(declared)} "
                             f"(see `papermill --help-notebook notebooks/{notebook}.ipynb`)")
    values = {}
    for name, (type_name, default, _) in declared.items():
        if name not in namespace:
            raise ParameterError(f"parameter {name} of {notebook} is not defined: run the parameters cell first")
        values[name] = coerce(name, namespace[name], type_name, default)
    for name, allowed in (choices or {}).items():
        choose(name, values[name], allowed)
    given = dict(values)
    for name, value in given.items():
        if is_record_folder(name) and isinstance(value, str):
            values[name] = record_folder(notebook, value, given)
            if values[name] != value:
                profile = Path(value).parts[1]
                changed = [k for k, v in profile_parameters(notebook, profile).items() if given[k] != v]
                print(f"{name} = {values[name]!r} (not committed): {', '.join(changed)} differ from the "
                      f"'{profile}' profile, which owns {value}")
    namespace.update(values)
    show(ParameterBox(notebook, values, run_profiles(notebook, given), _git_commit()))
    _glue_parameters(values)
    return values


class _Plain:
    """A value glued as its text: ``{glue:text}`name``` in a chapter's Markdown shows it."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _glue_parameters(values: dict) -> None:
    """In a notebook, glue every parameter under its own name (myst-nb), so prose and captions show the
    value of this run, not the parameter's name: strings as they are, lists of strings comma-separated."""
    if _kernel() is None:
        return
    from myst_nb import glue
    for name, value in values.items():
        text = (", ".join(value) if isinstance(value, list) and value and all(isinstance(v, str) for v in value)
                else _shown(value))
        glue(name, _Plain(text), display=False)


def setup(seed: int = 0, threads: int | None = 2) -> None:
    """Seed, fix the CPU thread count (reproducible float reductions) and set plot/table styles
    (two decimals, table cells never cut).

    ``OMP_NUM_THREADS``, when set, caps ``threads``.
    """
    import pandas as pd

    from .plots import style
    torch.manual_seed(seed)
    if threads:
        cap = os.environ.get("OMP_NUM_THREADS", "")
        threads = min(threads, int(cap)) if cap.isdigit() and int(cap) > 0 else threads
        torch.set_num_threads(min(threads, os.cpu_count() or threads))
    style()
    pd.set_option("display.precision", 2)
    pd.set_option("display.max_colwidth", None)  # table cells in full (pandas cuts text at 50 characters)
