"""The book's figure style (mmdg.plots): resolution, palette, markers, legends outside the data, equal aspect."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from PIL import Image  # noqa: E402

from mmdg import plots  # noqa: E402
from mmdg.strategies import gmp_combine  # noqa: E402

# Okabe & Ito (2008), typed from the published table (not from mmdg)
OKABE_ITO = {"#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"}


@pytest.fixture(autouse=True)
def styled():
    with matplotlib.rc_context():
        plots.style()
        yield
    plt.close("all")


def rendered(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def assert_legends_outside(fig):
    """Every legend of the figure lies outside every axes, in display coordinates."""
    renderer = rendered(fig)
    legends = [a for ax in fig.axes for a in [ax.get_legend(), *ax.artists] if isinstance(a, matplotlib.legend.Legend)]
    assert legends, "the figure has no legend"
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"legend {box} overlaps axes {ax.get_window_extent()}"


def png_dpi(fig) -> tuple[float, float]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image.open(io.BytesIO(buf.getvalue())).info["dpi"]


def test_style_sets_150_dpi_and_the_okabe_ito_cycle_with_distinct_markers():
    fig, ax = plt.subplots()
    assert fig.dpi >= 150
    assert min(png_dpi(fig)) >= 149.5  # the saved PNG says so too
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()
    assert {to_hex(c) for c in cycle["color"]} == OKABE_ITO
    assert len(set(cycle["marker"])) == len(cycle["color"])
    lines = [ax.plot([0, 1], [i, i + 1])[0] for i in range(len(OKABE_ITO))]  # plain plot calls, no styling
    assert len({to_hex(li.get_color()) for li in lines}) == len(lines)
    assert len({li.get_marker() for li in lines}) == len(lines)
    assert all(li.get_marker() not in ("None", "none", "", " ") for li in lines)
    sizes = [matplotlib.font_manager.FontProperties(size=matplotlib.rcParams[k]).get_size_in_points()
             for k in ("legend.fontsize", "xtick.labelsize", "axes.titlesize")]
    assert min(sizes) >= 8.0


def traces() -> pd.DataFrame:
    """Per-step values of two keys, four series (model x modality), 4 epochs of 3 steps."""
    rng = np.random.default_rng(0)
    rows = []
    for key, level in [("rho", 2.0), ("sigma", 1.0)]:
        for model, factor in [("Base", 1.0), ("GMP", 1.2)]:
            for mod in ["audio", "video"]:
                for e in range(4):
                    for s in range(3):
                        value = level * factor * (1 + 0.1 * e) * rng.uniform(0.9, 1.1)
                        rows.append({"key": key, "epoch": e, "step": s, "modality": mod, "model": model,
                                     "value": float(value)})
    return pd.DataFrame(rows)


def test_trace_panels_means_markers_and_legend():
    t = traces()
    fig = plots.trace_panels(t, {"rho": "ρ", "sigma": "σ"}, series=["model", "modality"], reference={"rho": 1.0},
                             log=("sigma",))
    looks = []
    for ax, key in zip(fig.axes, ["rho", "sigma"]):
        lines = {li.get_label(): li for li in ax.get_lines() if not li.get_label().startswith("_")}
        assert sorted(lines) == ["Base: audio", "Base: video", "GMP: audio", "GMP: video"]
        for name, li in lines.items():
            model, mod = name.split(": ")
            part = t[(t.key == key) & (t.model == model) & (t.modality == mod)]
            expected = [part[part.epoch == e]["value"].mean() for e in range(4)]
            np.testing.assert_allclose(li.get_ydata(), expected, rtol=1e-12)
            np.testing.assert_array_equal(li.get_xdata(), [1, 2, 3, 4])
        assert len({li.get_marker() for li in lines.values()}) == 4
        assert len({to_hex(li.get_color()) for li in lines.values()}) == 4
        assert {to_hex(li.get_color()) for li in lines.values()} <= OKABE_ITO
        looks.append({n: (li.get_marker(), to_hex(li.get_color())) for n, li in lines.items()})
    assert looks[0] == looks[1]  # one series, one look in every panel
    assert_legends_outside(fig)
    sigma = fig.axes[1]
    assert sigma.get_yscale() == "log"
    lo, hi = sigma.get_ylim()
    labelled = [tk for tk in sigma.yaxis.get_major_ticks()
                if lo <= tk.get_loc() <= hi and tk.label1.get_text()]
    assert len(labelled) >= 4, [tk.label1.get_text() for tk in labelled]


def test_log_ticks_labels_a_narrow_and_a_wide_range():
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(0.8, 1.3)
    plots.log_ticks(ax.yaxis)
    ax.set_xscale("log")
    ax.set_xlim(0.1, 1.0)
    plots.log_ticks(ax.xaxis)
    rendered(fig)
    ys = [float(tk.label1.get_text()) for tk in ax.yaxis.get_major_ticks()
          if 0.8 <= tk.get_loc() <= 1.3 and tk.label1.get_text()]
    xs = [float(tk.label1.get_text()) for tk in ax.xaxis.get_major_ticks()
          if 0.1 <= tk.get_loc() <= 1.0 and tk.label1.get_text()]
    assert len(ys) >= 4 and all(0.8 <= y <= 1.3 for y in ys)
    assert xs == [0.1, 0.2, 0.5, 1.0]
    with pytest.raises(ValueError, match="log scale"):
        plots.log_ticks(plt.subplots()[1].yaxis)


def test_grouped_bars_legend_is_above_the_bars():
    runs = pd.DataFrame({"target": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "x": [1.0, 2, 3, 4], "y": [2.0, 3, 4, 5]})
    ax = plots.grouped_bars(runs, {"x": "X", "y": "Y"})
    assert_legends_outside(ax.figure)
    x, y = [c for c in ax.containers if isinstance(c, BarContainer)]  # one bar set per column, in order
    assert [p.get_height() for p in x] == [1.5, 3.5] and [p.get_height() for p in y] == [2.5, 4.5]
    assert x[0].get_hatch() != y[0].get_hatch()  # told apart by hatch, not colour alone
    assert to_hex(x[0].get_facecolor()) != to_hex(y[0].get_facecolor())


def test_class_scatter_colours_by_class_marks_by_group_and_keys_both():
    fig, ax = plt.subplots()
    xy = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [4, 4], [5, 5.0]])
    label = np.array([0, 1, 2, 0, 1, 2])
    group = np.array(["source", "source", "source", "target", "target", "target"])
    legend = plots.class_scatter(ax, xy, label, group, ["dog", "cat", "bird"])
    sets = ax.collections
    assert len(sets) == 2 and sets[0].get_paths()[0] != sets[1].get_paths()[0]  # one marker per group
    for coll in sets:
        colours = [to_hex(c) for c in coll.get_facecolors()]
        assert len(set(colours)) == 3 and set(colours) <= OKABE_ITO
    # a point's colour is its class's colour in the key
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["class", "dog", "cat", "bird", "domain", "source", "target"]
    key = {t: to_hex(h.get_facecolor()) for t, h in zip(texts, legend.legend_handles) if t in ("dog", "cat", "bird")}
    assert [to_hex(c) for c in sets[0].get_facecolors()] == [key["dog"], key["cat"], key["bird"]]
    assert_legends_outside(fig)
    with pytest.raises(ValueError, match="xy must be"):
        plots.class_scatter(ax, xy[:, :1], label, group, ["dog", "cat", "bird"])


def test_gradient_projection_draws_the_right_angle_as_a_right_angle():
    g_c = {"audio": torch.tensor([2.0, 0.5]), "video": torch.tensor([1.0, 1.2])}
    g_d = {"audio": torch.tensor([-1.0, 1.0]), "video": torch.tensor([-1.5, -0.3])}
    q = {"audio": torch.tensor([0.9, 0.8]), "video": torch.tensor([0.4, 0.3])}
    c = {"audio": torch.tensor([0.6, 0.5]), "video": torch.tensor([0.3, 0.35])}
    G, info = gmp_combine(g_c, g_d, q, c, alpha_k=0.5, alpha_p=0.5)
    fig = plots.gradient_projection(g_c, g_d, G, info, figsize=(9, 3.0))  # a wide box: only the aspect keeps it square
    rendered(fig)
    assert {info[m]["branch"] for m in info} == {"project_cls", "project_dom"}
    for ax, m in zip(fig.axes, info):
        k, p = float(info[m]["k"]), float(info[m]["p"])
        kept = (p * g_d[m] if info[m]["branch"] == "project_cls" else k * g_c[m]).numpy().astype(float)
        projected = G[m].numpy().astype(float) - kept
        assert abs(projected @ kept) < 1e-5 * np.linalg.norm(kept) * np.linalg.norm(projected)
        tips = [np.asarray(a.xy, float) for a in ax.texts]
        assert any(np.allclose(t, projected, atol=1e-6) for t in tips)
        to_px = lambda v: ax.transData.transform(v) - ax.transData.transform((0.0, 0.0))  # noqa: E731
        a, b = to_px(projected), to_px(kept)
        assert abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) < 1e-3  # perpendicular on screen too
        assert ax.get_aspect() == 1.0
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim() and fig.axes[0].get_ylim() == fig.axes[1].get_ylim()
    assert_legends_outside(fig)


def test_legend_outside_names_the_bad_place():
    with pytest.raises(ValueError, match="where must be one of"):
        plots.legend_outside(plt.subplots()[1], "inside")


def test_forest_places_each_method_with_its_interval_and_verdict():
    import pandas as pd
    from mmdg.plots import VERDICT_STYLE, forest
    paired = pd.DataFrame([
        {"benchmark": "b", "reference": "erm", "label": "erm", "rule": "sv", "delta": 0.0, "ci_low": None,
         "ci_high": None, "verdict": "reference"},
        {"benchmark": "b", "reference": "erm", "label": "gmp", "rule": "sv", "delta": 2.0, "ci_low": 1.0,
         "ci_high": 4.0, "verdict": "gain"},
        {"benchmark": "b", "reference": "erm", "label": "mer", "rule": "sv", "delta": -1.0, "ci_low": -3.0,
         "ci_high": 0.5, "verdict": "no detectable difference"},
        {"benchmark": "b", "reference": "erm", "label": "gmp", "rule": "oracle", "delta": 9.0, "ci_low": 8.0,
         "ci_high": 10.0, "verdict": "gain"}])
    fig = forest(paired, {"b": ["erm", "gmp", "mer"]}, ["erm"], "sv")
    ax = fig.axes[0]
    points = {tuple(p) for c in ax.collections if hasattr(c, "get_offsets") for p in c.get_offsets()
              if len(c.get_offsets())}
    assert (2.0, 1.0) in points and (-1.0, 0.0) in points and not any(x == 9.0 for x, _ in points)  # other rule left out
    colours = {tuple(round(v, 3) for v in c.get_facecolor()[0]) for c in ax.collections
               if len(c.get_offsets()) and len(c.get_facecolor())}
    import matplotlib.colors as mc
    assert tuple(round(v, 3) for v in mc.to_rgba(VERDICT_STYLE["gain"][0])) in colours
    segments = [s for c in ax.collections if type(c).__name__ == "LineCollection" for s in c.get_segments()]
    assert any(abs(s[0][0] - 1.0) < 1e-9 and abs(s[1][0] - 4.0) < 1e-9 for s in segments)  # gmp's interval
    rows = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert rows == {"erm": 2, "gmp": 1, "mer": 0}  # listed top to bottom
    assert any(abs(l.get_xdata()[0]) < 1e-12 for l in ax.get_lines())  # the line at zero
