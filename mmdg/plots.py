"""Figures of the book, drawn from run tables (see :mod:`mmdg.experiments.collect`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def grouped_bars(runs: pd.DataFrame, columns: dict[str, str], group: str = "target", ax=None,
                 ylabel: str = "accuracy (%)"):
    """Bars of the mean (error bar: std over seeds) of each ``columns`` entry, one group per ``group`` value.

    ``columns`` maps a column of ``runs`` to its legend label.  Returns the axes.
    """
    missing = [c for c in [group, *columns] if c not in runs.columns]
    if missing:
        raise KeyError(f"runs table lacks columns {missing}; it has {sorted(runs.columns)}")
    ax = ax or plt.subplots()[1]
    groups = list(dict.fromkeys(runs[group]))
    width = 0.8 / len(columns)
    x = np.arange(len(groups))
    for i, (col, label) in enumerate(columns.items()):
        stats = runs.groupby(group)[col].agg(["mean", "std"]).reindex(groups)
        ax.bar(x + (i - (len(columns) - 1) / 2) * width, stats["mean"], width,
               yerr=stats["std"].fillna(0.0), capsize=3, label=label)
    ax.set_xticks(x, groups)
    ax.set_xlabel(group)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small", ncols=min(len(columns), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    return ax


def _video_frame(video, t: int):
    """(3, T, H, W) video normalised as (x - 0.5) / 0.25 -> (H, W, 3) image in [0, 1]."""
    return (video[:, t] * 0.25 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()


def clip_grid(samples: dict[str, dict], frames: int = 3, title: str | None = None):
    """One row per named sample: ``frames`` video frames, the mid-clip flow field and the spectrogram.

    ``samples`` maps a row label to a sample's ``inputs`` dict (``video`` (3, T, H, W) normalised as
    ``(x - 0.5) / 0.25``; optional ``flow`` (2, T, H, W) and ``audio`` (1, F, T)).  Returns the figure.
    """
    first = next(iter(samples.values()))
    if "video" not in first:
        raise KeyError(f"clip_grid needs a 'video' modality; the samples have {sorted(first)}")
    extra = [m for m in ("flow", "audio") if m in first]
    cols = frames + len(extra)
    fig, axes = plt.subplots(len(samples), cols, figsize=(1.7 * cols + 1.0, 1.7 * len(samples)),
                             squeeze=False, gridspec_kw={"width_ratios": [1] * frames + [1] * ("flow" in extra)
                                                         + [1.8] * ("audio" in extra)})
    for row, (label, x) in zip(axes, samples.items()):
        steps = np.linspace(0, x["video"].shape[1] - 1, frames).round().astype(int)
        for ax, t in zip(row, steps):
            ax.imshow(_video_frame(x["video"], int(t)))
            ax.set_title(f"frame {t}", fontsize="x-small")
        col = frames
        if "flow" in extra:
            f = x["flow"][:, x["flow"].shape[1] // 2].numpy()
            mag = np.hypot(f[0], f[1])
            row[col].imshow(mag, cmap="magma")
            h, w = mag.shape
            s = max(1, h // 8)
            yy, xx = np.mgrid[0:h:s, 0:w:s]
            row[col].quiver(xx, yy, f[0, ::s, ::s], f[1, ::s, ::s], color="cyan", angles="xy")
            row[col].set_title("flow (mid clip)", fontsize="x-small")
            col += 1
        if "audio" in extra:
            row[col].imshow(x["audio"][0].numpy(), origin="lower", aspect="auto", cmap="viridis")
            row[col].set_title("log-mel spectrogram", fontsize="x-small")
        row[0].set_ylabel(label, fontsize="small")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig
