"""Figures of the book, drawn from run tables (see :mod:`mmdg.experiments.collect`), and the book's figure style.

:func:`style` (called by :func:`mmdg.notebook.setup`) sets what every figure shares: 150 dpi, readable
font sizes, the Okabe–Ito colour-blind-safe palette paired with one marker per series (lines differ by
marker as well as colour). :func:`legend_outside` puts a legend beside or above the axes, never over data.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib import ticker
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

DPI = 150
# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
HATCHES = ["", "//", "..", "xx", "\\\\", "++"]  # bars differ by hatch as well as colour
STYLE = {"figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "tight", "figure.figsize": (6.4, 3.6),
         "font.size": 10, "axes.titlesize": "medium", "axes.labelsize": "medium", "legend.fontsize": "small",
         "legend.title_fontsize": "small", "xtick.labelsize": "small", "ytick.labelsize": "small",
         "lines.markersize": 5, "axes.grid": True, "grid.alpha": 0.3,
         "axes.prop_cycle": cycler(color=OKABE_ITO) + cycler(marker=MARKERS),
         "image.cmap": "viridis"}
PLACES = {"right": {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)},
          "above": {"loc": "lower center", "bbox_to_anchor": (0.5, 1.02)}}


def style() -> None:
    """Set the book's figure style (:data:`STYLE`); in IPython also render inline figures as PNG at :data:`DPI`."""
    plt.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        set_matplotlib_formats("png", dpi=DPI)


def legend_outside(ax, where: str = "right", handles=None, labels=None, **kwargs):
    """A legend of ``ax`` placed ``where`` ('right' or 'above') outside the axes, so it covers no data.

    ``handles``/``labels`` default to the axes' labelled artists; other keywords go to ``Axes.legend``.
    Returns the legend (already added to ``ax``; a second call keeps the first via ``ax.add_artist``).
    """
    if where not in PLACES:
        raise ValueError(f"legend_outside: where must be one of {sorted(PLACES)}, got {where!r}")
    if handles is None:
        handles, found = ax.get_legend_handles_labels()
        labels = found if labels is None else labels
    previous = ax.get_legend()
    legend = ax.legend(handles, labels, borderaxespad=0.0, frameon=False, **{**PLACES[where], **kwargs})
    if previous is not None:
        ax.add_artist(previous)
    return legend


