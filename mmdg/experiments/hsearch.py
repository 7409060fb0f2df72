"""Hyperparameter search (DomainBed protocol): the default and N random draws per method and target.

Trial 0 is the method's defaults, trial t >= 1 the seeded draw :func:`mmdg.methods.sample_hparams`
gives (hyperparameters given with ``--hp`` stay fixed in every trial).  Every trial trains with the
first requested seed; the best trial of each (method, target) is the one with the highest
source-validation accuracy at its best source-validation epoch (:class:`~.selection.SourceVal`; a
tie goes to the lower trial, so the default wins ties), never by target accuracy.  The chosen
setting is then trained with every requested seed (its first seed is the search run, reused).
Trials are ordinary runs: their records live with the others and relaunching skips them.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..methods import non_default
from ..train import RunConfig
from .selection import SourceVal


def check_trials(trials) -> int:
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise ValueError(f"--hparam-trials must be an integer >= 0 (random draws besides the default), "
                         f"got {trials!r}")
    return trials


def trial_config(cfg: RunConfig, trial: int, fixed: dict) -> RunConfig:
    """``cfg`` with trial ``trial``'s hyperparameters (``fixed`` ones kept); defaults left implicit,
    so trial 0 is the run an ordinary sweep would do (same run id)."""
    from ..methods import sample_hparams  # the registry's seeded draws (trial 0: the defaults)
    hp = {**sample_hparams(cfg.method, trial), **fixed}
    return dataclasses.replace(cfg, hparams=non_default(cfg.method, hp))


def trial_configs(configs: list[RunConfig], trials: int) -> dict[tuple, list[RunConfig]]:
    """Per (method, target): the search runs of trials 0..``trials`` with the grid's first seed."""
    check_trials(trials)
    seed = configs[0].seed
    out: dict[tuple, list[RunConfig]] = {}
    for c in configs:
        key = (c.method, c.target)
        if key not in out:
            out[key] = [trial_config(dataclasses.replace(c, seed=seed), t, c.hparams) for t in range(trials + 1)]
    return out


def best_trial(records: list[dict | None]) -> int:
    """Index of the record with the best source validation (lowest index on ties); None = not done."""
    scores = [(SourceVal.select(r)["val_acc"], -i) for i, r in enumerate(records)
              if r is not None and r.get("complete", True) and r.get("status") != "diverged"]
    if not scores:
        raise ValueError("hyperparameter search: no trial finished, nothing to choose from")
    return -max(scores)[1]


def search(configs: list[RunConfig], trials: int, run, read, log=print) -> tuple[list[RunConfig], dict]:
    """Run the search and return (the retrain configs of every requested seed, the choices).

    ``run(configs)`` trains configs (a launcher); ``read(cfg)`` returns a run's record or None.
    ``choices[(method, target)]`` is ``{"trial", "val_acc", "hparams", "trials"}``.
    """
    per_cell = trial_configs(configs, trials)
    run([c for cs in per_cell.values() for c in cs])
    choices, retrain = {}, []
    for (method, target), cs in per_cell.items():
        records = [read(c) for c in cs]
        best = best_trial(records)
        vals = [None if r is None else SourceVal.select(r)["val_acc"] for r in records]
        choices[(method, target)] = {"trial": best, "val_acc": vals[best], "hparams": cs[best].hparams,
                                     "trials": vals}
        log(f"hparam search {method} -> {target}: trial {best} of 0..{trials} (source val {vals[best]:.2f}), "
            f"hparams {cs[best].hparams or 'defaults'}")
        retrain += [dataclasses.replace(c, hparams=cs[best].hparams) for c in configs
                    if (c.method, c.target) == (method, target)]
    return retrain, choices


def launch_search(configs: list[RunConfig], trials: int, results_dir, log=print, **launch_kwargs):
    """:func:`search` through a launcher; returns (the summary of both phases, the choices)."""
    from pathlib import Path

    from .launchers import Summary, launch
    from .results import BadRecord, read_record
    from .sweep import record_path
    summary = Summary()

    def run(cs):
        summary.outcomes += launch(cs, results_dir, log=log, **launch_kwargs).outcomes

    def read(c):
        path = record_path(Path(results_dir), c)
        try:
            return read_record(path) if path.exists() else None
        except BadRecord:
            return None

    retrain, choices = search(configs, trials, run, read, log)
    run(retrain)
    return summary, choices


def tuned_runs(specs: dict[str, tuple[str, dict]], base: RunConfig, targets: list, seeds: list, trials: int,
               results_dir) -> tuple[list[dict], pd.DataFrame]:
    """The fair protocol for a chapter: every method of ``specs`` (``label -> (registry name, fixed
    hyperparameters)``) searched with the same ``trials`` on ``base``, then its choice per target
    trained with every seed (records read or trained through :func:`~.sweep.record_of`).

    Returns the retrained records (each with ``label``) and one row per (label, target): the chosen
    trial, every trial's source-validation accuracy and the chosen hyperparameters (``{}``: defaults).
    """
    from .sweep import record_of
    label_of = {name: label for label, (name, _) in specs.items()}
    if len(label_of) != len(specs):
        raise ValueError(f"tuned_runs: two labels share a registry name in {specs}")
    configs = [dataclasses.replace(base, method=name, hparams=dict(hp), target=t, seed=s)
               for name, hp in specs.values() for t in targets for s in seeds]
    read = lambda c: record_of(c, results_dir)  # noqa: E731  (trains a run that has no record yet)
    retrain, choices = search(configs, trials, lambda _: None, read, log=lambda _: None)
    records = [{**read(c), "label": label_of[c.method]} for c in retrain]
    fixed = dict(specs.values())
    rows = [{"label": label_of[m], "target": t, "trial": ch["trial"], "source val per trial": ch["trials"],
             "hparams": {k: v for k, v in ch["hparams"].items() if fixed[m].get(k) != v}}
            for (m, t), ch in choices.items()]
    return records, pd.DataFrame(rows)
