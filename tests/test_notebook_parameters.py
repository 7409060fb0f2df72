"""mmdg.notebook.parameters: declared types, papermill -p strings, unknown names, choices, record folders,
the box of the values a chapter ran with."""
import configparser
import json
import re
import sys
import types

import nbformat
import pandas as pd
import papermill as pm
import pytest
import torch

import mmdg.notebook as nbm
from mmdg.notebook import ParameterError, choose, coerce, declared_parameters, parameters, profile_parameters

CELL = '''epochs: int = 15  # training epochs per run
seeds: list = [0, 1, 2]  # random seeds
# a comment line
lr: float = 0.001  # learning rate, "quoted # hash" stays help
name: str = "a # b"  # a string holding a hash
'''


def test_declared_parameters_reads_type_default_and_help():
    got = declared_parameters(CELL)
    assert got == {"epochs": ("int", 15, "training epochs per run"), "seeds": ("list", [0, 1, 2], "random seeds"),
                   "lr": ("float", 0.001, 'learning rate, "quoted # hash" stays help'),
                   "name": ("str", "a # b", "a string holding a hash")}
    with pytest.raises(ParameterError, match="name: type = default"):
        declared_parameters("epochs = 15  # no type\n")


@pytest.mark.parametrize("value,type_name,default,expected", [
    ("[0, 1]", "list", [0, 1, 2], [0, 1]),          # papermill -p seeds "[0, 1]"
    ([3], "list", [0, 1, 2], [3]),                   # -y / -f give real lists
    ("[studio, street]", "list", ["kitchen"], ["studio", "street"]),  # YAML flow list
    ("{a: 1}", "dict", {}, {"a": 1}),
    ('{"a": [1, 2]}', "dict", {}, {"a": [1, 2]}),
    ("[1, 0.5]", "list", [0.1, 0.3], [1.0, 0.5]),    # an int where floats are declared
    ("[]", "list", [], []),
    (3, "float", 0.001, 3.0),
    ("1e-4", "float", 0.001, 1e-4),
    ("7", "int", 15, 7),
    ("[0]", "str", "", "[0]"),                       # a str parameter keeps the text
    ("true", "bool", False, True),
    ("[4]", "list[int]", [0], [4]),
])
def test_coerce_accepts_what_users_type(value, type_name, default, expected):
    got = coerce("p", value, type_name, default)
    assert got == expected and type(got) is type(expected)
    if isinstance(expected, list):
        assert [type(v) for v in got] == [type(v) for v in expected]


@pytest.mark.parametrize("name,value,type_name,default,message", [
    ("epochs", "abc", "int", 15, "parameter epochs: expected an int, got 'abc'"),
    ("epochs", 1.5, "int", 15, r"parameter epochs: expected an int, got 1.5 \(float\)"),
    ("epochs", True, "int", 15, r"parameter epochs: expected an int, got True \(bool\)"),
    ("seeds", "[0,", "list", [0, 1], r"parameter seeds: expected a list of int, got '\[0,' \(.*\)"),
    ("seeds", 0, "list", [0, 1], r"parameter seeds: expected a list of int, got 0 \(int\)"),
    ("seeds", "[0, a]", "list", [0, 1], r"parameter seeds: expected a list of int, got '\[0, a\]' \('a' is str\)"),
    ("seeds", [0, True], "list", [0, 1], r"\(True is bool\)"),
    ("targets", "studio", "list", ["studio"], r"parameter targets: expected a list of str, got 'studio' \(str\)"),
    ("device", 1, "str", "auto", r"parameter device: expected a str, got 1 \(int; papermill -p reads numbers .* -r NAME"),
    ("lr", "fast", "float", 0.1, "parameter lr: expected a float, got 'fast'"),
    ("hp", "[1]", "dict", {}, r"parameter hp: expected a dict, got '\[1\]' \(list\)"),
    ("x", 1, "tuple", (), "unsupported annotation 'tuple'"),
])
def test_coerce_rejects_with_name_type_and_value(name, value, type_name, default, message):
    with pytest.raises(ParameterError, match=message):
        coerce(name, value, type_name, default)


