"""Split files of EPIC-Kitchens (MM-SADA D1/D2/D3) and HAC, read safely and validated.

The packaged copies live in ``mmdg/resources/annotations/`` in the reference layout
(``MM-SADA_Domain_Adaptation_Splits/<D>_<split>.{csv,pkl}``, ``HAC_Splits/HAC_<split>_only_<domain>.csv``);
their provenance and licence notes are in the README there.

EPIC splits are read from CSV by default.  The original files are pandas pickles; reading them
unpickles arbitrary objects, so it happens only with ``allow_pickle=True``.  Either way the
columns and values are validated, and errors name the file and the row or column at fault.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ANNOTATIONS_DIR = Path(__file__).resolve().parents[1] / "resources" / "annotations"
EPIC_SPLITS_FOLDER = "MM-SADA_Domain_Adaptation_Splits"
HAC_SPLITS_FOLDER = "HAC_Splits"

# The columns the loader needs; the files have more (uid, participant_id, narration, verb).
EPIC_COLUMNS = ("video_id", "start_timestamp", "stop_timestamp", "start_frame", "stop_frame", "verb_class")
EPIC_NUM_CLASSES = 8
HAC_NUM_CLASSES = 7
TIMESTAMP = re.compile(r"(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)")


class AnnotationError(ValueError):
    """A split file that is missing, unreadable or does not hold what the loader needs."""


@dataclass(frozen=True)
class EpicSegment:
    """One action segment: RGB frame range (60 fps, 1-based files) and its time span."""

    uid: int
    video_id: str
    start_frame: int
    stop_frame: int
    start_seconds: float
    stop_seconds: float
    label: int


@dataclass(frozen=True)
class HacClip:
    """One HAC clip: the video file name (``<stem>.mp4``) and its class."""

    file: str
    label: int

    @property
    def stem(self) -> str:
        return self.file[:-4]


def parse_timestamp(text: str, where: str = "timestamp") -> float:
    """``"HH:MM:SS.ss"`` -> seconds."""
    m = TIMESTAMP.fullmatch(str(text).strip())
    if not m:
        raise AnnotationError(f"{where}: {text!r} is not a timestamp HH:MM:SS.ss")
    h, mi, s = m.groups()
    return (float(h) * 60 + float(mi)) * 60 + float(s)


def epic_split_file(splits_dir: str | Path, domain: str, split: str, allow_pickle: bool = False) -> Path:
    """``<splits_dir>/<domain>_<split>.csv``, or the ``.pkl`` when only it exists and ``allow_pickle``."""
    base = Path(splits_dir) / f"{domain}_{split}"
    csv_path, pkl_path = base.with_suffix(".csv"), base.with_suffix(".pkl")
    if csv_path.is_file():
        return csv_path
    if pkl_path.is_file():
        if allow_pickle:
            return pkl_path
        raise AnnotationError(f"{csv_path} not found; {pkl_path} exists but reading pickles is off "
                              f"(it can run arbitrary code): pass allow_pickle=True, or convert it to CSV")
    raise AnnotationError(f"EPIC split file not found: {csv_path}" + (" (or .pkl)" if allow_pickle else ""))


def _epic_frame(path: Path, allow_pickle: bool) -> pd.DataFrame:
    if path.suffix == ".pkl":
        if not allow_pickle:
            raise AnnotationError(f"{path}: reading pickles is off; pass allow_pickle=True")
        try:
            df = pd.read_pickle(path)
        except Exception as e:  # unpickling can fail in many ways
            raise AnnotationError(f"{path}: cannot unpickle ({type(e).__name__}: {e})") from None
        if not isinstance(df, pd.DataFrame):
            raise AnnotationError(f"{path}: holds a {type(df).__name__}, expected a pandas DataFrame")
        return df
    try:
        return pd.read_csv(path, dtype={"video_id": str, "start_timestamp": str, "stop_timestamp": str})
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise AnnotationError(f"{path}: not a readable CSV ({type(e).__name__}: {e})") from None


def read_epic_split(path: str | Path, allow_pickle: bool = False) -> list[EpicSegment]:
    """The segments of one MM-SADA split file (CSV, or pickle with ``allow_pickle``), validated."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"EPIC split file not found: {path}")
    df = _epic_frame(path, allow_pickle)
    missing = [c for c in EPIC_COLUMNS if c not in df.columns]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {missing}; it has {list(df.columns)}, "
                              f"expected at least {list(EPIC_COLUMNS)}")
    segments = []
    for i, row in enumerate(df.to_dict("records")):
        where = f"{path} row {i + 1}"
        try:
            start, stop, label = int(row["start_frame"]), int(row["stop_frame"]), int(row["verb_class"])
        except (TypeError, ValueError):
            raise AnnotationError(f"{where}: start_frame/stop_frame/verb_class must be integers, got "
                                  f"{row['start_frame']!r}/{row['stop_frame']!r}/{row['verb_class']!r}") from None
        if not 0 <= label < EPIC_NUM_CLASSES:
            raise AnnotationError(f"{where}: verb_class {label} outside 0..{EPIC_NUM_CLASSES - 1}")
        if start < 1 or stop <= start:
            raise AnnotationError(f"{where}: frames {start}..{stop}; expected 1 <= start_frame < stop_frame")
        t0 = parse_timestamp(row["start_timestamp"], f"{where} start_timestamp")
        t1 = parse_timestamp(row["stop_timestamp"], f"{where} stop_timestamp")
        if t1 < t0:
            raise AnnotationError(f"{where}: stop_timestamp {row['stop_timestamp']} before start_timestamp "
                                  f"{row['start_timestamp']}")
        video = str(row["video_id"])
        if not video or "/" in video or video.startswith("."):
            raise AnnotationError(f"{where}: video_id {video!r} is not a plain folder name")
        uid = row.get("uid", i)
        segments.append(EpicSegment(int(uid) if pd.notna(uid) else i, video, start, stop, t0, t1, label))
    if not segments:
        raise AnnotationError(f"{path}: no rows")
    return segments


