"""The book's one comparison of methods: paired per-seed differences, a 95 % t interval, one verdict.

A method is compared with a reference method (e.g. plain late fusion) run on the same held-out
domains and seeds.  For each seed, each method's target accuracy is averaged over the held-out
domains that *both* have for that seed, and the difference method − reference is taken per seed.
With n seeds in common, the mean difference gets the Student-t interval
``mean ± t(0.975, n − 1) · sd / √n``, and :func:`verdict` reads it:

- ``"gain"``: the interval lies above 0;
- ``"loss"``: the interval lies below 0;
- ``"no detectable difference"``: the interval contains 0;
- ``"too few seeds"``: n < 2, no interval.

With few seeds the interval is wide (t(0.975, 1) ≈ 12.7 for two seeds, 4.30 for three), so
"no detectable difference" then means the seeds cannot tell, not that the methods are equal.
:func:`mean_std` is the one ``mean ± std`` formatter of the library's tables.
"""
from __future__ import annotations

import math

import pandas as pd

#: selection rules of a run record's ``final``: name -> accuracy key
RULES = {"source-val selection": "test_acc", "best target epoch (oracle)": "oracle_test_acc"}

#: the verdicts :func:`verdict` returns
VERDICTS = ("gain", "loss", "no detectable difference", "too few seeds")

#: the verdict column of the reference's own rows
REFERENCE = "reference"

#: the no-break space of the formatters: table cells wrap between words, never inside a number's text
NBSP = "\u00a0"

COLUMNS = ["rule", "acc", "acc_std", "seeds", "delta", "ci_low", "ci_high", "verdict"]


def mean_std(mean, std, digits: int = 1) -> str:
    """``"m ± s"`` with ``digits`` decimals (no-break spaces: a table cell never breaks inside it); ``"m"`` when ``std`` is NaN (one seed); ``"–"`` when ``mean`` is NaN."""
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f}{NBSP}±{NBSP}{std:.{digits}f}"


def signed(x, digits: int = 1) -> str:
    """``x`` with its sign, a minus sign (−) for negatives: ``"+1.2"``, ``"−0.3"``; ``"–"`` for NaN."""
    return "–" if pd.isna(x) else f"{x:+.{digits}f}".replace("-", "\u2212")


