"""The methods the book compares on each benchmark, and how their run records are found again.

A method's *spec* is ``label -> (registry name, hyperparameter overrides)``, exactly as the chapters
that train it pass them (so a record is recognised by its config, without training anything):

- ``synth_foley`` (Chapters 5 and 8): Base is run through GMP's engine with modulation and
  projection off (``gmp_ablation="base"``, logged), GMP is ``base+gmp`` (logged), the released GMP
  in both variants, the gradient-balancing baselines, and RNA-Net / SimMMDG / Base with the GMP and
  MER plug-ins;
- ``phone_watch`` (Chapter 9): the chapter's methods under their registry names (``gmp+mer`` is
  ``base+gmp+mer``).

Projector and translator widths are the CPU profile's ``hidden`` (:func:`mmdg.methods.width_overrides`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..methods import width_overrides
from .collect import runs_table
from .results import iter_records

LOGGED = {"gmp_log_every": 1}
BALANCING = ("ogm_ge", "grad_blending", "agm", "pcgrad", "mmpareto")


def _with_width(name: str, hp: dict, hidden: int) -> tuple[str, dict]:
    return name, {**hp, **width_overrides(name, hidden)}


def foley_methods(hidden: int) -> dict[str, tuple[str, dict]]:
    """Chapters 5 and 8's fused methods on ``synth_foley``."""
    specs = {"erm": ("erm", {}),
             "base": ("base+gmp", {"gmp_ablation": "base", **LOGGED}),
             "gmp": ("base+gmp", dict(LOGGED)),
             **{name: (name, {}) for name in BALANCING},
             "gmp_released": ("gmp_released", {}),
             "gmp_released (trained disc.)": ("gmp_released", {"released_train_disc": True}),
             "base+mer": _with_width("base+gmp+mer", {"gmp_ablation": "base", **LOGGED}, hidden),
             "gmp+mer": _with_width("base+gmp+mer", dict(LOGGED), hidden)}
    for method in ("rna", "simmmdg"):
        for plugin in ("", "+gmp", "+mer", "+gmp+mer"):
            specs[method + plugin] = _with_width(method + plugin, dict(LOGGED) if "+gmp" in plugin else {}, hidden)
    return specs


def sensor_methods(methods: list[str], hidden: int) -> dict[str, tuple[str, dict]]:
    """Chapter 9's fused methods on ``phone_watch`` (``methods`` as its parameter lists them)."""
    return {m: _with_width("base+gmp+mer" if m == "gmp+mer" else m, {}, hidden) for m in methods}


def matching_records(results_dir: str | Path, keep) -> list[dict]:
    """Complete records below ``results_dir`` whose config satisfies ``keep``; a FileNotFoundError if none."""
    found = [r for _, r in iter_records(Path(results_dir)) if r.get("complete") and keep(r["config"])]
    if not found:
        raise FileNotFoundError(f"no matching run records below {results_dir}: run the chapters that train them "
                                "with the same parameters first (make book does)")
    return found


def labelled_runs(records: list[dict], specs: dict[str, tuple[str, dict]], targets: list, seeds: list) -> pd.DataFrame:
    """:func:`~mmdg.experiments.collect.runs_table` of the fused runs (every modality of the benchmark, or
    several) of ``specs`` on ``targets`` x ``seeds``, with a ``label`` column; other runs are left out.

    Every label must have exactly one run per (target, seed): a missing or duplicated run raises a
    ValueError naming the label and the (target, seed) pairs.
    """
    if not specs:
        raise ValueError("labelled_runs: specs is empty")
    table = runs_table(records)
    if table.empty:
        raise ValueError("labelled_runs: none of the records is complete")
    fused = table["modalities"].str.contains(",") | (table["modalities"] == "")
    table = table[fused & table["target"].isin(targets) & table["seed"].isin(seeds)]
    want = {(name, json.dumps(hp, sort_keys=True)): label for label, (name, hp) in specs.items()}
    labels = [want.get((m, h)) for m, h in zip(table["method"], table["hparams"])]
    table = table.assign(label=labels).dropna(subset=["label"])
    grid = {(t, s) for t in targets for s in seeds}
    problems = []
    for label in specs:
        pairs = list(zip(*[table.loc[table["label"] == label, c] for c in ("target", "seed")]))
        missing = sorted(grid - set(pairs))
        repeated = sorted({p for p in pairs if pairs.count(p) > 1})
        if missing:
            problems.append(f"{label!r} has no run for (target, seed) {missing}")
        if repeated:
            problems.append(f"{label!r} has several runs for {repeated}")
    if problems:
        raise ValueError("labelled_runs: " + "; ".join(problems))
    order = {label: i for i, label in enumerate(specs)}
    return table.sort_values(["label", "target", "seed"], key=lambda c: c.map(order) if c.name == "label" else c,
                             kind="stable").reset_index(drop=True)
