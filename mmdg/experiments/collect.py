"""Collect run records into pandas tables: per target domain + average, mean ± std over seeds."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .results import iter_records


def load_runs(results_dir: Path) -> pd.DataFrame:
    """One row per complete run record below ``results_dir``."""
    runs = runs_table(iter_records(results_dir))
    if runs.empty:
        raise FileNotFoundError(f"no complete run records found below {results_dir}")
    return runs


def runs_table(records) -> pd.DataFrame:
    """One row per complete record; ``records`` yields records or (path, record) pairs."""
    rows = []
    for item in records:
        path, rec = item if isinstance(item, tuple) else ("", item)
        if not rec.get("complete", True) or rec["final"] is None:
            continue
        cfg, env = rec["config"], rec.get("env", {})
        rows.append({"benchmark": cfg["benchmark"], "method": cfg["method"], "target": cfg["target"],
                     "seed": cfg["seed"], "run_id": rec["run_id"], "epochs": len(rec["epochs"]),
                     "modalities": ",".join(cfg["modalities"] or []), "fusion": cfg["fusion"],
                     "device": env.get("device_name", ""), "commit": env.get("commit", ""),
                     "date": env.get("date", ""), "path": str(path), **rec["final"]})
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, metric: str = "test_acc", by: str | list[str] = "method",
              targets: list[str] | None = None) -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds per target and of the per-seed average over targets.

    Returns columns ``(target, "mean"|"std")`` plus ``("avg", ...)`` and ``("n_seeds", "")``.
    The average is taken over targets within each seed first, as the papers do.
    """
    if metric not in runs.columns:
        raise KeyError(f"metric {metric!r} not in the runs table; available: {sorted(runs.columns)}")
    by = [by] if isinstance(by, str) else list(by)
    targets = targets or sorted(runs["target"].unique())
    wide = runs.pivot_table(index=by + ["seed"], columns="target", values=metric, aggfunc="mean")
    wide = wide[[t for t in targets if t in wide.columns]]
    wide["avg"] = wide.mean(axis=1, skipna=False)
    grouped = wide.groupby(level=by, sort=False)
    out = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1)}, axis=1).swaplevel(axis=1)
    cols = [(t, s) for t in list(wide.columns) for s in ("mean", "std")]
    out = out[cols]
    out[("n_seeds", "")] = grouped.size()
    return out


def format_summary(summary: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``mean ± std`` strings, one column per target plus ``avg``."""
    cols = [c for c in summary.columns.get_level_values(0).unique() if c != "n_seeds"]
    table = pd.DataFrame(index=summary.index)
    for c in cols:
        m, s = summary[(c, "mean")], summary[(c, "std")]
        table[c] = [("–" if pd.isna(a) else f"{a:.{digits}f}" if pd.isna(b) else f"{a:.{digits}f} ± {b:.{digits}f}")
                    for a, b in zip(m, s)]
    table["seeds"] = summary[("n_seeds", "")]
    return table