def _abs_t_mass(theta: float, df: int) -> float:
    """P(|T| < √df · tan θ) for Student's t with integer ``df`` (closed forms, Abramowitz & Stegun 26.7.3-4)."""
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin θ · (1 + 1/2 c² + 1·3/(2·4) c⁴ + ... up to c^(df−2))
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    # (2/π) · (θ + sin θ cos θ · (1 + 2/3 c² + 2·4/(3·5) c⁴ + ... up to c^(df−3)))
    term, total = 1.0, 1.0
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * math.cos(theta) * total)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` (a positive integer) degrees of freedom.

    Exact up to float rounding: the CDF has a closed form for integer ``df``, inverted by bisection.
    """
    if isinstance(df, bool) or int(df) != df or df < 1:
        raise ValueError(f"t_quantile: df must be a positive integer, got {df!r}")
    if not 0 < p < 1:
        raise ValueError(f"t_quantile: p must lie strictly between 0 and 1, got {p!r}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi, mass = 0.0, math.pi / 2, 2 * p - 1
    while True:  # bisection on θ = atan(t / √df) until the interval stops shrinking
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if _abs_t_mass(mid, int(df)) < mass else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def verdict(ci_low: float, ci_high: float, n: int) -> str:
    """``"gain"`` if the interval lies above 0, ``"loss"`` below, else ``"no detectable difference"``.

    ``"too few seeds"`` with ``n`` < 2 (or no interval).  Small ``n`` gives wide intervals.
    """
    if n < 2 or pd.isna(ci_low) or pd.isna(ci_high):
        return "too few seeds"
    if ci_low > 0:
        return "gain"
    if ci_high < 0:
        return "loss"
    return "no detectable difference"


def paired_by_seed(table: pd.DataFrame, reference: str, label: str = "label",
                   rules: dict | None = None) -> pd.DataFrame:
    """Every method of ``table`` against ``reference``, paired by seed, under each selection rule.

    ``table`` has one row per run (a :func:`~mmdg.experiments.collect.runs_table` with a ``label``
    column naming the method), with columns ``target``, ``seed`` and each rule's accuracy key.
    ``rules`` maps a rule's name to its column (default :data:`RULES`: source-val selection and the
    oracle, labelled so).

    One row per (label, rule): ``acc`` / ``acc_std``, the mean and sample std over seeds of the
    method's accuracy averaged over its held-out domains within a seed (all its runs); ``seeds``,
    the number n of seeds it shares with the reference; ``delta``, the mean over those seeds of the
    per-seed difference method − reference, each side averaged over the held-out domains both have
    for that seed (a run whose accuracy is missing counts as absent); ``ci_low`` / ``ci_high``, its
    95 % Student-t interval (NaN below two seeds); ``verdict`` (:func:`verdict`; ``"reference"`` on
    the reference's own rows, whose ``delta`` is 0).  Few seeds give wide intervals.
    """
    rules = RULES if rules is None else rules
    if not rules:
        raise ValueError("paired_by_seed: rules must name at least one selection rule")
    for col in (label, "target", "seed", *rules.values()):
        if col not in table.columns:
            raise ValueError(f"paired_by_seed: table has no column {col!r}")
    if not (table[label] == reference).any():
        raise ValueError(f"paired_by_seed: no run labelled {reference!r} (labels: {sorted(set(table[label]))})")
    twice = table[table.duplicated([label, "target", "seed"], keep=False)]
    if not twice.empty:
        name, target, seed = twice.iloc[0][[label, "target", "seed"]]
        raise ValueError(f"paired_by_seed: method {name!r} has several runs for target {target!r}, seed {seed}; "
                         "give each configuration its own label")
    ref = table[table[label] == reference]
    rows = []
    for name, part in table.groupby(label, sort=False):
        paired = part.merge(ref, on=["target", "seed"], suffixes=("", "_ref"))
        for rule, key in rules.items():
            own = part.dropna(subset=[key]).groupby("seed")[key].mean()
            pair = paired.dropna(subset=[key, f"{key}_ref"])
            diffs = (pair.groupby("seed")[key].mean() - pair.groupby("seed")[f"{key}_ref"].mean()).to_numpy()
            n = len(diffs)
            delta = float(diffs.mean()) if n else float("nan")
            half = t_quantile(0.975, n - 1) * float(diffs.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
            row = {label: name, "rule": rule, "acc": own.mean(), "acc_std": own.std(ddof=1), "seeds": n,
                   "delta": delta, "ci_low": delta - half, "ci_high": delta + half}
            row["verdict"] = REFERENCE if name == reference else verdict(row["ci_low"], row["ci_high"], n)
            rows.append(row)
    return pd.DataFrame(rows, columns=[label, *COLUMNS])


def delta_ci(row, digits: int = 1) -> str:
    """``"+1.2 [−0.3, +2.7]"``: Δ with its 95 % interval (no-break spaces, as :func:`mean_std`); Δ alone below two seeds, ``"–"`` without a seed."""
    if pd.isna(row["ci_low"]):
        return signed(row["delta"], digits)
    return (f"{signed(row['delta'], digits)}{NBSP}[{signed(row['ci_low'], digits)},{NBSP}"
            f"{signed(row['ci_high'], digits)}]")


def format_paired(frame: pd.DataFrame, label: str = "label", digits: int = 1) -> pd.DataFrame:
    """:func:`paired_by_seed`'s frame as display text, indexed by (method, selection rule).

    Columns: target accuracy mean ± std over seeds, Δ with its 95 % interval, seeds in common, verdict.
    """
    ref = frame["verdict"] == REFERENCE
    out = pd.DataFrame({
        "target acc (%)": [mean_std(m, s, digits) for m, s in zip(frame["acc"], frame["acc_std"])],
        "Δ vs reference (points) [95 % CI]": ["" if r else delta_ci(row, digits)
                                              for r, (_, row) in zip(ref, frame.iterrows())],
        "seeds": list(frame["seeds"]),
        "verdict": list(frame["verdict"])})
    out.index = pd.MultiIndex.from_arrays([frame[label], frame["rule"]], names=["method", "selection"])
    return out


def clause(frame_row, digits: int = 1) -> str:
    """One Markdown clause for prose from a row of :func:`paired_by_seed`'s frame.

    E.g. ``"source-val selection: 61.2 ± 1.0 %, Δ = +1.2 points, 95 % CI [−0.3, +2.7] over 3 seeds:
    **no detectable difference**"``.
    """
    r = frame_row
    head = f"{r['rule']}: {mean_std(r['acc'], r['acc_std'], digits)} %"
    if r["verdict"] == REFERENCE:
        return f"{head}, the reference"
    n = int(r["seeds"])
    if n == 0:
        return f"{head}, no seed in common with the reference: **{r['verdict']}**"
    if n == 1:
        return f"{head}, Δ = {signed(r['delta'], digits)} points from a single seed: **{r['verdict']}**"
    return (f"{head}, Δ = {signed(r['delta'], digits)} points, 95 % CI [{signed(r['ci_low'], digits)}, "
            f"{signed(r['ci_high'], digits)}] over {n} seeds: **{r['verdict']}**")


def gap(table: pd.DataFrame, value: str, method: str, reference: str, label: str = "label", unit: str = " points",
        **where) -> tuple[pd.Series, str]:
    """``method`` − ``reference`` of the column ``value``, paired by seed (:func:`paired_by_seed`), on the
    rows of ``table`` whose columns equal ``where``'s values: (its row, ``"Δ = +1.2 [−0.3, +2.7] points,
    **gain**"``)."""
    for key, want in where.items():
        table = table[table[key] == want]
    row = paired_by_seed(table, reference, label=label, rules={value: value}).set_index(label).loc[method]
    return row, f"Δ = {delta_ci(row)}{unit}, **{row['verdict']}**"


def gaps(pairs, depth: int = 1, **common) -> str:
    """Markdown list items for prose, one per comparison: ``(name, gap args)`` or ``(name, gap args, gap
    keywords)``, each ``"- name: Δ = ..."`` on a new line, indented ``depth`` levels (1: under a top-level
    item); ``common`` keywords go to every :func:`gap`."""
    pad = "  " * depth
    return "".join(f"\n{pad}- {name}: {gap(*args, **common, **(kw[0] if kw else {}))[1]}" for name, args, *kw in pairs)
