"""Model selection after the fact, from the per-epoch history of a run record (DomainBed style).

A rule picks one epoch of ``record["epochs"]`` (each with ``val`` and ``test`` metrics); the run's
result is the target accuracy at that epoch.  ``source_val`` is the protocol (best source-domain
validation accuracy, the later epoch on ties, as the trainer's ``final`` and SimMMDG's reference);
``last`` takes the final epoch; ``oracle`` picks by target accuracy and is labelled ORACLE
wherever it appears: it peeks at the test domain and is an upper bound, not a result.
"""
from __future__ import annotations


class SelectionMethod:
    """Picks one epoch index of a run's history."""

    name = ""
    label = ""
    oracle = False

    @classmethod
    def pick(cls, epochs: list[dict]) -> int:
        raise NotImplementedError

    @classmethod
    def select(cls, record: dict) -> dict:
        """``{selected_epoch, val_acc, test_acc, val_acc_<m>, test_acc_<m>}`` of the picked epoch."""
        epochs = record.get("epochs") or []
        if not epochs:
            raise ValueError(f"run {record.get('run_id', '?')}: no per-epoch history to select from")
        e = epochs[cls.pick(epochs)]
        out = {"selected_epoch": e["epoch"], "val_acc": e["val"]["acc"], "test_acc": e["test"]["acc"]}
        for part in ("val", "test"):
            out.update({f"{part}_{k}": v for k, v in e[part].items() if k.startswith("acc_")})
        return out


class SourceVal(SelectionMethod):
    name, label = "source_val", "best source-validation epoch"

    @classmethod
    def pick(cls, epochs):
        return max(range(len(epochs)), key=lambda i: (epochs[i]["val"]["acc"], i))


class LastEpoch(SelectionMethod):
    name, label = "last", "last epoch"

    @classmethod
    def pick(cls, epochs):
        return len(epochs) - 1


class OracleTarget(SelectionMethod):
    name, label, oracle = "oracle", "ORACLE: best target epoch (peeks at the test domain; not a result)", True

    @classmethod
    def pick(cls, epochs):
        return max(range(len(epochs)), key=lambda i: (epochs[i]["test"]["acc"], i))


SELECTIONS: dict[str, type[SelectionMethod]] = {m.name: m for m in (SourceVal, LastEpoch, OracleTarget)}


def selection(name: str) -> type[SelectionMethod]:
    if name not in SELECTIONS:
        raise ValueError(f"--selection {name!r} is unknown; expected one of {', '.join(SELECTIONS)}")
    return SELECTIONS[name]


def selected_columns(record: dict) -> dict:
    """Every rule's picks as columns ``<metric>@<rule>`` (e.g. ``test_acc@source_val``)."""
    out = {}
    for name, rule in SELECTIONS.items():
        out.update({f"{k}@{name}": v for k, v in rule.select(record).items()})
    return out


def hparam_columns(record: dict) -> dict:
    """The run's resolved hyperparameters as columns ``hp.<name>``.

    Records store the method's full set (``record["hparams"]``); older records only the overrides,
    completed here from the method's current defaults.
    """
    hp = record.get("hparams")
    if hp is None:
        from ..methods import resolve
        cfg = record["config"]
        try:
            hp = resolve(cfg["method"], cfg.get("hparams") or {})[2]
        except (KeyError, TypeError, ValueError):
            hp = dict(cfg.get("hparams") or {})
    return {f"hp.{k}": v for k, v in sorted(hp.items())}
