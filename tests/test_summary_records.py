"""The summary chapter's library: the papers' numbers file, finding the book's runs again, side-by-side tables."""
import copy
import math

import pandas as pd
import pytest
import yaml

from mmdg.experiments import catalogue, papers
from mmdg.experiments.results import write_record

# --- the papers' numbers --------------------------------------------------------------------------------


def test_packaged_paper_numbers_are_complete_and_in_range():
    info, numbers = papers.load()
    assert set(info) == {"GMP", "MER-DG"}
    assert all(info[p]["selection"] for p in info)
    assert not numbers.empty and numbers["table"].str.len().min() > 0
    assert (numbers["selection"] == numbers["paper"].map(lambda p: info[p]["selection"])).all()
    acc = numbers[numbers["kind"] == "accuracy"]
    assert acc["value"].between(0, 100).all() and numbers["value"].between(-100, 100).all()
    assert set(numbers.loc[numbers["paper"] == "GMP", "table"]) == {f"Table {i}" for i in range(1, 6)}
    deltas = numbers[numbers["kind"] == "delta"]
    assert not deltas.empty and deltas["reference"].notna().all()


def test_gmp_tables_agree_where_the_paper_repeats_a_number():
    """Base and GMP appear in GMP's Tables 1 (EPIC), 2, 4 (base / full) and 5 (concatenation): one value each."""
    _, n = papers.load()
    fused = n[(n["split"] == "target") & (n["measure"] == "video-audio")]
    for bench in ("EPIC-Kitchens", "HAC"):
        for ours, ablation in (("base", "base"), ("gmp", "full")):
            t2 = fused[(fused.table == "Table 2") & (fused.benchmark == bench) & (fused.ours == ours)]["value"]
            t4 = fused[(fused.table == "Table 4") & (fused.benchmark == bench) & (fused.ablation == ablation)]["value"]
            t5 = fused[(fused.table == "Table 5") & (fused.benchmark == bench) & (fused.ours == ours)
                       & (fused.fusion == "concat")]["value"]
            assert len(t2) == len(t4) == len(t5) == 1
            assert t2.iloc[0] == t4.iloc[0] == t5.iloc[0]
    t1 = fused[fused.table == "Table 1"].set_index("ours")["value"]
    t2 = fused[(fused.table == "Table 2") & (fused.benchmark == "EPIC-Kitchens")].set_index("ours")["value"]
    for ours in ("base", "gmp", "ogm_ge", "grad_blending"):
        assert t1[ours] == t2[ours]


def _data():
    return {"papers": {"P": {"cite": "p", "selection": "best source-validation epoch", "runs": "3", "backbones": "b"}},
            "numbers": [{"paper": "P", "table": "T1", "benchmark": "B1", "method": "A", "ours": "a", "value": 60.0},
                        {"paper": "P", "table": "T1", "benchmark": "B1", "method": "R", "ours": "r", "value": 57.5},
                        {"paper": "P", "table": "T1", "benchmark": "B2", "method": "A", "ours": "a", "value": 40},
                        {"paper": "P", "table": "T1", "benchmark": "B2", "method": "R", "ours": "r", "value": 41},
                        {"paper": "P", "table": "T2", "benchmark": "B1", "method": "A (film)", "ours": "a",
                         "fusion": "film", "value": 10},
                        {"paper": "P", "table": "abs", "benchmark": "B1+B2", "method": "A vs R", "ours": "a",
                         "reference": "r", "kind": "delta", "approximate": True, "value": 4}]}


