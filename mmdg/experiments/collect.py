"""Collect run records into pandas tables: per target domain + average, mean ± std over seeds."""
from __future__ import annotations

import json
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
                     "bench_kwargs": json.dumps(cfg["benchmark_kwargs"], sort_keys=True),
                     "hparams": json.dumps(cfg["hparams"], sort_keys=True), "trace": cfg.get("trace", False),
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


def _pm(values: pd.Series, digits: int) -> str:
    m, s = values.mean(), values.std(ddof=1)
    return f"{m:.{digits}f}" if pd.isna(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def modality_table(runs: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Source-validation and target accuracy of each model and of each modality branch (GMP Table 1 style).

    Single-modality runs give a row ``uni-<modality>``; multimodal runs give ``<method> (fused)`` and
    ``<method>: <modality> branch`` (the argmax of that modality's logit share).  Values are
    averaged over targets within each seed, then shown as mean ± std over seeds.
    """
    entries = []
    for _, r in runs.iterrows():
        mods = [m for m in str(r["modalities"]).split(",") if m]
        if len(mods) == 1:
            entries.append((f"uni-{mods[0]}", r, "val_acc", "test_acc"))
            continue
        entries.append((f"{r['method']} (fused)", r, "val_acc", "test_acc"))
        for m in mods or [c[len("test_acc_"):] for c in runs.columns if c.startswith("test_acc_") and pd.notna(r[c])]:
            entries.append((f"{r['method']}: {m} branch", r, f"val_acc_{m}", f"test_acc_{m}"))
    long = pd.DataFrame([{"model": name, "seed": r["seed"], "target": r["target"],
                          "source (val)": r[v], "target (test)": r[t]} for name, r, v, t in entries])
    per_seed = long.groupby(["model", "seed"], sort=False)[["source (val)", "target (test)"]].mean()
    table = per_seed.groupby(level="model", sort=False).agg(lambda s: _pm(s, digits))
    table["seeds"] = per_seed.groupby(level="model", sort=False).size()
    return table


def trace_frame(record: dict) -> pd.DataFrame:
    """Per-step strategy logs of a run with ``trace=True``: columns epoch, step, t, key, modality, value.

    ``t`` is the fractional epoch (``epoch + step / steps logged that epoch``); keys such as
    ``gmp/norm_c_audio`` are split into key ``norm_c`` and modality ``audio``.
    """
    rows = []
    for e in record["epochs"]:
        trace = e.get("trace") or {}
        steps = trace.get("_step", [])
        span = max(steps, default=0) + 1
        for name, values in trace.items():
            if name == "_step":
                continue
            key, _, mod = name.split("/")[-1].rpartition("_")
            for step, v in zip(steps, values):
                rows.append({"epoch": e["epoch"], "step": step, "t": e["epoch"] + step / span,
                             "key": key, "modality": mod, "value": v})
    if not rows:
        raise ValueError("the record holds no per-step trace: run it with RunConfig(trace=True) and a "
                         "strategy that logs (e.g. hparams gmp_log_every=1)")
    return pd.DataFrame(rows)


def provenance(runs: pd.DataFrame) -> str:
    """Where a table's numbers come from: run count, devices, code commits and dates of its records."""
    if runs.empty:
        raise ValueError("provenance: the runs table is empty")

    def listed(column: str) -> str:
        values = sorted({str(v) for v in runs[column] if str(v)})
        return ", ".join(values) if values else "unknown"

    dates = sorted(str(d) for d in runs["date"] if str(d))
    span = (dates[0][:10] if dates[0][:10] == dates[-1][:10] else f"{dates[0][:10]} to {dates[-1][:10]}") if dates else "unknown"
    count = f"{len(runs)} run" + ("" if len(runs) == 1 else "s")
    return (f"Measured: {count} on {listed('device')}, code commit {listed('commit')}, "
            f"{span}; seeds {sorted(set(int(s) for s in runs['seed']))}.")
