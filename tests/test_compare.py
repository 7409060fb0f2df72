"""The one comparison module: t quantiles, paired per-seed differences, verdicts and formatters.

Expectations are derived by hand (small tables with known per-seed differences), from tabulated
Student-t quantiles and from a numerical integration of the t density.
"""
import math
from pathlib import Path

import pandas as pd
import pytest

from mmdg.experiments.compare import (RULES, clause, format_paired, gap, gaps, mean_std, paired_by_seed, signed,
                                      t_quantile, verdict)

# t(0.975, df=2) = 0.95 * sqrt(2 / (1 - 0.95^2)) exactly (closed form of the df=2 CDF); scipy.stats.t.ppf(0.975, 2)
# prints 4.302652729911275, which agrees to 10 significant digits
T2 = 4.302652729749464
NAN = float("nan")


def _t_density(x, df):
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi) \
        * (1 + x * x / df) ** (-(df + 1) / 2)


def _integral(f, a, b, n=20000):
    """Composite Simpson rule."""
    h = (b - a) / n
    return h / 3 * (f(a) + f(b) + sum((4 if i % 2 else 2) * f(a + i * h) for i in range(1, n)))


def test_t_quantile_closed_forms_and_tables():
    assert t_quantile(0.975, 2) == pytest.approx(T2, rel=1e-13)
    assert t_quantile(0.975, 2) == pytest.approx(4.302652729911275, rel=1e-10)
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-12)  # Cauchy
    # two-sided 95 % critical values of a printed t table (3 decimals)
    table = {3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}
    for df, value in table.items():
        assert t_quantile(0.975, df) == pytest.approx(value, abs=5e-4), df
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4), rel=1e-14)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("df", [3, 4, 7, 12])
def test_t_quantile_inverts_the_integrated_density(df):
    for p in (0.9, 0.975):
        q = t_quantile(p, df)
        assert 0.5 + _integral(lambda x: _t_density(x, df), 0.0, q) == pytest.approx(p, abs=1e-10)


def test_t_quantile_and_interval_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 9, 29, 99):
        for p in (0.9, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)
    diffs = [1.5, -0.25, 2.75, 0.5, 1.0]  # a paired-by-seed difference: scipy's one-sample t-interval
    lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / 5, scale=stats.sem(diffs))
    table = pd.DataFrame([{"label": lab, "target": "t", "seed": s, "test_acc": a, "oracle_test_acc": a}
                          for s, d in enumerate(diffs) for lab, a in (("ref", 50.0), ("m", 50.0 + d))])
    row = paired_by_seed(table, "ref", rules={"sv": "test_acc"}).set_index("label").loc["m"]
    assert row["ci_low"] == pytest.approx(lo, rel=1e-9) and row["ci_high"] == pytest.approx(hi, rel=1e-9)


def test_t_quantile_rejects_bad_input():
    with pytest.raises(ValueError, match="df must be a positive integer, got 0"):
        t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="df must be a positive integer, got 2.5"):
        t_quantile(0.975, 2.5)
    with pytest.raises(ValueError, match="p must lie strictly between 0 and 1, got 1"):
        t_quantile(1, 3)


def test_verdict_edge_cases():
    assert verdict(0.1, 2.0, 3) == "gain" and verdict(-2.0, -0.1, 3) == "loss"
    assert verdict(0.0, 1.0, 3) == "no detectable difference"  # touching 0 is not above it
    assert verdict(-1.0, 0.0, 3) == "no detectable difference"
    assert verdict(-1.0, 1.0, 9) == "no detectable difference"
    assert verdict(1.0, 2.0, 1) == "too few seeds" and verdict(NAN, NAN, 5) == "too few seeds"


def _table(rows):
    return pd.DataFrame(rows, columns=["label", "target", "seed", "test_acc", "oracle_test_acc"])


# per seed (mean over targets a, b): erm 70, 60, 70; m 72, 64, 73 (diffs 2, 4, 3); w 68, 56, 67 (diffs -2, -4, -3)
# oracle: erm +5 everywhere; m's oracle diffs -1, +1, 0
ROWS = [("erm", "a", 0, 80, 85), ("erm", "b", 0, 60, 65), ("erm", "a", 1, 70, 75), ("erm", "b", 1, 50, 55),
        ("erm", "a", 2, 75, 80), ("erm", "b", 2, 65, 70),
        ("m", "a", 0, 82, 84), ("m", "b", 0, 62, 64), ("m", "a", 1, 74, 66), ("m", "b", 1, 54, 66),
        ("m", "a", 2, 76, 75), ("m", "b", 2, 70, 75),
        ("m", "c", 0, 40, 40),   # target the reference lacks: in m's accuracy, not in the differences
        ("m", "a", 7, 90, 90),   # seed the reference lacks: likewise
        ("w", "a", 0, 78, 85), ("w", "b", 0, 58, 65), ("w", "a", 1, 66, 75), ("w", "b", 1, 46, 55),
        ("w", "a", 2, 72, 80), ("w", "b", 2, 62, 70)]