def log_ticks(axis) -> None:
    """Readable labels on a log ``axis`` (``ax.xaxis`` / ``ax.yaxis``), set after the data are drawn.

    Over less than about a decade the default log ticks label one or two values; here the view gets
    about five plain-number labels (``%g``): linear steps inside a decade, 1-2-5 steps over a few decades,
    powers of ten beyond.
    """
    if axis.get_scale() != "log":
        raise ValueError(f"log_ticks: the axis must have a log scale, got {axis.get_scale()!r}")
    lo, hi = sorted(axis.get_view_interval())
    decades = np.log10(hi / lo)
    if decades < 1.0:
        axis.set_major_locator(ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    else:
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def class_scatter(ax, xy, label, group, classes: list[str], group_title: str = "domain", markers=MARKERS,
                  key: bool = True, **kwargs):
    """Points ``xy`` (N, 2) coloured by class ``label`` (N ints indexing ``classes``), one of ``markers`` per
    ``group`` value (N strings, e.g. the domain), and (``key``) a key beside the axes: classes by colour, then
    groups by marker.

    Up to 8 classes get the Okabe–Ito colours, up to 20 a qualitative colormap. Returns the legend, or None.
    """
    xy, label, group = np.asarray(xy), np.asarray(label), np.asarray(group)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(label) != len(xy) or len(group) != len(xy):
        raise ValueError(f"class_scatter: xy must be (N, 2) with N labels and groups, got xy {xy.shape}, "
                         f"{len(label)} labels, {len(group)} groups")
    if label.size and (label.min() < 0 or label.max() >= len(classes)):
        raise ValueError(f"class_scatter: labels must index classes (0..{len(classes) - 1}), "
                         f"got {label.min()}..{label.max()}")
    colours = OKABE_ITO if len(classes) <= len(OKABE_ITO) else [plt.get_cmap("tab20")(i) for i in range(20)]
    if len(classes) > len(colours):
        raise ValueError(f"class_scatter: at most {len(colours)} classes, got {len(classes)}")
    groups = list(dict.fromkeys(group.tolist()))
    if len(groups) > len(markers):
        raise ValueError(f"class_scatter: at most {len(markers)} groups (one per marker), got {len(groups)}")
    opts = {"s": 12, "alpha": 0.75, "linewidths": 0.6, **kwargs}
    for g, marker in zip(groups, markers):
        sel = group == g
        ax.scatter(xy[sel, 0], xy[sel, 1], c=[colours[int(c)] for c in label[sel]], marker=marker, **opts)
    if not key:
        return None
    header = [Line2D([], [], ls="none", marker="none")]
    handles = (header + [Patch(color=colours[i]) for i in range(len(classes))]
               + header + [Line2D([], [], ls="none", marker=m, color="0.3") for m in markers[:len(groups)]])
    names = ["class", *classes, group_title, *groups]
    legend = legend_outside(ax, handles=handles, labels=names, handletextpad=0.4)
    for i in (0, len(classes) + 1):  # the two section headers
        legend.get_texts()[i].set_fontweight("bold")
    return legend


def trace_panels(traces: pd.DataFrame, keys: dict[str, str], series: str | list[str] = "modality",
                 reference: dict[str, float] | None = None, log: tuple[str, ...] = (), band: bool = True,
                 dashes: dict[str, str] | None = None, figsize=None):
    """One panel per trace key (``keys`` maps a key of :func:`~mmdg.experiments.collect.trace_frame` to its
    title): the per-epoch mean of ``value`` for each ``series`` group (a column or columns), with a ±1 std band.

    Each series keeps one colour and marker in every panel. ``reference`` maps a key to a level drawn as a
    dotted line; keys in ``log`` get a log y axis with readable labels (:func:`log_ticks`); ``dashes`` maps a
    value of the first ``series`` column to a line style (e.g. ``{"Base": "--"}``). Returns the figure.
    """
    cols = [series] if isinstance(series, str) else list(series)
    missing = [c for c in ["key", "epoch", "value", *cols] if c not in traces.columns]
    if missing:
        raise KeyError(f"trace_panels: traces lack columns {missing}; they have {sorted(traces.columns)}")
    unknown = [k for k in keys if k not in set(traces["key"])]
    if unknown:
        raise KeyError(f"trace_panels: no trace of keys {unknown}; the traces hold {sorted(set(traces['key']))}")
    names = list(dict.fromkeys(traces[cols].astype(str).agg(": ".join, axis=1)))
    look = {n: (OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)]) for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(keys), figsize=figsize or (2.7 * len(keys) + 1.6, 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], keys.items()):
        part = traces[traces["key"] == key]
        for values, group in part.groupby(cols, sort=False):
            values = values if isinstance(values, tuple) else (values,)
            name = ": ".join(str(v) for v in values)
            curve = group.groupby("epoch")["value"].agg(["mean", "std"])
            colour, marker = look[name]
            x = curve.index + 1
            ls = (dashes or {}).get(str(values[0]), "-")
            ax.plot(x, curve["mean"], color=colour, marker=marker, ls=ls, label=name)
            if band and curve["std"].notna().any():
                ax.fill_between(x, curve["mean"] - curve["std"], curve["mean"] + curve["std"], color=colour,
                                alpha=0.15, lw=0)
        if reference and key in reference:
            ax.axhline(reference[key], color="grey", ls=":")
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        if key in log:
            ax.set_yscale("log")
            ax.autoscale_view()
            log_ticks(ax.yaxis)
    legend_outside(axes[0, -1])
    fig.tight_layout()
    return fig


