"""The summary's tables: every method against several references on several benchmarks, and the
papers' differences beside ours (see :mod:`.compare` for the paired comparison, :mod:`.papers` for
the quoted numbers).
"""
from __future__ import annotations

import pandas as pd

from .compare import REFERENCE, RULES, delta_ci, mean_std, paired_by_seed
from .papers import paper_delta


def paired_all(runs: dict[str, pd.DataFrame], references: list[str], rules: dict | None = None) -> pd.DataFrame:
    """:func:`~.compare.paired_by_seed` of each benchmark's labelled runs against each reference present,
    stacked, with columns ``benchmark`` and ``reference``."""
    frames = [paired_by_seed(table, ref, rules=rules).assign(benchmark=bench, reference=ref)
              for bench, table in runs.items() for ref in references if (table["label"] == ref).any()]
    if not frames:
        raise ValueError(f"paired_all: none of the references {references} has runs in {sorted(runs)}")
    return pd.concat(frames, ignore_index=True)


def delta_text(row, digits: int = 1) -> str:
    """``"+1.2 [−0.3, +2.7] no detectable difference"``: :func:`~.compare.delta_ci` and the verdict."""
    return f"{delta_ci(row, digits)} {row['verdict']}"


def side_by_side(paired: pd.DataFrame, rule: str, digits: int = 1) -> pd.DataFrame:
    """One row per method, per benchmark its accuracy and its Δ [CI] verdict against each reference,
    under selection ``rule`` (``–`` where a method or a reference was not run on a benchmark)."""
    part = paired[paired["rule"] == rule]
    if part.empty:
        raise KeyError(f"side_by_side: no rows for rule {rule!r}; rules: {sorted(set(paired['rule']))}")
    columns = {}
    for bench, rows in part.groupby("benchmark", sort=False):
        acc = rows.drop_duplicates("label").set_index("label")
        columns[(bench, "target acc (%)")] = pd.Series([mean_std(m, s, digits) for m, s in zip(acc["acc"], acc["acc_std"])],
                                                       index=acc.index)
        for ref, against in rows.groupby("reference", sort=False):
            against = against.set_index("label")
            columns[(bench, f"Δ vs {ref} [95 % CI]")] = pd.Series(
                ["reference" if v == REFERENCE else delta_text(r, digits) for v, (_, r) in
                 zip(against["verdict"], against.iterrows())], index=against.index)
    order = list(dict.fromkeys(part["label"]))
    return pd.DataFrame(columns).reindex(order).fillna("–")


def verdict_counts(paired: pd.DataFrame, reference: str, rule: str) -> pd.DataFrame:
    """Per benchmark: how many methods (the reference excluded) got each verdict against ``reference``."""
    part = paired[(paired["reference"] == reference) & (paired["rule"] == rule) & (paired["verdict"] != REFERENCE)]
    counts = part.groupby(["benchmark", "verdict"], sort=False).size().unstack("verdict", fill_value=0)
    counts["methods"] = counts.sum(axis=1)
    return counts


def beside_papers(runs: dict[str, pd.DataFrame], numbers: pd.DataFrame, comparisons: list[tuple],
                  rule: str, digits: int = 1) -> pd.DataFrame:
    """The papers' Δ and ours for each ``(method, reference, tables)`` of ``comparisons`` (our labels).

    One row per comparison and paper table: the paper's Δ per benchmark it reports (``≈`` when the paper
    gives it only roughly), the paper's selection rule, and per benchmark of ``runs`` our paired Δ
    [95 % CI] and verdict under ``rule`` (``–`` where we did not run both methods there).
    """
    if rule not in RULES:
        raise KeyError(f"beside_papers: unknown selection rule {rule!r}; known: {list(RULES)}")
    rows = []
    for method, reference, tables in comparisons:
        theirs = paper_delta(numbers, method, reference, tables)
        ours = {}
        for bench, table in runs.items():
            pair = table[table["label"].isin([method, reference])]
            if set(pair["label"]) != {method, reference}:
                ours[f"ours: {bench}"] = "–"
                continue
            got = paired_by_seed(pair, reference, rules={rule: RULES[rule]})
            ours[f"ours: {bench}"] = delta_text(got[got["label"] == method].iloc[0], digits)
        for (paper, tab), part in (theirs.groupby(["paper", "table"], sort=False) if not theirs.empty else []):
            row = {"comparison": f"{method} vs {reference}", "paper": f"{paper}, {tab}",
                   "paper's selection": part["selection"].iloc[0]}
            row.update({f"paper: {b}": ("≈ " if a else "") + f"{d:+.{digits}f}"
                        for b, d, a in zip(part["benchmark"], part["delta"], part["approximate"])})
            rows.append({**row, **ours})
        if theirs.empty:
            rows.append({"comparison": f"{method} vs {reference}", "paper": "–", "paper's selection": "–", **ours})
    return pd.DataFrame(rows).set_index(["comparison", "paper"]).fillna("–")

