"""Runs with Fusion-Overfitting diagnostics: train, then probe, measure and store it all in the record.

A diagnosed run is an ordinary run (same config, same record path) whose record also holds
``diagnostics`` (:func:`mmdg.diagnostics.fusion_overfitting_report` of the model after the
last epoch) and, per epoch, the feature entropy / effective rank of the source-train and target sets
(``epochs[i]["features"]``).  :func:`diagnostics_table` flattens such records for the book.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..diagnostics import FeatureTracker, fusion_overfitting_report
from ..train import RunConfig, build_run, train
from .compare import mean_std
from .results import RunLock, read_record, write_record
from .sweep import lock_path, record_path, shared_benchmark, when_free


def run_diagnosed(cfg: RunConfig, results_dir: Path | None = None, track: bool = True,
                  track_samples: int = 512, overwrite: bool = False, progress: bool = False,
                  poll: float = 5.0) -> dict:
    """Train ``cfg`` and diagnose its final model; reuse the record in ``results_dir`` if it has them.

    The report is taken on the model after the last epoch (the trainer keeps no other weights);
    the record's ``final`` still gives the accuracies at the source-validation-selected epoch.
    With ``results_dir``, the run holds its run lock while it trains, and waits while another live
    process holds it (as :func:`~.sweep.record_of`): two chapters filling one folder share the work.
    """
    if results_dir is None:
        return _diagnosed(cfg, track, track_samples, progress)
    path = record_path(results_dir, cfg)

    def attempt() -> dict:
        with RunLock(lock_path(results_dir, cfg)):
            plain = read_record(path) if path.exists() and not overwrite else None
            if plain is not None and "diagnostics" in plain:
                return plain
            record = _diagnosed(cfg, track, track_samples, progress)
            # a plain record of the same run is replaced with the diagnosed one
            write_record(path, record, overwrite=overwrite or plain is not None)
            return record
    return when_free(attempt, poll)


def _diagnosed(cfg: RunConfig, track: bool, track_samples: int, progress: bool) -> dict:
    bench, split, _ = build_run(cfg, benchmark=shared_benchmark(cfg))
    tracker = (FeatureTracker({"train": split.train, "target": split.test}, max_samples=track_samples)
               if track else None)
    record = train(cfg, benchmark=bench, split=split, keep_model=True, on_epoch_end=tracker, progress=progress)
    method = record.pop("_method")
    record["diagnostics"] = fusion_overfitting_report(method.model, split, seed=cfg.seed)
    return record


def diagnostics_table(records, label=lambda rec: rec["config"]["method"]) -> pd.DataFrame:
    """One row per (run, modality): probe accuracies, feature measures and shuffle reliance.

    Columns: ``label, target, seed, modality, probe_val, probe_target, entropy_per_dim_train,
    effective_rank_train, entropy_per_dim_target, effective_rank_target, reliance_val,
    reliance_target`` (reliance: fused-accuracy drop in points when this modality is re-paired
    within class and domain; missing for single-modality runs).
    """
    rows = []
    for rec in records:
        diag, cfg = rec["diagnostics"], rec["config"]
        for m in cfg["modalities"] or [k for k in diag["probe"] if k != "concat"]:
            probe = diag["probe"][m]
            row = {"label": label(rec), "target": cfg["target"], "seed": cfg["seed"], "modality": m,
                   "probe_val": probe["val"], "probe_target": probe["target"]}
            for s in ("train", "target"):
                row[f"entropy_per_dim_{s}"] = diag["stats"][s][m]["entropy_per_dim"]
                row[f"effective_rank_{s}"] = diag["stats"][s][m]["effective_rank"]
            for s in ("val", "target"):
                row[f"reliance_{s}"] = diag["reliance"].get(s, {}).get(m, {}).get("drop", float("nan"))
            rows.append(row)
    return pd.DataFrame(rows)


def tracked_table(records, label=lambda rec: rec["config"]["method"]) -> pd.DataFrame:
    """Per-epoch feature measures of diagnosed runs: one row per (run, epoch, set, modality)."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        for e in rec["epochs"]:
            for s, measures in e.get("features", {}).items():
                for m, st in measures["stats"].items():
                    rows.append({"label": label(rec), "target": cfg["target"], "seed": cfg["seed"],
                                 "epoch": e["epoch"], "set": s, "modality": m,
                                 "entropy_per_dim": st["entropy_per_dim"],
                                 "effective_rank": st["effective_rank"]})
    return pd.DataFrame(rows)


def run_label(rec: dict) -> str:
    """``uni-<modality>`` for single-modality runs, else the method name."""
    mods = rec["config"]["modalities"]
    return f"uni-{mods[0]}" if mods and len(mods) == 1 else rec["config"]["method"]


def fusion_overfitting_runs(base: RunConfig, targets, seeds, results_dir: Path | None = None,
                            methods=("erm", "erm+mer"), unimodal: bool = True, progress: bool = False) -> list[dict]:
    """Diagnosed runs per target and seed: each modality alone (method ``erm``, if ``unimodal``),
    then every method in ``methods`` on all modalities of ``base``; existing records are reused.

    ``methods`` is a list of names (run with ``base.hparams``) or a mapping name -> hparams.
    """
    methods = dict(methods) if isinstance(methods, Mapping) else {m: base.hparams for m in methods}
    mods = list(base.modalities) if base.modalities else None
    records = []
    for target in targets:
        for seed in seeds:
            cfg = replace(base, target=target, seed=seed)
            if unimodal:
                if mods is None:
                    raise ValueError("fusion_overfitting_runs with unimodal=True needs base.modalities")
                for m in mods:
                    records.append(run_diagnosed(replace(cfg, method="erm", modalities=[m], hparams={}),
                                                 results_dir, progress=progress))
            for method, hparams in methods.items():
                records.append(run_diagnosed(replace(cfg, method=method, hparams=dict(hparams)), results_dir,
                                             progress=progress))
    return records


def seed_summary(table: pd.DataFrame, value: str, rows: str = "label", cols: str = "modality",
                 digits: int = 1) -> pd.DataFrame:
    """``mean ± std`` over seeds of ``value`` averaged over targets within each seed, as rows x cols."""
    per_seed = table.groupby([rows, cols, "seed"], sort=False)[value].mean()
    stats = per_seed.groupby(level=[rows, cols], sort=False).agg(["mean", "std"])
    text = [mean_std(m, s, digits) for m, s in zip(stats["mean"], stats["std"])]
    out = pd.Series(text, index=stats.index).unstack(cols).fillna("–")
    return out.reindex(index=list(dict.fromkeys(table[rows])), columns=list(dict.fromkeys(table[cols])))
