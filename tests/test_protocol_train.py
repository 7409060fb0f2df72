"""Protocol splits, loaders, methods registry, trainer resume, records, collection and the CLI."""
import json
from dataclasses import replace

import pytest
import torch

from mmdg.__main__ import main
from mmdg.data.base import TensorDataset, make_loader
from mmdg.data.protocol import leave_one_domain_out, make_split
from mmdg.experiments.collect import format_summary, load_runs, summarize
from mmdg.experiments.results import read_record, write_record
from mmdg.experiments.sweep import sweep
from mmdg.methods import resolve
from mmdg.train import RunConfig, select, train

from conftest import MLP_ENCODERS


def test_lodo_split_follows_reference_protocol(toy):
    s = make_split(toy, "d1")
    assert s.sources == ("d0", "d2") and s.name == "d0,d2->d1"
    # train = source train splits, val = source test splits, test = target test split
    tr0, tr2 = toy.dataset("d0", "train"), toy.dataset("d2", "train")
    torch.testing.assert_close(s.train.inputs["a"], torch.cat([tr0.inputs["a"], tr2.inputs["a"]]))
    torch.testing.assert_close(s.val.inputs["b"], torch.cat([toy.dataset("d0", "test").inputs["b"],
                                                              toy.dataset("d2", "test").inputs["b"]]))
    torch.testing.assert_close(s.test.inputs["a"], toy.dataset("d1", "test").inputs["a"])
    # domain labels: source index for sources, -1 for the target
    assert s.train.domain.tolist() == [0] * 48 + [1] * 48
    assert set(s.test.domain.tolist()) == {-1}
    assert [x.target for x in leave_one_domain_out(toy)] == ["d0", "d1", "d2"]


def test_split_errors_name_the_domain(toy):
    with pytest.raises(ValueError, match="unknown domain 'd9'.*d0"):
        make_split(toy, "d9")
    with pytest.raises(ValueError, match="also listed as a source"):
        make_split(toy, "d0", sources=("d0", "d1"))


def test_target_dataset_override_is_used(toy):
    class AllClips(type(toy)):
        def target_dataset(self, domain):
            return TensorDataset.concat([self.dataset(domain, "train"), self.dataset(domain, "test")])
    assert len(make_split(AllClips(), "d0").test) == 96


def test_loader_order_depends_only_on_seed_and_epoch(toy):
    ds = toy.dataset("d0", "train")
    a, b = make_loader(ds, 10, shuffle=True, drop_last=True, seed=3), make_loader(ds, 10, shuffle=True,
                                                                                   drop_last=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    la, lb = [x.label for x in a], [x.label for x in b]
    assert len(la) == 4 and all(torch.equal(x, y) for x, y in zip(la, lb))
    b.set_epoch(3)
    assert not all(torch.equal(x, y.label) for x, y in zip(la, b))
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, 0)


def test_resolve_methods_and_hparams():
    objs, strat, hp = resolve("base", {"lambda_d": 1})
    assert objs[1] == ("domain_adv", {"weight": 1.0, "hidden": 0}) and strat == ("sum", {})
    with pytest.raises(KeyError, match="valid choices"):
        resolve("nope")
    with pytest.raises(KeyError, match="no hyperparameter.*lambda"):
        resolve("erm", {"lambda_d": 0.1})
    with pytest.raises(TypeError, match="'lambda_d'.*expects float"):
        resolve("base", {"lambda_d": "big"})


def test_selection_rule_best_val_later_epoch_wins_ties():
    ep = [{"epoch": i, "val": {"acc": v, "acc_a": 0}, "test": {"acc": t, "acc_a": 0}}
          for i, (v, t) in enumerate([(50, 40), (60, 41), (60, 39), (55, 70)])]
    f = select(ep, ["a"])
    assert (f["selected_epoch"], f["test_acc"]) == (2, 39)
    assert (f["oracle_epoch"], f["oracle_test_acc"]) == (3, 70)


def _cfg(**kw):
    base = dict(target="d0", benchmark="toy", method="base", epochs=3, batch_size=16, encoders=MLP_ENCODERS)
    base.update(kw)
    return RunConfig(**base)