def test_paired_by_seed_matches_hand_computation():
    out = paired_by_seed(_table(ROWS), "erm")
    assert list(out.columns) == ["label", "rule", "acc", "acc_std", "seeds", "delta", "ci_low", "ci_high", "verdict"]
    rows = out.set_index(["label", "rule"])
    half = T2 * 1.0 / math.sqrt(3)  # sd of (2, 4, 3) is 1
    m = rows.loc[("m", "source-val selection")]
    assert m["seeds"] == 3 and m["delta"] == pytest.approx(3.0)
    assert (m["ci_low"], m["ci_high"]) == pytest.approx((3 - half, 3 + half)) and m["verdict"] == "gain"
    # m's own accuracy per seed over all its runs: seed 0 (82+62+40)/3, seed 1 64, seed 2 73, seed 7 90
    own = [184 / 3, 64, 73, 90]
    mean = sum(own) / 4
    assert m["acc"] == pytest.approx(mean)
    assert m["acc_std"] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in own) / 3))
    w = rows.loc[("w", "source-val selection")]
    assert w["delta"] == pytest.approx(-3.0) and w["ci_high"] == pytest.approx(-3 + half) and w["verdict"] == "loss"
    oracle = rows.loc[("m", "best target epoch (oracle)")]
    assert oracle["delta"] == pytest.approx(0.0) and oracle["ci_high"] == pytest.approx(half)
    assert oracle["verdict"] == "no detectable difference"
    ref = rows.loc[("erm", "source-val selection")]
    assert ref["verdict"] == "reference" and ref["delta"] == 0 and ref["seeds"] == 3
    assert set(out["rule"]) == set(RULES)


def test_missing_seeds_and_missing_values():
    t = _table([("erm", "a", 0, 80, 85), ("erm", "a", 1, 70, 75), ("erm", "b", 1, 60, 65),
                ("m", "a", 0, 81, NAN), ("m", "a", 1, 75, 70), ("m", "b", 1, 61, 70),
                ("lone", "a", 5, 50, 50)])
    rows = paired_by_seed(t, "erm").set_index(["label", "rule"])
    m = rows.loc[("m", "source-val selection")]
    # seed 0: 81 - 80 = 1; seed 1: 68 - 65 = 3 -> mean 2, sd sqrt(2), t(0.975, 1) = tan(0.475 pi)
    half = math.tan(0.475 * math.pi) * math.sqrt(2) / math.sqrt(2)
    assert m["seeds"] == 2 and m["delta"] == pytest.approx(2.0)
    assert m["ci_low"] == pytest.approx(2 - half) and m["verdict"] == "no detectable difference"
    oracle = rows.loc[("m", "best target epoch (oracle)")]  # the NaN run of seed 0 is absent: one seed left
    assert oracle["seeds"] == 1 and oracle["delta"] == pytest.approx(0.0) and math.isnan(oracle["ci_low"])
    assert oracle["verdict"] == "too few seeds"
    lone = rows.loc[("lone", "source-val selection")]
    assert lone["seeds"] == 0 and math.isnan(lone["delta"]) and lone["verdict"] == "too few seeds"
    assert lone["acc"] == 50 and math.isnan(lone["acc_std"])


def test_errors_name_the_problem():
    t = _table([("erm", "a", 0, 80, 85), ("m", "a", 0, 90, 85), ("m", "a", 0, 91, 85)])
    with pytest.raises(ValueError, match="method 'm' has several runs for target 'a', seed 0"):
        paired_by_seed(t, "erm")
    with pytest.raises(ValueError, match="no run labelled 'fusion'"):
        paired_by_seed(t, "fusion")
    with pytest.raises(ValueError, match="no column 'oracle_test_acc'"):
        paired_by_seed(t.drop(columns="oracle_test_acc"), "erm")
    with pytest.raises(ValueError, match="no column 'method'"):
        paired_by_seed(t, "erm", label="method")


