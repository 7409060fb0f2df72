"""Benchmark measurements on disk (one JSON each, written atomically) and the book's tables of them.

``benchmarks/gmp_overhead.py --save DIR`` and ``benchmarks/loader_throughput.py --save DIR``
write one file per configuration; the book renders every file it finds, with the machine, date
and code commit of the measurement.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from .results import atomic_write_bytes, dumps

KINDS = ("gmp_overhead", "loader_throughput")


def write_measurement(directory: Path, kind: str, name: str, record: dict, env: dict) -> Path:
    """Write ``record`` (plus ``kind`` and ``env``) as ``directory/<kind>_<name>.json``; replaces it."""
    if kind not in KINDS:
        raise ValueError(f"measurement kind must be one of {KINDS}, got {kind!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"measurement name must use letters, digits, '_', '.', '-' only, got {name!r}")
    path = Path(directory) / f"{kind}_{name}.json"
    atomic_write_bytes(path, dumps({"kind": kind, "env": env, **record}))
    return path


def read_measurements(directories, kind: str) -> list[dict]:
    """Every ``kind`` measurement in ``directories`` (missing directories are skipped), oldest first."""
    found = []
    for d in directories:
        for path in sorted(Path(d).glob(f"{kind}_*.json")) if Path(d).is_dir() else []:
            try:
                rec = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"measurement {path} is not valid JSON: {e}") from e
            if rec.get("kind") != kind or "env" not in rec:
                raise ValueError(f"measurement {path}: expected kind {kind!r} with an 'env' entry")
            found.append(rec)
    return sorted(found, key=lambda r: r["env"].get("date", ""))


def _measured(env: dict) -> str:
    return f"{env.get('date', '?')[:10]}, commit {env.get('commit', '?')}"


def _machine(env: dict) -> str:
    if env.get("device") == "cpu":
        return f"CPU, {env.get('threads', '?')} torch threads"
    return env.get("device_name", "?")


def overhead_table(records: list[dict]) -> pd.DataFrame:
    """GMP step time against Base: one row per measured configuration (times in ms, ratios as text)."""
    rows = []
    for r in records:
        ms, ratio = r["median_ms"], r["ratio"]
        rows.append({"config": r["config"], "machine": _machine(r["env"]), "settings": r["settings"],
                     "Base (ms)": f"{ms['base (sum)']:.1f}", "GMP fast (ms)": f"{ms['gmp fast']:.1f}",
                     "GMP naive (ms)": f"{ms['gmp naive']:.1f}", "GMP fast / Base": f"{ratio['gmp fast']:.2f}×",
                     "GMP naive / Base": f"{ratio['gmp naive']:.2f}×", "target": f"≤ {r['target']:.2f}×",
                     "measured": _measured(r["env"])})
    return pd.DataFrame(rows)


def throughput_table(records: list[dict]) -> pd.DataFrame:
    """Loader clips per second: one row per (measurement, benchmark), one column per worker count."""
    rows = []
    for r in records:
        for bench, rates in r["clips_per_s"].items():
            rows.append({"benchmark": bench, "machine": r["env"].get("machine", "?"),
                         **{f"{w} workers": f"{v:.2f}" for w, v in rates.items()},
                         "measured": _measured(r["env"])})
    return pd.DataFrame(rows)