def test_paper_delta_from_two_accuracies_and_from_a_quoted_delta():
    _, numbers = papers.check(_data())
    got = papers.paper_delta(numbers, "a", "r").set_index(["table", "benchmark"])
    assert got.loc[("T1", "B1"), "delta"] == pytest.approx(2.5)
    assert got.loc[("T1", "B2"), "delta"] == pytest.approx(-1.0)
    assert got.loc[("abs", "B1+B2"), "delta"] == 4 and got.loc[("abs", "B1+B2"), "approximate"]
    assert len(got) == 3  # the film row has no reference in T2
    assert (got["selection"] == "best source-validation epoch").all()
    assert list(papers.paper_delta(numbers, "a", "r", tables=["abs"])["table"]) == ["abs"]
    wide = papers.paper_table(numbers, "T1")
    assert wide.loc["A", "B2"] == 40 and wide.loc["R", "selection"] == "best source-validation epoch"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["numbers"][0].pop("table"), r"numbers\[0\]: lacks \['table'\]"),
    (lambda d: d["numbers"][1].update(paper="Q"), r"numbers\[1\]: paper 'Q' is not under 'papers'"),
    (lambda d: d["numbers"][0].update(value=100.5), r"numbers\[0\]: value must be a number in \[0, 100\]"),
    (lambda d: d["numbers"][0].update(value="55"), r"value must be a number"),
    (lambda d: d["numbers"][5].update(value=-120), r"numbers\[5\]: value must be a number in \[-100, 100\] \(delta\)"),
    (lambda d: d["numbers"][5].pop("reference"), r"numbers\[5\]: a delta needs a 'reference'"),
    (lambda d: d["numbers"][0].update(measure="both"), r"measure must be one of"),
    (lambda d: d["numbers"][0].update(colour="red"), r"unknown field\(s\) \['colour'\]"),
    (lambda d: d["papers"]["P"].pop("selection"), r"paper 'P' lacks \['selection'\]"),
    (lambda d: d["numbers"].append(dict(d["numbers"][0])), r"2 entries share"),
])
def test_bad_paper_numbers_are_refused_naming_the_entry(edit, message):
    data = copy.deepcopy(_data())
    edit(data)
    with pytest.raises(ValueError, match=message):
        papers.check(data)


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "numbers.yaml"
    path.write_text(yaml.safe_dump(_data()))
    assert len(papers.load(path)[1]) == 6


# --- finding the book's runs again -------------------------------------------------------------------


def _record(method, hparams, target, seed, acc, epochs=8):
    config = {"benchmark": "synth_foley", "method": method, "target": target, "seed": seed,
              "modalities": ["video", "audio"], "fusion": "concat", "benchmark_kwargs": {"size": "cpu"},
              "hparams": hparams, "epochs": epochs}
    history = [{"epoch": 0, "val": {"acc": 50.0}, "test": {"acc": acc - 5}},
               {"epoch": 1, "val": {"acc": 60.0}, "test": {"acc": acc}}]
    return {"config": config, "run_id": f"{method}-{len(hparams)}-{target}-{seed}-{epochs}", "epochs": history,
            "final": {"test_acc": acc, "oracle_test_acc": acc, "val_acc": 60.0}, "complete": True}


SPECS = {"erm": ("erm", {}), "base": ("base+gmp", {"gmp_ablation": "base", "gmp_log_every": 1}),
         "gmp": ("base+gmp", {"gmp_log_every": 1})}


def _records():
    recs = []
    for i, (label, (method, hp)) in enumerate(SPECS.items()):
        for target in ("a", "b"):
            for seed in (0, 1):
                recs.append(_record(method, hp, target, seed, 50.0 + i + seed))
    recs.append(_record("base+gmp", {"gmp_ablation": "no_k"}, "a", 0, 10.0))  # an ablation: not in SPECS
    recs.append({**_record("erm", {}, "a", 0, 20.0), "config": {**_record("erm", {}, "a", 0, 0)["config"],
                                                                 "modalities": ["video"]}})  # unimodal: not fused
    return recs


def test_labelled_runs_picks_each_spec_by_its_exact_hyperparameters():
    runs = catalogue.labelled_runs(_records(), SPECS, ["a", "b"], [0, 1])
    assert list(dict.fromkeys(runs["label"])) == ["erm", "base", "gmp"]
    assert len(runs) == 12 and runs.groupby("label").size().eq(4).all()
    assert set(runs.loc[runs.label == "gmp", "test_acc"]) == {52.0, 53.0}
    only = catalogue.labelled_runs(_records(), SPECS, ["b"], [1])
    assert len(only) == 3 and set(only["target"]) == {"b"} and set(only["seed"]) == {1}


def test_labelled_runs_names_missing_and_repeated_runs():
    recs = [r for r in _records() if not (r["config"]["method"] == "erm" and r["config"]["seed"] == 1
                                          and r["config"]["target"] == "b")]
    with pytest.raises(ValueError, match=r"'erm' has no run for \(target, seed\) \[\('b', 1\)\]"):
        catalogue.labelled_runs(recs, SPECS, ["a", "b"], [0, 1])
    twice = _records() + [_record("erm", {}, "a", 0, 70.0, epochs=9)]
    with pytest.raises(ValueError, match=r"'erm' has several runs for \[\('a', 0\)\]"):
        catalogue.labelled_runs(twice, SPECS, ["a", "b"], [0, 1])


