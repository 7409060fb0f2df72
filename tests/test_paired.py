"""Paired deltas against a reference: hand-computed differences, standard errors and verdicts."""
import math

import pandas as pd
import pytest

from mmdg.experiments.paired import format_paired, paired_deltas, verdict


def _table(rows):
    return pd.DataFrame(rows, columns=["label", "target", "seed", "test_acc", "oracle_test_acc"])


def test_paired_deltas_match_hand_computation():
    t = _table([("erm", "a", 0, 80, 85), ("erm", "b", 0, 60, 70), ("erm", "a", 1, 70, 75),
                ("m", "a", 0, 90, 85), ("m", "b", 0, 62, 72), ("m", "a", 1, 71, 75),
                ("m", "c", 9, 10, 10)])  # no reference pair: left out of the differences
    out = paired_deltas(t, "erm").set_index(["label", "rule"])
    row = out.loc[("m", "source-val selection")]
    diffs = [10, 2, 1]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert row["pairs"] == 3 and row["wins"] == 3
    assert row["delta"] == pytest.approx(mean) and row["se"] == pytest.approx(sd / math.sqrt(3))
    # accuracy: mean over targets within a seed (seed 0: (90+62)/2, seed 1: 71, seed 9: 10), then over seeds
    assert row["acc"] == pytest.approx((76 + 71 + 10) / 3)
    assert row["verdict"] == ("better" if mean - 2 * sd / math.sqrt(3) > 0 else "level")
    oracle = out.loc[("m", "best target epoch (oracle)")]
    assert oracle["delta"] == pytest.approx(2 / 3) and oracle["wins"] == 1
    assert out.loc[("erm", "source-val selection")]["verdict"] == "reference"
    shown = format_paired(paired_deltas(t, "erm"))
    assert shown.loc[("m", "source-val selection"), "pairs higher"] == "3/3"


def test_verdict_rule():
    assert verdict(3.0, 1.0, 4) == "better" and verdict(-3.0, 1.0, 4) == "worse"
    assert verdict(1.0, 1.0, 4) == "level" and verdict(5.0, float("nan"), 1) == "undecided"


def test_errors_name_the_problem():
    t = _table([("erm", "a", 0, 80, 85), ("erm", "a", 0, 81, 85), ("m", "a", 0, 90, 85)])
    with pytest.raises(ValueError, match="several runs"):
        paired_deltas(t, "erm")
    with pytest.raises(ValueError, match="no run labelled 'fusion'"):
        paired_deltas(t, "fusion")
    with pytest.raises(ValueError, match="no column 'oracle_test_acc'"):
        paired_deltas(t.drop(columns="oracle_test_acc"), "erm")