def hac_split_file(splits_dir: str | Path, domain: str, split: str) -> Path:
    return Path(splits_dir) / f"HAC_{split}_only_{domain}.csv"


def read_hac_list(path: str | Path) -> list[HacClip]:
    """The clips of one HAC list: headerless CSV rows ``<file>.mp4,<label 0..6>``, validated."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"HAC list not found: {path}")
    clips = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            where = f"{path} row {i + 1}"
            if not row:
                continue
            if len(row) != 2:
                raise AnnotationError(f"{where}: {len(row)} column(s) {row}; expected 2: file name, label")
            name, label = row[0].strip(), row[1].strip()
            if not name.endswith(".mp4") or "/" in name or name.startswith("."):
                raise AnnotationError(f"{where}: file {name!r} is not a plain <name>.mp4")
            try:
                y = int(label)
            except ValueError:
                raise AnnotationError(f"{where}: label {label!r} is not an integer") from None
            if not 0 <= y < HAC_NUM_CLASSES:
                raise AnnotationError(f"{where}: label {y} outside 0..{HAC_NUM_CLASSES - 1}")
            clips.append(HacClip(name, y))
    if not clips:
        raise AnnotationError(f"{path}: no rows")
    return clips


def resolve_splits_dir(splits_dir: str | Path | None, data_root: str | Path | None, folder: str,
                       probe: str) -> Path:
    """Where to read split files from: ``splits_dir`` if given; else ``<data_root>/<folder>`` when it
    holds ``probe`` (the reference layout); else the packaged copy."""
    if splits_dir is not None:
        d = Path(splits_dir)
        if not d.is_dir():
            raise AnnotationError(f"splits_dir {d} is not a directory")
        return d
    if data_root is not None:
        d = Path(data_root) / folder
        if any(d.glob(probe)):
            return d
    return ANNOTATIONS_DIR / folder
