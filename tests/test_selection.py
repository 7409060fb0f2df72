"""Selection rules in collect, computed from the per-epoch history; resolved hyperparameter columns."""
import json

import pytest

from mmdg.__main__ import main
from mmdg.experiments.collect import load_runs, runs_table, summarize
from mmdg.experiments.selection import SELECTIONS, hparam_columns, selection
from mmdg.experiments.sweep import run_one
from mmdg.methods import resolve
from mmdg.train import RunConfig


def _epoch(i, val, test):
    return {"epoch": i, "val": {"acc": val, "acc_a": val - 1}, "test": {"acc": test, "acc_a": test - 1}}


#            epoch:   0   1   2   3
VAL, TEST = [50, 70, 70, 60], [40, 90, 55, 80]
# source_val: best val 70 at epochs 1 and 2 -> the later, 2 (test 55); last: 3 (80); oracle: 1 (90)


def _record(seed=0, target="d0", hparams=None, **cfg):
    config = {"benchmark": "toy", "method": "base", "target": target, "seed": seed, "modalities": None,
              "fusion": "concat", "benchmark_kwargs": {}, "hparams": {}, "lr": 1e-3, **cfg}
    rec = {"config": config, "run_id": f"r{seed}{target}", "epochs": [_epoch(i, v, t) for i, (v, t)
                                                                       in enumerate(zip(VAL, TEST))],
           "final": {"selected_epoch": 2, "val_acc": 70, "test_acc": 55}, "complete": True}
    if hparams is not None:
        rec["hparams"] = hparams
    return rec


def test_each_rule_picks_its_epoch_from_the_history():
    rec = _record()
    assert SELECTIONS["source_val"].select(rec) == {"selected_epoch": 2, "val_acc": 70, "test_acc": 55,
                                                    "val_acc_a": 69, "test_acc_a": 54}
    assert SELECTIONS["last"].select(rec)["test_acc"] == 80 and SELECTIONS["last"].select(rec)["selected_epoch"] == 3
    assert SELECTIONS["oracle"].select(rec)["test_acc"] == 90 and SELECTIONS["oracle"].select(rec)["selected_epoch"] == 1
    assert SELECTIONS["oracle"].oracle and "ORACLE" in SELECTIONS["oracle"].label
    assert not SELECTIONS["source_val"].oracle and not SELECTIONS["last"].oracle
    with pytest.raises(ValueError, match="--selection 'best' is unknown; expected one of source_val, last, oracle"):
        selection("best")


def test_the_rules_ignore_the_stored_final_and_summarize_over_seeds():
    recs = [_record(seed=s) for s in (0, 1)]
    recs[1]["epochs"][3]["test"]["acc"] = 70          # seed 1: last epoch 70 instead of 80
    recs[1]["final"]["test_acc"] = -1                 # a stale `final` must not leak into the rules
    runs = runs_table(recs)
    assert list(runs["test_acc@source_val"]) == [55, 55]
    assert list(runs["test_acc@last"]) == [80, 70]
    table = summarize(runs, "test_acc@last")
    assert table.loc["base", ("d0", "mean")] == pytest.approx(75)
    assert table.loc["base", ("d0", "std")] == pytest.approx((50 ** 0.5))   # sample std of 80, 70


def test_records_resolve_the_full_hyperparameters_as_columns():
    full = resolve("base", {"lambda_d": 0.5})[2]
    assert hparam_columns(_record(hparams=full)) == {f"hp.{k}": v for k, v in full.items()}
    old = _record()
    old["config"]["hparams"] = {"lambda_d": 0.5}    # a record written before records stored the full set
    assert hparam_columns(old) == {f"hp.{k}": v for k, v in full.items()}
    runs = runs_table([_record(seed=0, hparams=full)])
    assert runs["hp.lambda_d"].item() == 0.5 and runs["hp.disc_hidden"].item() == full["disc_hidden"]


def test_a_trained_run_stores_its_hyperparameters_and_source_val_equals_final(tmp_path, capsys):
    enc = {m: {"name": "mlp", "hidden": 8, "out_dim": 8} for m in ("m0", "m1")}
    cfg = RunConfig(target="d0", benchmark="gaussian_features", method="base", epochs=3, batch_size=16,
                    benchmark_kwargs={"dim": 4, "train_per_domain": 48, "test_per_domain": 16}, encoders=enc,
                    hparams={"lambda_d": 0.1})
    path, rec, _ = run_one(cfg, tmp_path, progress=False)
    assert rec["hparams"] == resolve("base", {"lambda_d": 0.1})[2]
    assert json.loads(path.read_text())["hparams"]["lambda_d"] == 0.1
    runs = load_runs(tmp_path)
    assert runs["test_acc@source_val"].item() == rec["final"]["test_acc"]
    assert runs["test_acc@oracle"].item() == rec["final"]["oracle_test_acc"]
    assert runs["test_acc@last"].item() == rec["epochs"][-1]["test"]["acc"]
    assert main(["collect", "--results", str(tmp_path), "--selection", "oracle"]) == 0
    out = capsys.readouterr().out
    assert "ORACLE" in out and f"{rec['final']['oracle_test_acc']:.2f}" in out
    assert main(["collect", "--results", str(tmp_path), "--selection", "nope"]) == 2
    assert "--selection 'nope' is unknown" in capsys.readouterr().err
