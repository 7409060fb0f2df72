"""Paired comparison of methods against a reference (e.g. late-fusion ERM) run on the same targets and seeds.

Each run of a method is paired with the reference's run of the same held-out domain and seed; the
difference of their target accuracies is taken per pair, under each selection rule. The verdict
says "better" or "worse" only when the mean difference is more than ``z`` standard errors (over
the pairs) away from zero, "level" otherwise, and "undecided" with fewer than two pairs.
"""
from __future__ import annotations

import math

import pandas as pd

#: selection rules of a run record's ``final``: name -> accuracy key
RULES = {"source-val selection": "test_acc", "best target epoch (oracle)": "oracle_test_acc"}


def verdict(delta: float, se: float, pairs: int, z: float = 2.0) -> str:
    """"better" / "worse" if ``delta`` is more than ``z * se`` from 0, else "level"; "undecided" below 2 pairs."""
    if pairs < 2 or math.isnan(se):
        return "undecided"
    if delta - z * se > 0:
        return "better"
    if delta + z * se < 0:
        return "worse"
    return "level"


def paired_deltas(table: pd.DataFrame, reference: str, label: str = "label", rules: dict | None = None,
                  z: float = 2.0) -> pd.DataFrame:
    """One row per (label, selection rule) of ``table`` (a :func:`runs_table` with a ``label`` column).

    Columns: ``acc`` / ``acc_std`` (mean and std over seeds of the accuracy averaged over targets
    within a seed), ``delta`` / ``se`` (mean and standard error over (target, seed) pairs of the
    difference to ``reference``), ``wins`` (pairs where it is higher), ``pairs`` and ``verdict``.
    The reference's own rows have ``delta`` 0.
    """
    rules = RULES if rules is None else rules
    for col in (label, "target", "seed", *rules.values()):
        if col not in table.columns:
            raise ValueError(f"paired_deltas: table has no column {col!r}")
    ref = table[table[label] == reference]
    if ref.empty:
        raise ValueError(f"paired_deltas: no run labelled {reference!r} (labels: {sorted(set(table[label]))})")
    if ref.duplicated(["target", "seed"]).any():
        raise ValueError(f"paired_deltas: the reference {reference!r} has several runs for one (target, seed)")
    rows = []
    for name, part in table.groupby(label, sort=False):
        if part.duplicated(["target", "seed"]).any():
            raise ValueError(f"paired_deltas: {name!r} has several runs for one (target, seed)")
        pair = part.merge(ref, on=["target", "seed"], suffixes=("", "_ref"))
        for rule, key in rules.items():
            per_seed = part.groupby("seed")[key].mean()
            diff = pair[key] - pair[f"{key}_ref"]
            n = len(diff)
            rows.append({label: name, "rule": rule, "acc": per_seed.mean(), "acc_std": per_seed.std(),
                         "delta": diff.mean() if n else float("nan"),
                         "se": diff.std() / math.sqrt(n) if n > 1 else float("nan"),
                         "wins": int((diff > 0).sum()), "pairs": n})
            rows[-1]["verdict"] = "reference" if name == reference else verdict(rows[-1]["delta"], rows[-1]["se"], n, z)
    return pd.DataFrame(rows)


def format_paired(frame: pd.DataFrame, label: str = "label", digits: int = 1) -> pd.DataFrame:
    """:func:`paired_deltas` as display text: accuracy ``mean ± std``, difference ``mean ± se``, wins ``k/n``."""
    def pm(m, s):
        return "" if pd.isna(m) else f"{m:.{digits}f}" if pd.isna(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
    out = pd.DataFrame({
        "target acc (%)": [pm(m, s) for m, s in zip(frame["acc"], frame["acc_std"])],
        "Δ vs reference (points)": ["" if v == "reference" else pm(d, s)
                                    for d, s, v in zip(frame["delta"], frame["se"], frame["verdict"])],
        "pairs higher": ["" if v == "reference" else f"{w}/{n}"
                         for w, n, v in zip(frame["wins"], frame["pairs"], frame["verdict"])],
        "verdict": list(frame["verdict"])})
    out.index = pd.MultiIndex.from_arrays([frame[label], frame["rule"]], names=["method", "selection"])
    return out
