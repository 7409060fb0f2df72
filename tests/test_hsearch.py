"""Hyperparameter search: trials are seeded draws, the best is picked by source validation."""
import dataclasses
import json

import pytest

from mmdg.__main__ import main
from mmdg.experiments.hsearch import best_trial, search, trial_configs
from mmdg.experiments.selection import SourceVal
from mmdg.methods import sample_hparams
from mmdg.train import RunConfig

ENC = {m: {"name": "mlp", "hidden": 8, "out_dim": 8} for m in ("m0", "m1")}
BENCH = {"dim": 4, "train_per_domain": 48, "test_per_domain": 16}


def _record(vals, tests):
    return {"epochs": [{"epoch": i, "val": {"acc": v}, "test": {"acc": t}} for i, (v, t) in enumerate(zip(vals, tests))],
            "complete": True}


def test_the_best_trial_is_the_best_source_validation_never_the_best_target():
    records = [_record([50, 60], [95, 90]),    # trial 0: the best target accuracy (oracle would pick it)
               _record([80, 70], [40, 45]),    # trial 1: best source validation 80 (at epoch 0)
               _record([75, 80], [70, 10]),    # trial 2: ties trial 1 at 80: the lower trial wins
               None]                           # trial 3: not finished
    assert best_trial(records) == 1
    records[1]["epochs"][0]["val"]["acc"] = 79
    assert best_trial(records) == 2
    with pytest.raises(ValueError, match="no trial finished"):
        best_trial([None, {**_record([1], [1]), "status": "diverged"}])


def test_trials_are_the_default_and_seeded_draws_and_the_choice_is_retrained_with_every_seed():
    base = RunConfig(target="d0", benchmark="gaussian_features", method="base", seed=3)
    configs = [RunConfig(**{**base.to_dict(), "target": t, "seed": s}) for t in ("d0", "d1") for s in (3, 4, 5)]
    cells = trial_configs(configs, 3)
    assert sorted(cells) == [("base", "d0"), ("base", "d1")]
    for (_, target), cs in cells.items():
        plain = next(c for c in configs if c.target == target and c.seed == 3)
        assert [c.seed for c in cs] == [3, 3, 3, 3]             # the search uses the first seed
        assert cs[0].hparams == {} and cs[0].run_id() == plain.run_id()  # trial 0 = the plain run
        drawn = [{**sample_hparams("base", t)} for t in (1, 2, 3)]
        assert [{**sample_hparams("base", 0), **c.hparams} for c in cs[1:]] == drawn
        assert len({json.dumps(c.hparams, sort_keys=True) for c in cs}) == 4
    # a fake launcher: the source validation of trial t is a made-up function of its draw, its
    # target accuracy the opposite, so the pick by validation is checkable
    score = {}
    for cs in cells.values():
        for t, c in enumerate(cs):
            score[c.run_id()] = (t * 3 % 4, t)
    ran = []
    read = lambda c: _record([10 + score[c.run_id()][0]], [100 - score[c.run_id()][0]])  # noqa: E731
    retrain, choices = search(configs, 3, ran.extend, read, log=lambda s: None)
    assert len(ran) == 8
    want = max(range(4), key=lambda t: (t * 3 % 4, -t))
    assert want == 1
    for key, cs in cells.items():
        assert choices[key]["trial"] == want and choices[key]["hparams"] == cs[want].hparams
    assert [(c.target, c.seed, c.hparams) for c in retrain] == [
        (t, s, cells[("base", t)][want].hparams) for t in ("d0", "d1") for s in (3, 4, 5)]


def test_sweep_hparam_trials_trains_the_trials_and_retrains_the_best_by_source_validation(tmp_path, capsys):
    argv = ["sweep", "--methods", "base", "--targets", "d0", "--seeds", "0,1", "--benchmark", "gaussian_features",
            "--encoders", json.dumps(ENC), "--epochs", "2", "--quiet", "--hparam-trials", "2",
            "--results", str(tmp_path), *[x for k, v in BENCH.items() for x in ("--bench", f"{k}={v}")]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json") if "_logs" not in p.parts]
    trials = [r for r in records if r["config"]["seed"] == 0]
    (again,) = [r for r in records if r["config"]["seed"] == 1]
    assert len(trials) == 3
    vals = {json.dumps(r["config"]["hparams"], sort_keys=True): SourceVal.select(r)["val_acc"] for r in trials}
    assert vals[json.dumps(again["config"]["hparams"], sort_keys=True)] == max(vals.values())
    assert "hparam search base -> d0: trial" in out and "4 finished, 1 skipped" in out and "0 failed" in out
    assert main(argv) == 0                                        # relaunched: everything is done
    assert "0 finished, 5 skipped" in capsys.readouterr().out  # 3 trials, then the 2 seeds of the choice


def test_a_search_distribution_outside_the_valid_range_is_refused_naming_it():
    from mmdg.hparams import HParam, LogUniform
    with pytest.raises(ValueError, match=r"hyperparameter 'lambda_x': search distribution .* reaches 2"):
        HParam("lambda_x", 0.5, "a weight in [0, 1]", search=LogUniform(0.1, 2.0), low=0.0, high=1.0)


def test_bad_hparam_trials_is_one_line(tmp_path, capsys):
    from mmdg.experiments.hsearch import check_trials
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="--hparam-trials must be an integer >= 0"):
            check_trials(bad)


def test_tuned_runs_search_every_method_alike_and_retrain_the_pick_with_every_seed(tmp_path):
    from conftest import MLP_ENCODERS
    from mmdg.experiments.hsearch import tuned_runs
    from mmdg.experiments.results import read_record
    from mmdg.experiments.sweep import record_path
    specs = {"plain fusion": ("erm", {}), "RNA": ("rna", {})}
    base = RunConfig(target="d0", benchmark="toy", method="erm", epochs=2, batch_size=16, encoders=MLP_ENCODERS)
    records, chosen = tuned_runs(specs, base, ["d1"], [0, 1], 1, tmp_path)
    assert sorted((r["label"], r["config"]["seed"]) for r in records) == [
        ("RNA", 0), ("RNA", 1), ("plain fusion", 0), ("plain fusion", 1)]
    row = chosen.set_index("label")
    # ERM declares nothing to search: its one draw is its defaults, the same run as trial 0
    assert row.loc["plain fusion", "trial"] == 0 and row.loc["plain fusion", "hparams"] == {}
    assert row.loc["plain fusion", "source val per trial"][0] == row.loc["plain fusion", "source val per trial"][1]
    # RNA: the trial kept is the one whose record has the best source-validation epoch (ties: the lower)
    trials = [dataclasses.replace(base, method="rna", target="d1", seed=0, hparams=h)
              for h in ({}, {"lambda_rna": sample_hparams("rna", 1)["lambda_rna"]})]
    best_val = [max(e["val"]["acc"] for e in read_record(record_path(tmp_path, c))["epochs"]) for c in trials]
    want = 0 if best_val[0] >= best_val[1] else 1
    assert row.loc["RNA", "trial"] == want and row.loc["RNA", "source val per trial"] == best_val
    assert row.loc["RNA", "hparams"] == trials[want].hparams
    assert all(r["config"]["hparams"] == trials[want].hparams for r in records if r["label"] == "RNA")
