"""Compute budget of the papers' tables: FLOPs per step (counted) and GPU hours (an estimate).

FLOPs come from :mod:`mmdg.flops` (matrix multiplications and convolutions, forward and backward,
counted on the ``meta`` device at the reference clip sizes).  Hours = FLOPs / (peak x utilisation):
an *estimate* whose utilisation is an assumption, not a measurement.  Per run: ``epochs`` x
``floor(train clips / batch)`` steps, plus each epoch's evaluation forward of the source-validation
and target clips; with the trunk cache, K trunk forwards per train clip and one per evaluation clip
once, then only the tails.  Clip counts are the packaged split files'.
"""
from __future__ import annotations

import pandas as pd

from ..data import build_benchmark
from ..data.video_datasets import ClipSettings
from ..flops import paper_forward_flops, paper_step_flops


def reference_shapes(modalities) -> tuple[dict, dict]:
    """Training and evaluation input shapes of the reference clip settings."""
    s = ClipSettings()
    train = s.input_shapes(modalities)
    evals = {"video": (3, s.rgb_frames, s.rgb_eval_crop, s.rgb_eval_crop),
             "flow": (2, s.flow_frames, s.flow_eval_crop, s.flow_eval_crop), "audio": s.audio_shape()}
    return train, {m: evals[m] for m in modalities}


def epic_clip_counts() -> dict[str, dict[str, int]]:
    bench = build_benchmark("epic_kitchens")  # split files only
    return {d: {s: len(bench.segments(d, s)) for s in ("train", "test")} for d in bench.domains}


def table_budget(rows: list[tuple[str, str, str]], epochs: int = 20, batch_size: int = 16, seeds: int = 5,
                 peak_tflops: float = 312.0, utilisation: float = 0.3, cache_views: int = 4) -> pd.DataFrame:
    """One line per (table, modalities, method): counted FLOPs per step and estimated GPU hours.

    ``rows``: (table name, comma-separated modalities, method); every run is 3 EPIC-Kitchens targets
    x ``seeds``; ``peak_tflops`` x ``utilisation`` is the assumed sustained rate.
    """
    counts = epic_clip_counts()
    domains = list(counts)
    rate = peak_tflops * 1e12 * utilisation
    out, forwards = [], {}
    for table, mods, method in rows:
        train_shapes, eval_shapes = reference_shapes(mods.split(","))
        step = paper_step_flops(train_shapes, 8, batch_size, method)
        fwd = forwards[mods] = forwards.get(mods) or paper_forward_flops(eval_shapes, 8)
        full = cached = 0.0
        for target in domains:
            sources = [d for d in domains if d != target]
            n_train = sum(counts[d]["train"] for d in sources)
            n_eval = sum(counts[d]["test"] for d in sources) + counts[target]["test"]
            steps = epochs * (n_train // batch_size)
            full += steps * step["step"] + epochs * n_eval * fwd["forward"]
            cached += (cache_views * n_train * step["trunk_forward"] / batch_size + n_eval * fwd["trunk_forward"]
                       + steps * step["tail_step"] + epochs * n_eval * (fwd["forward"] - fwd["trunk_forward"]))
        out.append({"table": table, "modalities": mods, "method": method,
                    "TFLOP per step": step["step"] / 1e12, "frozen-trunk share": step["trunk_forward"] / step["step"],
                    "runs": len(domains) * seeds,
                    "GPU hours (estimate)": seeds * full / rate / 3600,
                    f"with --cache-trunk {cache_views} (estimate)": seeds * cached / rate / 3600})
    return pd.DataFrame(out).set_index(["table", "modalities", "method"])
