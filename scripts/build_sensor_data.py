#!/usr/bin/env python
"""Build the ``phone_watch`` benchmark files from the raw smartphone + smartwatch HAR archive.

Raw data: Matey-Sanz, Casteleyn, Granell (2023), "Dataset of inertial measurements of
smartphones and smartwatches for human activity recognition", Data in Brief 109809,
Zenodo 10.5281/zenodo.8398688 (CC BY 4.0).  23 subjects each perform about ten
Timed-Up-and-Go executions (sit, stand up, walk, turn, walk back, turn, sit down) with a
phone in the trouser pocket and a watch on the wrist.  One CSV per execution and device,
``DATA/sXX/sXX_YY_{sp,sw}.csv``, columns ``x_acc,y_acc,z_acc,x_gyro,y_gyro,z_gyro,timestamp,label``
(Unix ms, about 102 Hz on the phone and 104 Hz on the watch).

Steps, per execution:

1. Regular time base.  Each device samples at a constant rate but stamps samples when they
   are delivered (the phone in bursts: up to 171 ms late, 8 % duplicate stamps).  The
   stamps are replaced by the least-squares line ``t0 + i * period`` over the sample index.
2. Label clean-up.  Label segments shorter than ``MIN_SEGMENT_S`` (one- or two-sample
   annotation blips, e.g. one WALKING sample between TURNING and SITTING_DOWN) take the
   label of the segment before them (a short first segment: the label after it).
3. Anti-aliasing: every channel is low-pass filtered at ``CUTOFF_HZ`` (Hamming-windowed
   sinc, zero phase).
4. Synchronisation: both devices are linearly interpolated onto one ``RATE_HZ`` grid over the
   overlap of their recordings; the grid label is the phone's label at the nearest phone
   sample (the two devices' label boundaries agree to 15 ms, median).
5. Windows of ``WINDOW`` samples every ``HOP`` samples inside the execution, labelled by the
   label of a strict majority of their samples; windows without one (ties) are dropped.
6. Split by time, per subject: the last ``round(TEST_FRACTION * n)`` of a subject's ``n``
   executions (recorded one after another) are its test executions, the others its train
   executions, so a subject's test windows never overlap its train windows in time.

Outputs, in ``--out`` (default ``mmdg/resources/sensors``): ``phone_watch.npz`` (windows,
float16, deterministic bytes), ``phone_watch.json`` (metadata, counts, checksums) and
``README.md`` (``scripts/sensor_readme_template.md`` filled in; the numbers on domain shift
come from ``scripts/sensor_shift_evidence.py``).  The build checks the raw checksum, re-reads
what it wrote, checks it against the recorded checksums and against ``EXPECTED_ARRAYS_SHA256``
(the checksum of the packaged build; ``--accept-new-checksum`` when a change to this script is
intended).

  python scripts/build_sensor_data.py --archive /path/to/sp_sw_har.tar.xz [--out DIR]

Without ``--archive`` the archive is looked for beside the checkout, at
``../shared/data/real_small/sp_sw_har.tar.xz`` (``DEFAULT_ARCHIVE``).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

if str(ROOT / "scripts") not in sys.path:  # the shift-evidence script beside this one
    sys.path.insert(0, str(ROOT / "scripts"))

from mmdg.data.sensors import (  # noqa: E402
    AGE_EDGES, CHANNELS, CLASSES, DATA_FILE, DOMAINS_BY, META_FILE, MODALITIES, REBUILD, SPLIT_NAMES,
    arrays_sha256, subject_domain)
from sensor_shift_evidence import shift_evidence  # noqa: E402

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "real_small" / "sp_sw_har.tar.xz"  # beside the checkout
RAW_SHA256 = "024f652d5612827b44b20e22f2df84cbd61c74d3a87d97ca17d4b48861b18f6b"
RAW_COLUMNS = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro", "timestamp", "label"]
RATE_HZ = 50
WINDOW = 50          # samples: 1 s
HOP = 25             # samples: 0.5 s
CUTOFF_HZ = 20.0
FILTER_TAPS = 51
MIN_SEGMENT_S = 0.1
TEST_FRACTION = 0.3
EXPECTED_ARRAYS_SHA256 = "aa3aa9fe61ae5679de2171e5c98888e2317e7c09f57849a4d0114680cbc5436c"
SOURCE = {"dataset": "sp-sw-har: GitHub GeoTecINIT/sp-sw-har-dataset, folder DATA/",
          "commit": "1408d85a512a53861de7bc4729dee283fff2ea9d",
          "citation": "Matey-Sanz M., Casteleyn S., Granell C. (2023). Dataset of inertial measurements of "
                      "smartphones and smartwatches for human activity recognition. Data in Brief, 109809.",
          "doi": "10.5281/zenodo.8398688", "licence": "CC BY 4.0"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry dates: equal arrays give equal npz bytes
TEMPLATE = ROOT / "scripts" / "sensor_readme_template.md"  # the output README, ``str.format`` fields


@dataclass
class Stream:
    """One device's recording: regular times (ms), values (n, 6) and class indices (n,)."""

    time: np.ndarray
    values: np.ndarray
    label: np.ndarray

    @property
    def rate(self) -> float:
        return 1000.0 / float(self.time[1] - self.time[0])