def test_mean_std_and_signed():
    assert mean_std(61.24, 1.04) == "61.2\u00a0±\u00a01.0" and mean_std(61.24, 1.04, digits=2) == "61.24\u00a0±\u00a01.04"
    assert mean_std(61.24, NAN) == "61.2" and mean_std(NAN, 1.0) == "–" and mean_std(None, None) == "–"
    assert signed(1.23) == "+1.2" and signed(-0.34) == "\u22120.3" and signed(NAN) == "–"


def test_format_paired_and_clause():
    t = _table(ROWS[:12] + ROWS[14:] + [("one", "a", 0, 81, 85)])
    frame = paired_by_seed(t, "erm")
    shown = format_paired(frame)
    col = "Δ vs reference (points) [95 % CI]"
    assert list(shown.columns) == ["target acc (%)", col, "seeds", "verdict"]
    assert shown.loc[("m", "source-val selection"), col] == "+3.0\u00a0[+0.5,\u00a0+5.5]"
    assert shown.loc[("w", "source-val selection"), col] == "\u22123.0\u00a0[\u22125.5,\u00a0\u22120.5]"
    assert shown.loc[("m", "source-val selection"), "target acc (%)"] == "69.7\u00a0±\u00a04.9"  # seeds 72, 64, 73
    assert shown.loc[("erm", "source-val selection"), col] == ""
    assert shown.loc[("erm", "source-val selection"), "verdict"] == "reference"
    assert shown.loc[("one", "source-val selection"), col] == "+1.0"  # one seed: no interval
    assert shown.loc[("one", "source-val selection"), "target acc (%)"] == "81.0"

    def row(label):
        return frame[(frame.label == label) & (frame.rule == "source-val selection")].iloc[0]

    assert clause(row("m")) == ("source-val selection: 69.7\u00a0±\u00a04.9 %, Δ = +3.0 points, 95 % CI [+0.5, +5.5] "
                                "over 3 seeds: **gain**")
    assert clause(row("erm")) == "source-val selection: 66.7\u00a0±\u00a05.8 %, the reference"
    assert clause(row("one")).endswith("Δ = +1.0 points from a single seed: **too few seeds**")


def test_gap_filters_rows_then_pairs_by_seed():
    t = _table(ROWS)
    row, text = gap(t, "test_acc", "m", "erm")
    assert row["delta"] == pytest.approx(3.0) and text == "Δ = +3.0\u00a0[+0.5,\u00a0+5.5] points, **gain**"
    # target a only: m − erm per seed 2, 4, 1 (mean 7/3, sample variance 7/3)
    row, text = gap(t, "test_acc", "m", "erm", target="a")
    half = T2 * math.sqrt(7 / 3) / math.sqrt(3)
    assert row["seeds"] == 3 and row["delta"] == pytest.approx(7 / 3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert text == "Δ = +2.3\u00a0[\u22121.5,\u00a0+6.1] points, **no detectable difference**"
    assert gap(t, "oracle_test_acc", "m", "erm", unit="")[1] == "Δ = +0.0\u00a0[\u22122.5,\u00a0+2.5], **no detectable difference**"


def test_gaps_are_markdown_items_nested_at_the_given_depth():
    from markdown_it import MarkdownIt
    t = _table(ROWS)
    items = gaps([("m", (t, "test_acc", "m", "erm")), ("w on a", (t, "test_acc", "w", "erm"), {"target": "a"})],
                 depth=2)
    assert items == ("\n    - m: Δ = +3.0\u00a0[+0.5,\u00a0+5.5] points, **gain**"
                     "\n    - w on a: Δ = \u22123.0\u00a0[\u22125.5,\u00a0\u22120.5] points, **loss**")
    assert gaps([("m", (t, "test_acc", "m", "erm"))], unit="") == "\n  - m: Δ = +3.0\u00a0[+0.5,\u00a0+5.5], **gain**"
    text = "- **Study**:\n  - dim 16:" + items + "\n  - dim 128:" + gaps([("m", (t, "test_acc", "m", "erm"))], depth=2)
    depth, inner = 0, []
    for tok in MarkdownIt().parse(text):
        depth += tok.type == "bullet_list_open"
        depth -= tok.type == "bullet_list_close"
        if tok.type == "inline" and tok.content.startswith(("m:", "w on a:")):
            inner.append(depth)
    assert inner == [3, 3, 3]  # every comparison sits in a list under "dim ...", under "Study"


def test_no_other_mean_std_formatter_in_the_library():
    """Every ``mean ± std`` text of mmdg/ comes from :func:`mean_std`."""
    root = Path(__file__).resolve().parents[1] / "mmdg"
    found = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if p.name != "compare.py" and "} ± {" in p.read_text()]
    assert found == []