def gradient_projection(g_c: dict, g_d: dict, G: dict, info: dict, figsize=(9, 4.0)):
    """GMP's update on 2-D gradients, one panel per modality of ``info`` (:func:`mmdg.strategies.gmp_combine`'s):
    the raw g_c and g_d (dotted), after modulation k·g_c and p·g_d (solid), the projected gradient
    (dashed) and the update G. Both axes have one scale (equal aspect, shared limits), so the projected
    gradient is drawn at a right angle to the gradient it was projected against. Returns the figure.
    """
    mods = list(info)
    missing = [m for m in mods if m not in g_c or m not in g_d or m not in G]
    if missing:
        raise KeyError(f"gradient_projection: no g_c, g_d or G for modalities {missing}")
    arrows = {}
    for m in mods:
        k, p = float(info[m]["k"]), float(info[m]["p"])
        kept = p * g_d[m] if info[m]["branch"] == "project_cls" else k * g_c[m]
        arrows[m] = [(g_c[m], OKABE_ITO[0], ":", "g_c"), (g_d[m], OKABE_ITO[3], ":", "g_d"),
                     (k * g_c[m], OKABE_ITO[0], "-", "k·g_c"), (p * g_d[m], OKABE_ITO[3], "-", "p·g_d"),
                     (G[m] - kept, OKABE_ITO[2], "--", "projected gradient"), (G[m], "black", "-", "G = sum")]
    ends = np.array([[0.0, 0.0]] + [[float(v[0]), float(v[1])] for m in mods for v, *_ in arrows[m]])
    pad = 0.1 * np.ptp(ends, axis=0).max()
    lo, hi = ends.min(0) - pad, ends.max(0) + pad
    fig, axes = plt.subplots(1, len(mods), figsize=figsize, squeeze=False)
    for ax, m in zip(axes[0], mods):
        for v, colour, ls, _ in arrows[m]:
            ax.annotate("", xy=(float(v[0]), float(v[1])), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=colour, lw=2, ls=ls, shrinkA=0, shrinkB=0))
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]),
               title=f"{m}: Γ = {float(info[m]['Gamma']):.2f}, branch {info[m]['branch']}")
        ax.set_aspect("equal", adjustable="box")
    handles = [Line2D([], [], color=c, ls=ls, lw=2) for _, c, ls, _ in arrows[mods[0]]]
    legend_outside(axes[0, -1], handles=handles, labels=[name for *_, name in arrows[mods[0]]])
    fig.tight_layout()
    return fig


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
               yerr=stats["std"].fillna(0.0), capsize=3, label=label,
               hatch=HATCHES[i % len(HATCHES)], edgecolor="white")
    ax.set_xticks(x, groups)
    ax.set_xlabel(group)
    ax.set_ylabel(ylabel)
    legend_outside(ax, "above", ncols=min(len(columns), 4))
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
            ax.set_title(f"frame {t}", fontsize="small")
        col = frames
        if "flow" in extra:
            f = x["flow"][:, x["flow"].shape[1] // 2].numpy()
            mag = np.hypot(f[0], f[1])
            row[col].imshow(mag, cmap="magma")
            h, w = mag.shape
            s = max(1, h // 8)
            yy, xx = np.mgrid[0:h:s, 0:w:s]
            row[col].quiver(xx, yy, f[0, ::s, ::s], f[1, ::s, ::s], color="cyan", angles="xy")
            row[col].set_title("flow (mid clip)", fontsize="small")
            col += 1
        if "audio" in extra:
            row[col].imshow(x["audio"][0].numpy(), origin="lower", aspect="auto", cmap="viridis")
            row[col].set_title("log-mel spectrogram", fontsize="small")
        row[0].set_ylabel(label, fontsize="small")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


#: verdict -> (Okabe–Ito colour, marker) of :func:`forest`
VERDICT_STYLE = {"gain": ("#009E73", "^"), "loss": ("#D55E00", "v"), "no detectable difference": ("#0072B2", "o"),
                 "too few seeds": ("#999999", "s")}


def forest(paired: pd.DataFrame, order: dict[str, list[str]], references: list[str], rule: str):
    """Forest plot of paired differences: one panel per (benchmark, reference), one row per method.

    ``paired`` has columns benchmark, reference, label, rule, delta, ci_low, ci_high, verdict (as
    :func:`mmdg.experiments.summary.paired_all`); ``order`` lists each benchmark's methods top to
    bottom.  Marker colour and shape give the verdict; bars the 95 % interval; the line is Δ = 0.
    """
    from matplotlib.lines import Line2D
    shown = paired[(paired["rule"] == rule) & (paired["verdict"] != "reference")]
    sizes = [len(order[b]) for b in order]
    fig, axes = plt.subplots(len(order), len(references), figsize=(10, 0.28 * sum(sizes) + 2.2), sharey="row",
                             squeeze=False, gridspec_kw={"height_ratios": sizes})
    for i, bench in enumerate(order):
        y = {label: len(order[bench]) - 1 - k for k, label in enumerate(order[bench])}
        for j, ref in enumerate(references):
            ax = axes[i, j]
            rows = shown[(shown.benchmark == bench) & (shown.reference == ref)]
            rows = rows.assign(y=rows["label"].map(y))
            ax.errorbar(rows["delta"], rows["y"], fmt="none", ecolor="0.45", elinewidth=1, capsize=2,
                        xerr=[(rows["delta"] - rows["ci_low"]).fillna(0), (rows["ci_high"] - rows["delta"]).fillna(0)])
            for verdict, (colour, marker) in VERDICT_STYLE.items():
                sel = rows[rows["verdict"] == verdict]
                ax.scatter(sel["delta"], sel["y"], color=colour, marker=marker, s=28, zorder=3)
            ax.axvline(0, color="black", lw=0.8)
            if ref in y:
                ax.annotate("reference", (0, y[ref]), xytext=(4, 0), textcoords="offset points", va="center",
                            fontsize="small", color="0.3")
            ax.set_yticks(list(y.values()), list(y))
            ax.set(title=f"{bench}: Δ vs {ref}", ylim=(-0.7, len(y) - 0.3))
            if i == len(order) - 1:
                ax.set_xlabel("Δ target accuracy (points)")
    handles = [Line2D([], [], ls="none", marker=m, color=c, label=v) for v, (c, m) in VERDICT_STYLE.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