def test_matching_records_reads_complete_records_that_pass_the_filter(tmp_path):
    recs = _records()
    recs[0]["complete"] = False
    for i, r in enumerate(recs):
        write_record(tmp_path / "synth_foley" / f"{i}.json", r)
    found = catalogue.matching_records(tmp_path, lambda c: c["method"] == "erm")
    assert len(found) == 4 and all(r["config"]["method"] == "erm" for r in found)  # 3 fused (1 incomplete) + 1 video
    with pytest.raises(FileNotFoundError, match="no matching run records below"):
        catalogue.matching_records(tmp_path, lambda c: c["epochs"] == 99)


def test_specs_are_the_chapters_registry_names_and_widths():
    foley = catalogue.foley_methods(64)
    assert foley["base"] == ("base+gmp", {"gmp_ablation": "base", "gmp_log_every": 1})
    assert foley["simmmdg+gmp+mer"] == ("simmmdg+gmp+mer", {"gmp_log_every": 1, "con_hidden": 64,
                                                              "trans_hidden": 64, "mer_hidden": 64})
    assert foley["base+mer"] == ("base+gmp+mer", {"gmp_ablation": "base", "gmp_log_every": 1, "mer_hidden": 64})
    assert foley["rna"] == ("rna", {}) and foley["gmp_released (trained disc.)"][1] == {"released_train_disc": True}
    real = catalogue.sensor_methods(["erm", "gmp+mer", "simmmdg"], 32)
    assert real == {"erm": ("erm", {}), "gmp+mer": ("base+gmp+mer", {"mer_hidden": 32}),
                    "simmmdg": ("simmmdg", {"con_hidden": 32, "trans_hidden": 32})}


# --- the side-by-side tables ------------------------------------------------------------------------


def _labelled(deltas):
    """Runs of 'erm' and methods on two targets x three seeds: method = erm + delta[seed] on both targets."""
    rows = []
    for seed in range(3):
        for target in ("a", "b"):
            base = 50.0 + 3 * seed + (target == "b")
            rows.append({"label": "erm", "target": target, "seed": seed, "test_acc": base, "oracle_test_acc": base})
            for name, d in deltas.items():
                rows.append({"label": name, "target": target, "seed": seed, "test_acc": base + d[seed],
                             "oracle_test_acc": base + d[seed]})
    return pd.DataFrame(rows)


def test_side_by_side_and_counts_follow_the_paired_intervals():
    from mmdg.experiments.compare import RULES
    from mmdg.experiments.summary import paired_all, side_by_side, verdict_counts
    rule = next(r for r, k in RULES.items() if k == "test_acc")
    runs = {"B": _labelled({"up": [2.0, 2.5, 3.0], "flat": [1.0, -1.0, 0.0]})}
    paired = paired_all(runs, ["erm", "base"])  # no 'base' runs: only ERM is a reference
    assert set(paired["reference"]) == {"erm"}
    up = paired[(paired.label == "up") & (paired.rule == rule)].iloc[0]
    half = 4.302652729911275 * 0.5 / math.sqrt(3)  # t(0.975, 2) * sd([2, 2.5, 3]) / sqrt(3)
    assert up["delta"] == pytest.approx(2.5) and up["ci_low"] == pytest.approx(2.5 - half, rel=1e-6)
    assert up["verdict"] == "gain"
    table = side_by_side(paired, rule)
    assert table.loc["up", ("B", "Δ vs erm [95 % CI]")] == f"+2.5\u00a0[{2.5 - half:+.1f},\u00a0{2.5 + half:+.1f}] gain"
    assert table.loc["erm", ("B", "Δ vs erm [95 % CI]")] == "reference"
    assert table.loc["flat", ("B", "Δ vs erm [95 % CI]")].endswith("no detectable difference")
    counts = verdict_counts(paired, "erm", rule)
    assert counts.loc["B", "methods"] == 2 and counts.loc["B", "gain"] == 1
    assert counts.loc["B", "no detectable difference"] == 1


def test_beside_papers_puts_the_papers_delta_next_to_ours():
    from mmdg.experiments.compare import RULES
    from mmdg.experiments.summary import beside_papers
    rule = next(r for r, k in RULES.items() if k == "test_acc")
    _, numbers = papers.check(_data())
    runs = {"B": _labelled({"a": [2.0, 2.5, 3.0]}).replace({"label": {"erm": "r"}})}
    got = beside_papers(runs, numbers, [("a", "r", ["T1"]), ("a", "missing", None)], rule)
    row = got.loc[("a vs r", "P, T1")]
    assert row["paper: B1"] == "+2.5" and row["paper: B2"] == "-1.0"
    assert row["paper's selection"] == "best source-validation epoch"
    assert row["ours: B"].startswith("+2.5\u00a0[") and row["ours: B"].endswith("gain")
    assert got.loc[("a vs missing", "–"), "ours: B"] == "–"
