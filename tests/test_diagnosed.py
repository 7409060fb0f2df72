"""Diagnosed runs: report and per-epoch features stored in the record, reused from disk, flattened."""
from mmdg.experiments.diagnosed import diagnostics_table, run_diagnosed, tracked_table
from mmdg.train import RunConfig

from conftest import MLP_ENCODERS


def test_run_diagnosed_records_and_reuses(tmp_path):
    cfg = RunConfig(target="d2", benchmark="toy", method="erm", encoders=MLP_ENCODERS, epochs=2, batch_size=16)
    rec = run_diagnosed(cfg, tmp_path)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and "diagnostics" in rec and all("features" in e for e in rec["epochs"])
    again = run_diagnosed(cfg, tmp_path)
    assert again["diagnostics"] == rec["diagnostics"] and again["run_id"] == rec["run_id"]
    table = diagnostics_table([rec])
    assert sorted(table["modality"]) == ["a", "b"] and (table["target"] == "d2").all()
    probe = rec["diagnostics"]["probe"]
    assert table.set_index("modality").loc["a", "probe_target"] == probe["a"]["target"]
    tracked = tracked_table([rec])
    assert len(tracked) == 2 * 2 * 2  # epochs x sets x modalities
    assert set(tracked["set"]) == {"train", "target"}


def test_seed_summary_averages_targets_then_seeds():
    import pandas as pd
    from mmdg.experiments.diagnosed import seed_summary
    t = pd.DataFrame({"label": ["erm"] * 4 + ["uni-a"], "modality": ["a"] * 5, "seed": [0, 0, 1, 1, 0],
                      "target": ["x", "y", "x", "y", "x"], "probe_target": [10.0, 30.0, 40.0, 60.0, 5.0]})
    s = seed_summary(t, "probe_target")
    # erm: seed means 20 and 50 -> 35 ± 21.2 (sample std); uni-a: one seed -> no ±
    assert s.loc["erm", "a"] == "35.0\u00a0±\u00a021.2" and s.loc["uni-a", "a"] == "5.0"
