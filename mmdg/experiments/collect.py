"""Collect run records into pandas tables: per target domain + average, mean ± std over seeds.

Only complete runs enter a table; diverged, unfinished and unreadable records are listed in
``runs.attrs["excluded"]`` as ``(path, reason)``.  A table cell holds runs of one configuration
(``config_id``: every setting but the seed and the target): :func:`summarize` refuses a cell that
mixes configurations, or splits it (``mixed="split"``) naming the settings that differ.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from .compare import mean_std
from .results import iter_records
from .selection import hparam_columns, selected_columns

#: Config entries that do not define a table cell's setting (the seed varies within a cell).
NOT_SETTING = ("seed", "target", "device", "num_workers", "eval_batch_size")


def load_runs(results_dir: Path) -> pd.DataFrame:
    """One row per complete run record below ``results_dir``; the rest in ``attrs["excluded"]``."""
    bad: list = []
    runs = runs_table(iter_records(results_dir, bad))
    runs.attrs["excluded"] = bad + runs.attrs.get("excluded", [])
    if runs.empty:
        raise FileNotFoundError(f"no complete run records found below {results_dir}"
                                + "".join(f"\n  excluded {p}: {why}" for p, why in runs.attrs["excluded"]))
    return runs


def setting_of(cfg: dict) -> str:
    """JSON of a run's configuration without the seed and target (and device, workers)."""
    return json.dumps({k: v for k, v in cfg.items() if k not in NOT_SETTING}, sort_keys=True, default=str)


def runs_table(records) -> pd.DataFrame:
    """One row per complete record; ``records`` yields records or (path, record) pairs.

    Records not complete (diverged, unfinished) are left out and listed in ``attrs["excluded"]``.
    Besides the trainer's ``final`` picks, every selection rule of :mod:`.selection` adds columns
    ``<metric>@<rule>`` computed from the history, and the resolved hyperparameters ``hp.<name>``.
    """
    rows, excluded = [], []
    for item in records:
        path, rec = item if isinstance(item, tuple) else ("", item)
        if rec.get("status") == "diverged" or not rec.get("complete", True) or rec["final"] is None:
            why = (rec.get("diverged", {}).get("message", "diverged") if rec.get("status") == "diverged"
                   else "not complete")
            excluded.append((str(path) or f"run {rec.get('run_id', '?')}", why))
            continue
        cfg, env = rec["config"], rec.get("env", {})
        setting = setting_of(cfg)
        rows.append({"benchmark": cfg["benchmark"], "method": cfg["method"], "target": cfg["target"],
                     "seed": cfg["seed"], "run_id": rec["run_id"], "epochs": len(rec["epochs"]),
                     "modalities": ",".join(cfg["modalities"] or []), "fusion": cfg["fusion"],
                     "bench_kwargs": json.dumps(cfg["benchmark_kwargs"], sort_keys=True),
                     "hparams": json.dumps(cfg["hparams"], sort_keys=True), "trace": cfg.get("trace", False),
                     "device": env.get("device_name", ""), "commit": env.get("commit", ""),
                     "code": env.get("code", ""),
                     "date": env.get("date", ""), "path": str(path),
                     "config_id": hashlib.sha256(setting.encode()).hexdigest()[:10], "setting_json": setting,
                     **rec["final"], **selected_columns(rec), **hparam_columns(rec)})
    table = pd.DataFrame(rows)
    table.attrs["excluded"] = excluded
    return table


def _differences(settings: list[str]) -> list[str]:
    """Per setting JSON, ``key=value`` of the entries that are not the same in all of them."""
    dicts = [json.loads(s) for s in settings]
    keys = sorted({k for d in dicts for k in d if len({json.dumps(x.get(k), sort_keys=True) for x in dicts}) > 1})
    return [", ".join(f"{k}={json.dumps(d.get(k), sort_keys=True)}" for k in keys) for d in dicts]