def test_resume_gives_the_uninterrupted_result(tmp_path):
    cfg = _cfg(head_dropout=0.2)  # dropout consumes RNG: resume must restore it
    full = train(cfg, progress=False)
    part = train(cfg, checkpoint=tmp_path / "c.pt", progress=False, stop_after=1)
    assert part["complete"] is False and len(part["epochs"]) == 1
    resumed = train(cfg, checkpoint=tmp_path / "c.pt", progress=False)
    assert resumed["final"] == full["final"]
    for a, b in zip(full["epochs"], resumed["epochs"]):
        assert a["val"] == b["val"] and a["test"] == b["test"]
        assert a["train"] == pytest.approx(b["train"], rel=1e-6)
    with pytest.raises(ValueError, match="belongs to run"):
        train(_cfg(lr=0.5), checkpoint=tmp_path / "c.pt", progress=False)


def test_records_are_never_overwritten_silently(tmp_path):
    p = write_record(tmp_path / "r.json", {"config": {}, "epochs": [], "final": {}})
    with pytest.raises(FileExistsError, match="overwrite"):
        write_record(p, {"config": {}, "epochs": [], "final": {}})
    write_record(p, {"config": {"x": 1}, "epochs": [], "final": {}}, overwrite=True)
    assert read_record(p)["config"] == {"x": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temp files left
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        read_record(tmp_path / "bad.json")


def test_sweep_skips_done_runs_and_collects_a_table(tmp_path):
    cfg = _cfg(epochs=2, method="erm")
    paths = sweep(cfg, ["erm", "base"], ["d0", "d1"], [0, 1], tmp_path, progress=False, log=lambda s: None)
    assert len(paths) == 8 and all(p.exists() for p in paths)
    stamp = paths[0].stat().st_mtime_ns
    logs = []
    sweep(cfg, ["erm"], ["d0"], [0], tmp_path, progress=False, log=logs.append)
    assert "skipped" in logs[0] and paths[0].stat().st_mtime_ns == stamp
    runs = load_runs(tmp_path)
    assert len(runs) == 8
    summ = summarize(runs)
    # independent computation of one cell: mean and sample std over seeds
    sel = runs[(runs.method == "base") & (runs.target == "d1")]["test_acc"]
    assert summ.loc["base", ("d1", "mean")] == pytest.approx(sel.mean())
    assert summ.loc["base", ("d1", "std")] == pytest.approx(sel.std(ddof=1))
    per_seed = runs[runs.method == "erm"].groupby("seed")["test_acc"].mean()
    assert summ.loc["erm", ("avg", "mean")] == pytest.approx(per_seed.mean())
    table = format_summary(summ)
    assert list(table.columns) == ["d0", "d1", "avg", "seeds"] and "\u00a0±\u00a0" in table.loc["erm", "avg"]


def test_cli_train_collect_and_errors(tmp_path, capsys):
    args = ["--benchmark", "toy", "--encoders", json.dumps(MLP_ENCODERS), "--epochs", "1",
            "--results", str(tmp_path), "--quiet"]
    assert main(["train", "--method", "base", "--target", "d2", *args]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["train", "--method", "base", "--target", "d2", *args]) == 0
    assert "exists" in capsys.readouterr().out
    assert main(["collect", "--results", str(tmp_path)]) == 0
    assert "base" in capsys.readouterr().out
    assert main(["train", "--method", "gmpp", "--target", "d2", *args]) == 2
    assert "valid choices" in capsys.readouterr().err
    assert main(["train", "--method", "base", "--target", "d7", *args]) == 2
    assert "unknown domain 'd7'" in capsys.readouterr().err
    assert main(["train", "--method", "base", "--target", "d2", "--hp", "lambda_d=x", *args]) == 2
    assert "expects float" in capsys.readouterr().err
    with pytest.raises(ValueError, match="epochs"):
        _cfg(epochs=0)


def test_protocol_table_sizes(toy):
    from mmdg.data import protocol_table
    rows = protocol_table(toy)
    assert [r["target"] for r in rows] == ["d0", "d1", "d2"]
    assert rows[1]["sources"] == "d0 + d2"
    assert all(r["train (source train)"] == 96 and r["val (source test)"] == 96 and r["test (target)"] == 48
               for r in rows)


def test_modality_table_and_trace_frame():
    import pandas as pd
    from mmdg.experiments.collect import modality_table, trace_frame
    runs = pd.DataFrame([
        {"method": "erm", "modalities": "a", "seed": 0, "target": "t1", "val_acc": 80.0, "test_acc": 60.0},
        {"method": "erm", "modalities": "a", "seed": 0, "target": "t2", "val_acc": 90.0, "test_acc": 70.0},
        {"method": "erm", "modalities": "a", "seed": 1, "target": "t1", "val_acc": 70.0, "test_acc": 50.0},
        {"method": "base", "modalities": "a,b", "seed": 0, "target": "t1", "val_acc": 95.0, "test_acc": 75.0,
         "val_acc_a": 85.0, "test_acc_a": 55.0, "val_acc_b": 40.0, "test_acc_b": 45.0}])
    table = modality_table(runs)
    # uni-a: seed 0 averages t1, t2 -> (85, 65); seed 1 -> (70, 50); mean ± sample std over seeds
    assert table.loc["uni-a", "source (val)"] == "77.5\u00a0±\u00a010.6"
    assert table.loc["uni-a", "target (test)"] == "57.5\u00a0±\u00a010.6"
    assert table.loc["base: b branch", "target (test)"] == "45.0" and table.loc["base (fused)", "seeds"] == 1
    rec = {"epochs": [{"epoch": 0, "trace": {"_step": [0, 2], "gmp/norm_c_audio": [1.0, 2.0]}},
                      {"epoch": 1, "trace": {"_step": [0, 2], "gmp/norm_c_audio": [3.0, 4.0]}}]}
    tf = trace_frame(rec)
    assert list(tf["key"].unique()) == ["norm_c"] and list(tf["modality"].unique()) == ["audio"]
    assert tf["t"].tolist() == [0.0, 2 / 3, 1.0, 1 + 2 / 3] and tf["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="trace"):
        trace_frame({"epochs": [{"epoch": 0}]})


def test_provenance_names_devices_commits_code_versions_dates_and_seeds():
    import pandas as pd
    from mmdg.experiments.collect import provenance
    runs = pd.DataFrame({"device": ["cpu", "NVIDIA H200", "cpu"], "commit": ["abc1234", "abc1234", "def5678"],
                         "code": ["0123456789ab", "0123456789ab", ""],
                         "date": ["2026-12-01 10:00:00 UTC", "2026-12-02 09:00:00 UTC", "2026-12-01 11:00:00 UTC"],
                         "seed": [1, 0, 1]})
    text = provenance(runs)
    assert text == ("Measured: 3 runs on NVIDIA H200, cpu, code commit abc1234, def5678, training-code version "
                    "0123456789ab, not recorded for 1 of the runs, 2026-12-01 to 2026-12-02; seeds [0, 1].")
    two = runs.assign(code=["0123456789ab", "ba9876543210", "0123456789ab"])
    assert "training-code versions 0123456789ab, ba9876543210, 2026" in provenance(two)
    assert provenance(runs.iloc[[0, 1]]) == ("Measured: 2 runs on NVIDIA H200, cpu, code commit abc1234, one "
                                             "training-code version 0123456789ab, 2026-12-01 to 2026-12-02; seeds [0, 1].")
    assert ", training-code version not recorded, 2026-12-02" in provenance(runs.drop(columns="code").iloc[[1]])
    with pytest.raises(ValueError, match="empty"):
        provenance(runs.iloc[[]])


def test_non_default_drops_spelled_out_defaults_so_run_ids_agree():
    from mmdg.methods import non_default
    assert non_default("erm+mer", {"lambda_mer": 3.0, "mer_hidden": 256}) == {"mer_hidden": 256}
    assert non_default("erm+mer", {"lambda_mer": 1, "mer_dim": 128}) == {"lambda_mer": 1}
    base = RunConfig(target="studio", method="erm+mer", hparams={"mer_hidden": 256})
    spelled = replace(base, hparams=non_default("erm+mer", {"mer_hidden": 256, "lambda_mer": 3.0}))
    assert spelled.run_id() == base.run_id()
    assert replace(base, hparams={"mer_hidden": 256, "lambda_mer": 3.0}).run_id() != base.run_id()
    with pytest.raises(KeyError, match="no hyperparameter"):
        non_default("erm", {"lambda_mer": 3.0})


def test_width_overrides_only_name_the_methods_widths():
    from mmdg.methods import width_overrides
    assert width_overrides("erm", 64) == {}
    assert width_overrides("erm+mer", 64) == {"mer_hidden": 64}
    assert width_overrides("simmmdg+gmp+mer", 32) == {"con_hidden": 32, "trans_hidden": 32, "mer_hidden": 32}
    objectives, _, hp = resolve("simmmdg+mer", width_overrides("simmmdg+mer", 32))
    assert hp["con_hidden"] == hp["trans_hidden"] == hp["mer_hidden"] == 32
