"""The papers' own numbers (``mmdg/resources/paper_numbers.yaml``), checked and as tables.

They are quoted from GMP and MER-DG, measured on EPIC-Kitchens and HAC with the papers' pretrained
backbones; the book's numbers are measured on its CPU benchmarks, so the two can be compared in the
direction and size of an effect, never in absolute accuracy.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

PATH = Path(__file__).resolve().parents[1] / "resources" / "paper_numbers.yaml"
PAPER_KEYS = ("cite", "selection", "runs", "backbones")
REQUIRED = ("paper", "table", "benchmark", "method", "value")
OPTIONAL = {"ours": None, "kind": "accuracy", "split": "target", "measure": "video-audio", "fusion": "concat",
            "ablation": None, "reference": None, "approximate": False, "note": ""}
CHOICES = {"kind": ("accuracy", "delta"), "split": ("target", "source"),
           "measure": ("video-audio", "video", "audio")}
RANGE = {"accuracy": (0.0, 100.0), "delta": (-100.0, 100.0)}


def check(data: dict, source: str = "paper numbers") -> tuple[dict, pd.DataFrame]:
    """``(papers, numbers)`` of a parsed file; a ValueError naming the entry and field if anything is off."""
    if not isinstance(data, dict) or not isinstance(data.get("papers"), dict) or not isinstance(data.get("numbers"), list):
        raise ValueError(f"{source}: expected a mapping with 'papers' (a mapping) and 'numbers' (a list)")
    papers = data["papers"]
    for name, info in papers.items():
        missing = [k for k in PAPER_KEYS if not isinstance(info, dict) or not str(info.get(k) or "").strip()]
        if missing:
            raise ValueError(f"{source}: paper {name!r} lacks {missing}")
    rows = []
    for i, entry in enumerate(data["numbers"]):
        where = f"{source}: numbers[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping, got {entry!r}")
        unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
        missing = [k for k in REQUIRED if entry.get(k) in (None, "")]
        if unknown or missing:
            raise ValueError(f"{where}: " + "; ".join(
                ([f"lacks {missing}"] if missing else []) + ([f"unknown field(s) {unknown}"] if unknown else [])))
        row = {**OPTIONAL, **entry}
        if row["paper"] not in papers:
            raise ValueError(f"{where}: paper {row['paper']!r} is not under 'papers' ({sorted(papers)})")
        for key, allowed in CHOICES.items():
            if row[key] not in allowed:
                raise ValueError(f"{where}: {key} must be one of {list(allowed)}, got {row[key]!r}")
        value = row["value"]
        low, high = RANGE[row["kind"]]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{where}: value must be a number in [{low:g}, {high:g}] ({row['kind']}), got {value!r}")
        if (row["kind"] == "delta") != (row["reference"] is not None):
            raise ValueError(f"{where}: a delta needs a 'reference' (one of ours) and only a delta has one")
        rows.append({**row, "value": float(value), "selection": papers[row["paper"]]["selection"]})
    numbers = pd.DataFrame(rows)
    key = ["paper", "table", "benchmark", "method", "split", "measure", "fusion", "ablation"]
    dup = numbers[numbers.astype({"ablation": str}).duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise ValueError(f"{source}: {len(dup)} entries share {dict(first[key])}")
    return papers, numbers


def load(path: str | Path = PATH) -> tuple[dict, pd.DataFrame]:
    """The papers (selection rule, runs, backbones) and one row per quoted number, each with its paper's rule."""
    path = Path(path)
    return check(yaml.safe_load(path.read_text()), str(path.name))


def paper_table(numbers: pd.DataFrame, table: str, by: str = "method") -> pd.DataFrame:
    """Rows ``by`` x one column per benchmark of one quoted table (target, fused), plus the selection rule."""
    part = numbers[(numbers["table"] == table) & (numbers["split"] == "target") & (numbers["measure"] == "video-audio")]
    if part.empty:
        raise KeyError(f"paper_table: no target numbers for table {table!r}; tables: {sorted(set(numbers['table']))}")
    wide = part.pivot_table(index=by, columns="benchmark", values="value", aggfunc="first", sort=False)
    wide["selection"] = part.groupby(by, sort=False)["selection"].first()
    return wide


def paper_delta(numbers: pd.DataFrame, method: str, reference: str, tables: list[str] | None = None) -> pd.DataFrame:
    """The papers' differences of ``method`` against ``reference`` (our labels) in target fused accuracy.

    From two accuracies of one paper, table and benchmark (concatenation fusion, no ablation), and from
    quoted deltas; only the tables named in ``tables`` if given. Columns: paper, table, benchmark, delta,
    approximate, selection.
    """
    if tables is not None:
        numbers = numbers[numbers["table"].isin(tables)]
    acc = numbers[(numbers["kind"] == "accuracy") & (numbers["split"] == "target") & (numbers["measure"] == "video-audio")
                  & (numbers["fusion"] == "concat") & numbers["ablation"].isna()]
    key = ["paper", "table", "benchmark"]
    pair = acc[acc["ours"] == method].merge(acc[acc["ours"] == reference], on=key, suffixes=("", "_ref"))
    rows = [{**{k: r[k] for k in key}, "delta": r["value"] - r["value_ref"], "approximate": False,
             "selection": r["selection"]} for _, r in pair.iterrows()]
    quoted = numbers[(numbers["kind"] == "delta") & (numbers["ours"] == method) & (numbers["reference"] == reference)]
    rows += [{**{k: r[k] for k in key}, "delta": r["value"], "approximate": bool(r["approximate"]),
              "selection": r["selection"]} for _, r in quoted.iterrows()]
    return pd.DataFrame(rows, columns=[*key, "delta", "approximate", "selection"])