def mixed_cells(runs: pd.DataFrame, by: list[str]) -> list[tuple]:
    """``(by values, target, [differences])`` of every cell holding more than one configuration."""
    if "config_id" not in runs.columns:
        return []
    out = []
    for key, cell in runs.groupby(by + ["target"], sort=True):
        if cell["config_id"].nunique() > 1:
            settings = list(dict.fromkeys(cell["setting_json"]))
            out.append((key[:-1], key[-1], _differences(settings)))
    return out


def split_mixed(runs: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """``runs`` with a ``config`` column naming, in groups that mix configurations, what differs."""
    runs = runs.copy()
    runs["config"] = ""
    for key, group in runs.groupby(by, sort=False):
        if group.groupby("target")["config_id"].nunique().max() > 1:
            settings = list(dict.fromkeys(group["setting_json"]))
            labels = dict(zip(settings, _differences(settings)))
            runs.loc[group.index, "config"] = group["setting_json"].map(labels)
    return runs, by + ["config"]


def summarize(runs: pd.DataFrame, metric: str = "test_acc", by: str | list[str] = "method",
              targets: list[str] | None = None, mixed: str = "raise") -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds per target and of the per-seed average over targets.

    Returns columns ``(target, "mean"|"std")`` plus ``("avg", ...)`` and ``("n_seeds", "")``.
    The average is taken over targets within each seed first, as the papers do.  A cell whose runs
    have different configurations (see :func:`mixed_cells`) raises a ValueError naming what differs,
    or with ``mixed="split"`` becomes one row per configuration (an extra index level ``config``).
    """
    if metric not in runs.columns:
        raise KeyError(f"metric {metric!r} not in the runs table; available: {sorted(runs.columns)}")
    if mixed not in ("raise", "split"):
        raise ValueError(f"summarize: mixed must be 'raise' or 'split', got {mixed!r}")
    by = [by] if isinstance(by, str) else list(by)
    cells = mixed_cells(runs, by)
    if cells and mixed == "raise":
        key, target, diffs = cells[0]
        raise ValueError(f"summarize: the cell {dict(zip(by, key))} / target {target!r} mixes "
                         f"{len(diffs)} configurations ({'; '.join(diffs)})"
                         + (f", and {len(cells) - 1} more cell(s) do" if len(cells) > 1 else "")
                         + "; select one, add the differing setting to `by`, or pass mixed='split'")
    if cells:
        runs, by = split_mixed(runs, by)
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
        table[c] = [mean_std(a, b, digits) for a, b in zip(m, s)]
    table["seeds"] = summary[("n_seeds", "")]
    return table


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
    table = per_seed.groupby(level="model", sort=False).agg(lambda s: mean_std(s.mean(), s.std(ddof=1), digits))
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
    """Where a table's numbers come from: run count, devices, code commits, training-code versions
    (:mod:`mmdg.code_version`; records written before it was recorded say "not recorded"), dates, seeds."""
    if runs.empty:
        raise ValueError("provenance: the runs table is empty")

    def listed(column: str) -> str:
        values = sorted({str(v) for v in runs[column] if str(v)})
        return ", ".join(values) if values else "unknown"

    dates = sorted(str(d) for d in runs["date"] if str(d))
    span = (dates[0][:10] if dates[0][:10] == dates[-1][:10] else f"{dates[0][:10]} to {dates[-1][:10]}") if dates else "unknown"
    count = f"{len(runs)} run" + ("" if len(runs) == 1 else "s")
    codes = [v if isinstance(v, str) else "" for v in (runs["code"] if "code" in runs else [""] * len(runs))]
    known, unknown = sorted({v for v in codes if v}), sum(1 for v in codes if not v)
    if not known:
        code = "training-code version not recorded"
    elif len(known) == 1 and not unknown:
        code = f"one training-code version {known[0]}"
    else:
        code = (f"training-code version{'s' if len(known) > 1 else ''} {', '.join(known)}"
                + (f", not recorded for {unknown} of the runs" if unknown else ""))
    return (f"Measured: {count} on {listed('device')}, code commit {listed('commit')}, {code}, "
            f"{span}; seeds {sorted(set(int(s) for s in runs['seed']))}.")