# ---------------------------------------------------------------- raw data
def raw_checksum(data_dir: Path) -> str:
    """sha256 of all CSVs under ``data_dir`` concatenated in sorted relative-path order."""
    h = hashlib.sha256()
    for path in sorted(data_dir.rglob("*.csv"), key=lambda p: p.relative_to(data_dir).as_posix()):
        h.update(path.read_bytes())
    return h.hexdigest()


def verify_raw(data_dir: Path, expected: str = RAW_SHA256) -> None:
    got = raw_checksum(data_dir)
    if got != expected:
        raise SystemExit(f"raw data checksum mismatch in {data_dir}: sha256 of the sorted CSVs is {got}, "
                         f"expected {expected}; is this the sp_sw_har DATA/ folder at commit {SOURCE['commit']}?")


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps (ms, float64), the six channels (n, 6, float64) and class indices (n,) of one CSV."""
    frame = pd.read_csv(path, dtype={c: "float64" for c in RAW_COLUMNS[:6]} | {"timestamp": "int64",
                                                                              "label": "str"})
    if list(frame.columns) != RAW_COLUMNS:
        raise ValueError(f"{path}: columns {list(frame.columns)}, expected {RAW_COLUMNS}")
    unknown = set(frame["label"]) - set(CLASSES)
    if unknown:
        raise ValueError(f"{path}: unknown labels {sorted(unknown)}; expected {list(CLASSES)}")
    label = frame["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64)
    values = frame[RAW_COLUMNS[:6]].to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: non-finite sensor values")
    return frame["timestamp"].to_numpy(np.float64), values, label


def read_table(path: Path, key: str) -> dict[str, dict[str, str]]:
    frame = pd.read_csv(path, dtype=str)
    return {row[key]: {k: v for k, v in row.items() if k != key} for row in frame.to_dict("records")}


# ---------------------------------------------------------------- signal processing
def regular_times(stamps: np.ndarray) -> np.ndarray:
    """Least-squares line ``t0 + i * period`` through the delivery stamps (closed form, float64)."""
    i = np.arange(len(stamps), dtype=np.float64)
    rel = stamps - stamps[0]
    ic, tc = i - i.mean(), rel - rel.mean()
    period = float(np.dot(ic, tc) / np.dot(ic, ic))
    if not period > 0:
        raise ValueError(f"timestamps do not increase (fitted period {period:.3f} ms)")
    return stamps[0] + (rel.mean() - period * i.mean()) + period * i


def clean_labels(label: np.ndarray, rate: float, min_s: float = MIN_SEGMENT_S) -> np.ndarray:
    """Segments shorter than ``min_s`` seconds take the label before them (the first one: after)."""
    label = label.copy()
    starts = np.flatnonzero(np.r_[True, label[1:] != label[:-1]])
    ends = np.r_[starts[1:], len(label)]
    short = (ends - starts) < min_s * rate
    for s, e in zip(starts[short], ends[short]):
        if s > 0:
            label[s:e] = label[s - 1]
    if short[0] and len(starts) > 1:
        label[:ends[0]] = label[ends[0]]
    return label


def lowpass(x: np.ndarray, rate: float, cutoff: float = CUTOFF_HZ, taps: int = FILTER_TAPS) -> np.ndarray:
    """Zero-phase Hamming-windowed-sinc low-pass along axis 0 (edges padded by repetition)."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff / rate * n) * np.hamming(taps)
    h /= h.sum()
    pad = taps // 2
    xp = np.pad(x, ((pad, pad), (0, 0)), mode="edge")
    return np.stack([np.convolve(xp[:, c], h, mode="valid") for c in range(x.shape[1])], 1)


