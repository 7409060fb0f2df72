"""Tables of the missing-modality evaluation stored in run records (see mmdg.evaluation.missing)."""
from __future__ import annotations

import pandas as pd

from ..evaluation.missing import FILLS
from .compare import mean_std

FILL_LABELS = {"zero": "zero-filled", "source_mean": "source mean", "translation": "translated"}


def missing_table(runs: pd.DataFrame, by: str | list[str] = "method", digits: int = 1) -> pd.DataFrame:
    """Target accuracy with each modality missing, per ``by`` group: ``mean ± std`` over seeds.

    ``runs`` is :func:`mmdg.experiments.collect.runs_table`'s frame.  Rows: one per group and
    missing modality; columns: ``all present`` and one per fill (``–`` where a method has no
    translation).  As elsewhere, values are averaged over targets within each seed first.
    Runs recorded before the evaluation existed (no ``missing_full``) are left out.
    """
    by = [by] if isinstance(by, str) else list(by)
    if "missing_full" not in runs.columns:
        raise KeyError("no missing-modality results in these runs (records made before the evaluation existed)")
    runs = runs[runs["missing_full"].notna()]
    mods = sorted({c.split("_", 2)[2] for c in runs.columns
                   if c.startswith("missing_zero_")})
    rows = []
    for _, r in runs.iterrows():
        for m in mods:
            if pd.isna(r.get(f"missing_zero_{m}")):
                continue
            row = {**{k: r[k] for k in by}, "missing": m, "seed": r["seed"], "target": r["target"],
                   "all present": r["missing_full"]}
            row.update({FILL_LABELS[f]: r.get(f"missing_{f}_{m}") for f in FILLS})
            rows.append(row)
    long = pd.DataFrame(rows)
    if long.empty:
        raise KeyError("no missing-modality results in these runs")
    cols = ["all present"] + [FILL_LABELS[f] for f in FILLS]
    per_seed = long.groupby(by + ["missing", "seed"], sort=False)[cols].mean()

    grouped = per_seed.groupby(level=by + ["missing"], sort=False)
    table = grouped.agg(lambda s: mean_std(s.mean(), s.std(ddof=1), digits))  # NaNs skipped
    table["seeds"] = grouped.size()
    return table
