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