def test_choose_names_the_parameter_and_the_unknown_value():
    choose("targets", ["studio", "street"], ("studio", "kitchen", "street"))
    choose("size", "tiny", {"tiny": 1, "cpu": 2})
    with pytest.raises(ParameterError, match=r"parameter targets: expected items of \['studio', 'kitchen'\], "
                                             r"got \['studio', 'kichen'\] \('kichen' is unknown\)"):
        choose("targets", ["studio", "kichen"], ("studio", "kitchen"))
    with pytest.raises(ParameterError, match=r"parameter size: expected one of \['tiny', 'cpu'\], got 'huge'"):
        choose("size", "huge", {"tiny": 1, "cpu": 2})


def defaults(notebook):
    return {k: d for k, (_, d, _) in nbm.notebook_parameters(notebook).items()}


def test_parameters_coerces_in_place_and_keeps_the_book_folder(capsys):
    ns = {**defaults("01_overview"), "seeds": "[0, 1, 2]"}  # equal to the default once parsed
    got = parameters("01_overview", ns)
    assert ns["seeds"] == [0, 1, 2] and got["results_dir"] == ns["results_dir"] == "results/book/01_overview"
    assert capsys.readouterr().out == ""


def test_parameters_moves_records_of_other_parameters_out_of_committed_folders(capsys):
    ns = {**defaults("01_overview"), "epochs": 1, "seeds": "[0, 1]"}
    parameters("01_overview", ns)
    assert ns["results_dir"] == "results/custom/01_overview"
    out = capsys.readouterr().out
    assert "results/custom/01_overview" in out and "epochs, seeds differ from the 'book' profile" in out
    # the gpu profile's own parameters keep results/gpu; one more change moves them too
    gpu = profile_parameters("01_overview", "gpu")
    assert gpu["results_dir"] == "results/gpu/01_overview" and gpu["epochs"] != defaults("01_overview")["epochs"]
    ns = dict(gpu)
    parameters("01_overview", ns)
    assert ns["results_dir"] == "results/gpu/01_overview"
    ns = {**gpu, "seeds": [0]}
    parameters("01_overview", ns)
    assert ns["results_dir"] == "results/custom/01_overview"
    # folders that no profile owns are left alone
    ns = {**defaults("01_overview"), "epochs": 1, "results_dir": "results/smoke/01_overview"}
    parameters("01_overview", ns)
    assert ns["results_dir"] == "results/smoke/01_overview"


def test_parameters_rejects_wrong_types_choices_and_unknown_names(monkeypatch):
    with pytest.raises(ParameterError, match="parameter epochs: expected an int, got 'abc'"):
        parameters("01_overview", {**defaults("01_overview"), "epochs": "abc"})
    with pytest.raises(ParameterError, match=r"parameter targets: .*'nowhere' is unknown"):
        parameters("03_imbalance", {**defaults("03_imbalance"), "targets": ["nowhere"]},
                   choices={"targets": ("studio", "kitchen", "street")})
    monkeypatch.setattr(nbm, "injected_names", lambda: ["epochs", "epoch"])
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['epoch'\] for 01_overview"):
        parameters("01_overview", {**defaults("01_overview"), "epoch": 1})


def test_injected_names_come_from_papermills_cell(monkeypatch):
    shell = types.SimpleNamespace(user_ns={"In": ["", CELL, "# Parameters\nepoch = 1\nseeds = \"[0]\"\n", "x = 2"]})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert nbm.injected_names() == ["epoch", "seeds"]
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert nbm.injected_names() == []


def test_setup_respects_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        nbm.setup(threads=2)
        assert torch.get_num_threads() == 1
        assert pd.get_option("display.max_colwidth") is None  # long table cells shown in full
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("params,message", [
    ({"epoch": 1}, r"unknown parameter\(s\) \['epoch'\] for 01_overview"),
    ({"seeds": "[0,"}, r"parameter seeds: expected a list of int, got '\[0,'"),
    ({"epochs": "abc"}, "parameter epochs: expected an int, got 'abc'"),
])
def test_papermill_runs_fail_at_once_on_bad_parameters(tmp_path, params, message):
    """Chapter 1 executed as a user would: the error comes from the first code cell, before any training."""
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(nbm.repo_root() / "notebooks" / "01_overview.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=params, kernel_name="python3", progress_bar=False,
                            cwd=str(nbm.repo_root() / "notebooks"))
    assert err.value.ename == "ParameterError"
    assert re.search(message, err.value.evalue), err.value.evalue
    assert err.value.exec_count == 3  # parameters, injected parameters, then the checking cell


NOTEBOOKS = sorted(p.stem for p in (nbm.repo_root() / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("profile", ["book", "smoke", "gpu"])
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_profile_keeps_its_own_record_folders(notebook, profile, capsys):
    """A profile's own parameters pass the checks unchanged: no record folder moves, nothing printed."""
    ns = profile_parameters(notebook, profile)
    assert parameters(notebook, dict(ns)) == ns
    assert capsys.readouterr().out == ""


def sanitized(text: str) -> str:
    """``text`` after the replacements nbval applies (tests/nbval_sanitize.cfg) before comparing outputs."""
    cfg = configparser.ConfigParser()
    cfg.read(nbm.repo_root() / "tests" / "nbval_sanitize.cfg")
    for section in cfg.sections():
        text = re.sub(cfg[section]["regex"], cfg[section]["replace"], text)
    return text


def test_parameter_box_shows_each_value_the_profile_and_the_commit():
    values = {"epochs": 15, "seeds": [0, 1, 2], "results_dir": "results/book/01_overview", "device": "auto"}
    box = nbm.ParameterBox("01_overview", values, ["book"], "abc1234")
    page, text = box._repr_html_(), repr(box)
    for cell in ("<td><code>epochs</code></td><td><code>15</code></td>",
                 "<td><code>seeds</code></td><td><code>[0, 1, 2]</code></td>",
                 "<td><code>results_dir</code></td><td><code>results/book/01_overview</code></td>",
                 "<td><code>device</code></td><td><code>auto</code></td><td>&quot;auto&quot;, &quot;cpu&quot; or "
                 "&quot;cuda&quot;</td>"):
        assert cell in page
    assert page.startswith('<details class="mmdg-parameters" open><summary>Parameters of this run: profile book, '
                           'code commit abc1234</summary>')
    assert text.splitlines() == ["Parameters of this run: profile book, code commit abc1234", "  epochs = 15",
                                 "  seeds = [0, 1, 2]", "  results_dir = results/book/01_overview", "  device = auto"]
    assert str(nbm.repo_root()) not in page + text
    both = nbm.ParameterBox("01_overview", values, ["book", "gpu"], "abc1234").title()
    assert both == "Parameters of this run: profiles book and gpu (their values agree), code commit abc1234"
    # the commit is masked where nbval compares, whatever the checkout: so goldens hold across commits
    for commit in ("abc1234", "0123456789ab+dirty", "unknown"):
        other = nbm.ParameterBox("01_overview", values, ["book"], commit)
        assert sanitized(other._repr_html_()) == sanitized(page) and sanitized(repr(other)) == sanitized(text)
    assert "code commit <COMMIT>" in sanitized(page)
    # a box with many rows starts folded
    many = {f"p{i}": i for i in range(nbm.OPEN_BOX + 1)}
    box = nbm.ParameterBox("01_overview", many, [], "abc1234")
    box.declared = {k: ("int", 0, "") for k in many}
    assert box._repr_html_().startswith('<details class="mmdg-parameters"><summary>Parameters of this run: '
                                        'profile custom,')


def test_run_profiles_name_the_profile_whose_values_a_run_has():
    book, smoke = profile_parameters("01_overview", "book"), profile_parameters("01_overview", "smoke")
    assert nbm.run_profiles("01_overview", book) == ["book"]
    assert nbm.run_profiles("01_overview", smoke) == ["smoke"]
    # a golden: the smoke values with its own record folder
    assert nbm.run_profiles("01_overview", {**smoke, "results_dir": "tests/golden/records/01_overview"}) == ["smoke"]
    assert nbm.run_profiles("01_overview", {**book, "epochs": 1}) == []
    # chapter 4 has no smoke or gpu settings: its defaults are all three profiles
    assert nbm.run_profiles("04_gmp_explained", profile_parameters("04_gmp_explained", "book")) == ["book", "smoke", "gpu"]


def test_parameters_shows_the_box_once_in_a_notebook(tmp_path):
    """In a kernel, parameters() displays one box with the resolved values (the redirected folder too)."""
    nb = nbformat.v4.new_notebook()
    source = json.loads((nbm.repo_root() / "notebooks" / "01_overview.ipynb").read_text())["cells"]
    declared = "".join(next(c for c in source if "parameters" in c["metadata"].get("tags", []))["source"])
    nb.cells = [nbformat.v4.new_code_cell(declared, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('from mmdg.notebook import parameters\nparameters("01_overview", globals());')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    out = pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), parameters={"epochs": 3},
                              kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    outputs = out.cells[-1].outputs
    shown = [o for o in outputs if o.output_type == "display_data" and "scrapbook" not in o.get("metadata", {})]
    assert len(shown) == 1, outputs
    glued = {o.metadata["scrapbook"]["name"] for o in outputs if "scrapbook" in o.get("metadata", {})}
    assert glued == set(nbm.notebook_parameters("01_overview"))  # and every parameter glued for the prose
    page = shown[0].data["text/html"]
    assert page.count('class="mmdg-parameters"') == 1 and "profile custom, code commit " in page
    for name, value in (("epochs", "3"), ("seeds", "[0, 1, 2]"), ("test_per_domain", "500"),
                        ("results_dir", "results/custom/01_overview"), ("device", "auto")):
        assert f"<td><code>{name}</code></td><td><code>{value}</code></td>" in page
    assert shown[0].data["text/plain"].splitlines()[1:] == ["  epochs = 3", "  seeds = [0, 1, 2]",
                                                            "  test_per_domain = 500",
                                                            "  results_dir = results/custom/01_overview",
                                                            "  device = auto"]
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "results/custom/01_overview" in streams and "epochs differ from the 'book' profile" in streams


def test_every_parameter_is_glued_as_the_text_prose_shows(monkeypatch):
    import IPython
    import myst_nb
    glued = {}
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())  # as in a kernel
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display=True: glued.__setitem__(name, (repr(obj), display)))
    nbm._glue_parameters({"epochs": 12, "seeds": [0, 1, 2], "targets": ["studio", "street"], "device": "auto",
                          "lr": 0.001, "empty": []})
    assert glued == {"epochs": ("12", False), "seeds": ("[0, 1, 2]", False), "targets": ("studio, street", False),
                     "device": ("auto", False), "lr": ("0.001", False), "empty": ("[]", False)}


def test_a_golden_chapter_glues_its_parameters_with_the_values_it_ran():
    """Chapter 7's prose cites ``long_epochs`` and ``study_seeds`` through glue: the executed golden holds them."""
    nb = nbformat.read(nbm.repo_root() / "tests/golden/07_fusion_overfitting.ipynb", 4)
    glued = {o["metadata"]["scrapbook"]["name"]: o["data"][o["metadata"]["scrapbook"]["mime_prefix"] + "text/plain"]
             for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
    ran = profile_parameters("07_fusion_overfitting", "smoke")
    assert glued["long_epochs"] == str(ran["long_epochs"])
    assert glued["study_seeds"] == str(ran["study_seeds"])