def read_stream(path: Path) -> Stream:
    """A device CSV on a regular time base, with cleaned labels and low-passed channels."""
    stamps, values, label = read_csv(path)
    time_ms = regular_times(stamps)
    rate = 1000.0 / float(time_ms[1] - time_ms[0])
    return Stream(time_ms, lowpass(values, rate), clean_labels(label, rate))


def nearest(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index of the sample of ``times`` (increasing) nearest to each grid time."""
    right = np.clip(np.searchsorted(times, grid), 1, len(times) - 1)
    return right - (grid - times[right - 1] < times[right] - grid)


def synchronise(phone: Stream, watch: Stream, rate: float = RATE_HZ) -> dict[str, np.ndarray]:
    """Both devices on one grid over their overlap: ``phone``/``watch`` (6, T), ``label`` (T,),
    ``watch_label`` (T,, for the agreement check) and ``time`` (T,, ms)."""
    start, stop = max(phone.time[0], watch.time[0]), min(phone.time[-1], watch.time[-1])
    if stop <= start:
        raise ValueError("the phone and watch recordings do not overlap")
    grid = start + np.arange(int(np.floor((stop - start) * rate / 1000)) + 1) * (1000 / rate)
    out = {"time": grid}
    for name, s in (("phone", phone), ("watch", watch)):
        out[name] = np.stack([np.interp(grid, s.time, s.values[:, c]) for c in range(s.values.shape[1])])
    out["label"] = phone.label[nearest(phone.time, grid)]
    out["watch_label"] = watch.label[nearest(watch.time, grid)]
    return out


def windows(label: np.ndarray, window: int = WINDOW, hop: int = HOP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start indices, majority labels and majority counts of the windows of one execution."""
    starts = np.arange(0, len(label) - window + 1, hop)
    counts = np.stack([np.bincount(label[s:s + window], minlength=len(CLASSES)) for s in starts])
    return starts, counts.argmax(1), counts.max(1)


# ---------------------------------------------------------------- splits and domains
def held_out_executions(numbers: list[int], fraction: float = TEST_FRACTION) -> list[int]:
    """The last ``round(fraction * n)`` (at least 1) of a subject's executions, in recording order."""
    k = max(1, int(np.floor(fraction * len(numbers) + 0.5)))
    return sorted(numbers)[-k:]


def subject_table(data_dir: Path, executions: dict[str, list[int]]) -> dict[str, dict]:
    """Per subject: the raw attributes, domains under every grouping, executions and split."""
    info = read_table(data_dir / "subjects_info.csv", "subject_id")
    orient = read_table(data_dir / "executions_info.csv", "execution_id")
    if sorted(info) != sorted(executions):
        raise ValueError(f"subjects_info.csv lists {sorted(info)}, the CSV files have {sorted(executions)}")
    out = {}
    for s in sorted(info):
        row, numbers = info[s], sorted(executions[s])
        if int(row["executions"]) != len(numbers):
            raise ValueError(f"subjects_info.csv: {s} has {row['executions']} executions, found {len(numbers)}")
        entry = {"age": int(row["age"]), "gender": row["gender"], "height_cm": int(row["height"]),
                 "weight_kg": int(row["weight"]), "dominant_hand": row["dominant_hand"]}
        entry["domain"] = {by: subject_domain(entry, by) for by in DOMAINS_BY}
        entry["executions"] = numbers
        entry["test_executions"] = held_out_executions(numbers)
        entry["phone_orientation"] = {str(n): orient[f"{s}_{n:02d}"]["orientation"] for n in numbers}
        out[s] = entry
    return out


# ---------------------------------------------------------------- output
def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed entry dates and order, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def counts_table(arrays: dict[str, np.ndarray], subjects: dict[str, dict]) -> dict:
    """Windows per grouping, domain, split and class, and subjects per domain."""
    ids = np.array([f"s{k:02d}" for k in arrays["subject"]])
    out = {}
    for by, names in DOMAINS_BY.items():
        out[by] = {}
        for d in names:
            members = [s for s in subjects if subjects[s]["domain"][by] == d]
            entry = {"subjects": len(members)}
            for split_id, split in enumerate(SPLIT_NAMES):
                sel = np.isin(ids, members) & (arrays["split"] == split_id)
                entry[split] = {c: int(np.sum(arrays["label"][sel] == k)) for k, c in enumerate(CLASSES)}
            out[by][d] = entry
    return out


def process(data_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Windows of every execution under ``data_dir`` (the unpacked ``DATA/``) and the metadata."""
    verify_raw(data_dir)
    phone_csvs = sorted(data_dir.glob("s*/s*_*_sp.csv"))
    executions: dict[str, list[int]] = {}
    for path in phone_csvs:
        subject, number, _ = path.stem.split("_")
        executions.setdefault(subject, []).append(int(number))
    subjects = subject_table(data_dir, executions)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("phone", "watch", "label", "subject", "execution",
                                                          "split", "start_ms", "majority")}
    agreement, ties, tug_s, last_end = [], 0, {s: [] for s in subjects}, {}
    for path in phone_csvs:
        subject, number, _ = path.stem.split("_")
        sync = synchronise(read_stream(path), read_stream(path.with_name(f"{subject}_{number}_sw.csv")))
        if sync["time"][0] <= last_end.get(subject, -np.inf):
            raise ValueError(f"{path}: execution {number} of {subject} starts before the previous one ends; "
                             "the split by time needs executions numbered in recording order")
        last_end[subject] = sync["time"][-1]
        agreement.append(float(np.mean(sync["label"] == sync["watch_label"])))
        moving = np.flatnonzero(sync["label"] != CLASSES.index("SEATED"))
        tug_s[subject].append((moving[-1] - moving[0] + 1) / RATE_HZ)
        starts, label, majority = windows(sync["label"])
        keep = majority * 2 > WINDOW      # a strict majority: ties have no label
        ties += int(np.sum(~keep))
        starts, label, majority = starts[keep], label[keep], majority[keep]
        idx = starts[:, None] + np.arange(WINDOW)
        for m in MODALITIES:
            parts[m].append(sync[m][:, idx].transpose(1, 0, 2))
        n = len(starts)
        parts["label"].append(label)
        parts["majority"].append(majority)
        parts["subject"].append(np.full(n, int(subject[1:])))
        parts["execution"].append(np.full(n, int(number)))
        parts["split"].append(np.full(n, int(int(number) in subjects[subject]["test_executions"])))
        parts["start_ms"].append(np.rint(sync["time"][starts]))
    dtypes = {"phone": np.float16, "watch": np.float16, "label": np.int8, "subject": np.int8,
              "execution": np.int8, "split": np.int8, "start_ms": np.int64, "majority": np.uint8}
    arrays = {}
    for k, v in parts.items():
        a = np.concatenate(v)
        if k in MODALITIES and np.abs(a).max() >= np.finfo(np.float16).max:
            raise ValueError(f"{k} values exceed the float16 range")
        arrays[k] = a.astype(dtypes[k])
    for s in subjects:
        sel = arrays["subject"] == int(s[1:])
        subjects[s]["windows"] = {split: int(np.sum(sel & (arrays["split"] == i))) for i, split in
                                  enumerate(SPLIT_NAMES)}
    meta = {
        "benchmark": "phone_watch",
        "format": 1,
        "source": SOURCE,
        "raw_sha256": RAW_SHA256,
        "modalities": list(MODALITIES),
        "channels": list(CHANNELS),
        "classes": list(CLASSES),
        "splits": list(SPLIT_NAMES),
        "rate_hz": RATE_HZ,
        "window": WINDOW,
        "hop": HOP,
        "window_s": WINDOW / RATE_HZ,
        "hop_s": HOP / RATE_HZ,
        "window_label": "strict majority of the window's phone labels (ties dropped)",
        "split_rule": f"per subject, the last round({TEST_FRACTION} * n) of its n executions are test",
        "units": "acc m/s^2 (gravity included), gyro rad/s, device axes",
        "preprocessing": {"time_base": "least-squares line over the sample index", "lowpass_hz": CUTOFF_HZ,
                          "lowpass_taps": FILTER_TAPS, "min_label_segment_s": MIN_SEGMENT_S,
                          "interpolation": "linear", "label_source": "phone"},
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in sorted(arrays.items())},
        "age_edges": list(AGE_EDGES),
        "domains": {by: list(names) for by, names in DOMAINS_BY.items()},
        "executions": len(phone_csvs),
        "windows": int(len(arrays["label"])),
        "tie_windows_dropped": ties,
        "phone_watch_label_agreement": round(float(np.mean(agreement)), 4),
        "counts": counts_table(arrays, subjects),
        "subjects": subjects,
        "shift_evidence": shift_evidence(arrays, subjects, tug_s),
    }
    return arrays, meta


def readme(meta: dict) -> str:
    """The README of the output folder: ``TEMPLATE`` filled in from the metadata."""
    src, ev = meta["source"], meta["shift_evidence"]
    rows = []
    for by in DOMAINS_BY:
        for d, c in meta["counts"][by].items():
            e = ev[by]["domains"][d]
            for split in SPLIT_NAMES:
                total = sum(c[split].values())
                rows.append(f"| {by} | {d} | {c['subjects']} | {split} | "
                            + " | ".join(str(c[split][k]) for k in CLASSES) + f" | {total} |")
    counts = "\n".join(rows)
    evid = []
    for by in DOMAINS_BY:
        for d, e in ev[by]["domains"].items():
            g = ev[by]["ridge_lodo"][d]
            orient = ", ".join(f"{k} {v}" for k, v in e["phone_orientation"].items())
            evid.append(f"| {by} | {d} | {min(e['ages'])}–{max(e['ages'])} | {e['female']}/{e['subjects']} | "
                        f"{e['tug_s_mean']} ± {e['tug_s_std']} | {e['walking_phone_acc_std']} | "
                        f"{e['turning_watch_gyro']} | {orient} | {g['val']:.3f} | {g['target']:.3f} |")
    ctrl = ev["random_groups_control"]
    files = meta["files"]
    return TEMPLATE.read_text().format(
        meta=meta, src=src, ev=ev, ctrl=ctrl, files=files, counts=counts, evidence="\n".join(evid),
        class_header=" | ".join(CLASSES), class_rule="---|" * len(CLASSES),
        control_sizes="/".join(map(str, ctrl["sizes"])), control_percent=100 * ctrl["fraction_at_least_age_gap"],
        agreement_percent=100 * meta["phone_watch_label_agreement"], AGE_EDGES=AGE_EDGES,
        age_middle_last=AGE_EDGES[1] - 1, DATA_FILE=DATA_FILE, META_FILE=META_FILE, REBUILD=REBUILD)


def build(data_dir: Path, out_dir: Path, accept_new: bool = False) -> dict:
    """Process ``data_dir``, write the three files to ``out_dir`` and verify what was written."""
    arrays, meta = process(data_dir)
    digest = arrays_sha256(arrays)
    if EXPECTED_ARRAYS_SHA256 and digest != EXPECTED_ARRAYS_SHA256 and not accept_new:
        raise SystemExit(f"the built arrays have sha256 {digest}, expected {EXPECTED_ARRAYS_SHA256} "
                         "(EXPECTED_ARRAYS_SHA256 in scripts/build_sensor_data.py); nothing written. If the "
                         "preprocessing was changed on purpose, rerun with --accept-new-checksum and update "
                         "EXPECTED_ARRAYS_SHA256.")
    out_dir.mkdir(parents=True, exist_ok=True)
    npz = out_dir / DATA_FILE
    write_npz(npz, arrays)
    with np.load(npz, allow_pickle=False) as f:
        reread = {k: f[k] for k in f.files}
    if arrays_sha256(reread) != digest:
        raise SystemExit(f"{npz}: the arrays read back differ from those written")
    meta["files"] = {"npz": DATA_FILE, "npz_bytes": npz.stat().st_size,
                     "npz_sha256": hashlib.sha256(npz.read_bytes()).hexdigest(), "arrays_sha256": digest}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    (out_dir / "README.md").write_text(readme(meta))
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", help="sp_sw_har.tar.xz (default: ../shared/data/real_small/sp_sw_har.tar.xz "
                                          "beside the checkout, where it exists)")
    parser.add_argument("--out", default=str(ROOT / "mmdg/resources/sensors"), help="output folder")
    parser.add_argument("--accept-new-checksum", action="store_true",
                        help="write even if the arrays differ from EXPECTED_ARRAYS_SHA256")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.archive is None and not DEFAULT_ARCHIVE.is_file():
        raise SystemExit(f"no --archive given and {DEFAULT_ARCHIVE} (../shared/data/real_small/ beside the "
                         f"checkout) does not exist; pass --archive PATH/TO/sp_sw_har.tar.xz (PROVENANCE.md)")
    archive = Path(args.archive) if args.archive is not None else DEFAULT_ARCHIVE
    if not archive.is_file():
        raise SystemExit(f"--archive: {archive} is not a file; expected sp_sw_har.tar.xz (PROVENANCE.md)")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        data_dirs = sorted(Path(tmp).glob("**/DATA"))
        if len(data_dirs) != 1:
            raise SystemExit(f"{archive}: expected one DATA/ folder inside, found {len(data_dirs)}")
        meta = build(data_dirs[0], Path(args.out), args.accept_new_checksum)
    files = meta["files"]
    print(f"{meta['windows']} windows from {meta['executions']} executions -> {args.out} "
          f"({files['npz_bytes'] / 1e6:.2f} MB, arrays sha256 {files['arrays_sha256']}, "
          f"{time.perf_counter() - began:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
