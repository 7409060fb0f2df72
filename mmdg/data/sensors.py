"""``phone_watch``: real smartphone + smartwatch inertial activity recognition, domains = subject groups.

Data: the sp-sw-har dataset (Matey-Sanz, Casteleyn, Granell 2023, Data in Brief 109809, Zenodo
10.5281/zenodo.8398688, CC BY 4.0).  23 subjects aged 23-66 each perform 6-11 Timed-Up-and-Go
executions with a phone in the trouser pocket and a watch on the wrist.  The packaged file
``mmdg/resources/sensors/phone_watch.npz`` (2.9 MB) is built by ``scripts/build_sensor_data.py``;
``mmdg/resources/sensors/README.md`` documents the preprocessing, licence and attribution.

A sample is one 1 s window (50 samples at 50 Hz, hop 0.5 s) of both devices: modalities
``phone`` and ``watch``, each a float32 tensor (6, 50) = acc x/y/z (m/s^2, gravity included) and
gyro x/y/z (rad/s) (``channels="acc"``/``"gyro"`` keep 3 of them).  Its label is the activity
(SEATED, STANDING_UP, WALKING, TURNING, SITTING_DOWN) that covers a strict majority of the window.
Splits are by time within every subject: the last 30 % of a subject's executions are its test
windows, the others its train windows, so the two never overlap in time.

Domains (``domains_by="age"``, the default) are age bands of the subjects: young (< 40, 9 subjects,
ages 23-34), middle (40-54, 8 subjects, 46-54), older (>= 55, 6 subjects, 56-66).  The largest gap
in the ages (34 -> 46) separates the young; 55 splits the other 14 at the next gap (54 -> 56),
leaving at least 6 subjects per domain.  Why age: it changes how people move, which is what the
sensors see: the mean Timed-Up-and-Go time rises from 9.6 s (young) to 9.9 s (middle) and 10.5 s
(older) (correlation of age with a subject's mean time: 0.45), and walking and turning are
gentler in the older group (phone |acc| std while walking 2.38 against 2.75 / 3.52; watch |gyro|
while turning 2.29 against 2.64 / 2.71).  A ridge classifier on window statistics trained on two
domains loses 0.9 / 8.2 / 4.3 points of balanced accuracy from its source validation to the held
out young / middle / older domain (mean 4.4); 100 random subject groupings of the same sizes
(9/8/6) lose 3.6 +- 1.0 (21 % of them 4.4 or more): most of the shift is between subjects, and the
age grouping adds a modest systematic part.  Gender and phone orientation are confounded with age
(middle: 1 of 8 subjects female, the phone worn "front" in 31 of 76 executions; older: 4 of 6
female; young: 5 of 9 female, "front" in 11 of 88).
``domains_by="gender"`` gives the domains female (10 subjects) / male (13).

Windows (train / test), age domains:

=======  ========  ======  ===========  =======  =======  ============  =====
domain   subjects  SEATED  STANDING_UP  WALKING  TURNING  SITTING_DOWN  total
=======  ========  ======  ===========  =======  =======  ============  =====
young    9         83/32   138/60       596/257  276/123  130/62        1223/534
middle   8         93/34   133/56       497/218  241/104  155/66        1119/478
older    6         67/23   99/43        451/199  187/83   100/43        904/391
=======  ========  ======  ===========  =======  =======  ============  =====

``fit_normalizer`` returns a per-modality, per-channel z-normalisation fitted on the training
data it is given (the protocol passes the source domains' train split only).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import BENCHMARKS, Benchmark, TensorDataset

RESOURCE_DIR = Path(__file__).resolve().parents[1] / "resources" / "sensors"
DATA_FILE, META_FILE = "phone_watch.npz", "phone_watch.json"
CLASSES = ("SEATED", "STANDING_UP", "WALKING", "TURNING", "SITTING_DOWN")
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
CHANNEL_SETS = {"all": (0, 1, 2, 3, 4, 5), "acc": (0, 1, 2), "gyro": (3, 4, 5)}
MODALITIES = ("phone", "watch")
SPLIT_NAMES = ("train", "test")  # the npz ``split`` array holds indices into this
AGE_EDGES = (40, 55)  # young < 40 <= middle < 55 <= older
DOMAINS_BY = {"age": ("young", "middle", "older"), "gender": ("female", "male")}
GENDER_CODES = {"F": "female", "M": "male"}
ARRAYS = ("phone", "watch", "label", "subject", "execution", "split", "start_ms", "majority")
REBUILD = "python scripts/build_sensor_data.py --archive PATH/TO/sp_sw_har.tar.xz"


def age_domain(age: int) -> str:
    """The age band of a subject aged ``age`` years."""
    return DOMAINS_BY["age"][int(np.searchsorted(AGE_EDGES, age, side="right"))]


def subject_domain(info: Mapping, by: str) -> str:
    """The domain of a subject (``info`` has ``age`` and ``gender``) when grouping by ``by``."""
    if by == "age":
        return age_domain(int(info["age"]))
    if by == "gender":
        if info["gender"] not in GENDER_CODES:
            raise ValueError(f"gender {info['gender']!r}; expected one of {sorted(GENDER_CODES)}")
        return GENDER_CODES[info["gender"]]
    raise ValueError(f"domains_by {by!r}; expected one of {sorted(DOMAINS_BY)}")


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of the arrays' names, dtypes, shapes and bytes, in name order (independent of the zip)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


_CACHE: dict[tuple, tuple[dict[str, np.ndarray], dict]] = {}


def load_phone_watch(data_file: str | Path | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The (read-only) arrays of ``data_file`` and its metadata (the ``.json`` beside it), checked
    against each other: array names, dtypes, shapes and the arrays' sha256."""
    path = Path(data_file) if data_file is not None else RESOURCE_DIR / DATA_FILE
    meta_path = path.with_suffix(".json")
    how = f"rebuild it with `{REBUILD} --out {path.parent}`"
    for p, what in ((path, "data file"), (meta_path, "metadata file")):
        if not p.is_file():
            raise FileNotFoundError(f"phone_watch {what} not found: {p}; {how}")
    key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in (path, meta_path))
    if key in _CACHE:
        return _CACHE[key]
    try:
        meta = json.loads(meta_path.read_text())
        expected_sha = meta["files"]["arrays_sha256"]
        layout = meta["arrays"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"phone_watch metadata file {meta_path} is not valid ({type(e).__name__}: {e}); "
                         f"{how}") from None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"phone_watch data file {path} is not a readable npz file ({type(e).__name__}: {e}); "
                         f"{how}") from None
    if sorted(arrays) != sorted(ARRAYS):
        raise ValueError(f"phone_watch data file {path} holds arrays {sorted(arrays)}, expected {sorted(ARRAYS)}; "
                         f"{how}")
    for k, a in arrays.items():
        want = layout.get(k, {})
        if a.dtype.str != want.get("dtype") or list(a.shape) != want.get("shape"):
            raise ValueError(f"phone_watch data file {path}: array {k!r} is {a.dtype.str} {list(a.shape)}, "
                             f"the metadata {meta_path} says {want.get('dtype')} {want.get('shape')}; {how}")
    got = arrays_sha256(arrays)
    if got != expected_sha:
        raise ValueError(f"phone_watch data file {path} fails its checksum: arrays sha256 {got}, "
                         f"{meta_path} expects {expected_sha}; the file is corrupt or from another build; {how}")
    for field, want in (("classes", CLASSES), ("channels", CHANNELS), ("modalities", MODALITIES),
                        ("splits", SPLIT_NAMES)):
        if tuple(meta.get(field, ())) != want:
            raise ValueError(f"phone_watch metadata {meta_path}: {field} {meta.get(field)}, this version of "
                             f"mmdg expects {list(want)}; {how}")
    for a in arrays.values():
        a.flags.writeable = False
    if len(_CACHE) >= 2:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (arrays, meta)
    return arrays, meta


class ChannelNormalizer:
    """``(x - mean) / std`` per modality and channel, for tensors (..., C, T)."""

    def __init__(self, mean: Mapping[str, torch.Tensor], std: Mapping[str, torch.Tensor]):
        self.mean, self.std = dict(mean), dict(std)

    def __call__(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        if modality not in self.mean:
            raise KeyError(f"normaliser fitted on modalities {sorted(self.mean)}, got {modality!r}")
        mean, std = self.mean[modality], self.std[modality]
        if x.shape[-2] != mean.shape[0]:
            raise ValueError(f"modality {modality!r}: input has {x.shape[-2]} channels (dim -2), "
                             f"the normaliser was fitted on {mean.shape[0]}")
        return (x - mean[:, None].to(x)) / std[:, None].to(x)

    def __repr__(self) -> str:
        return f"ChannelNormalizer({sorted(self.mean)})"


@BENCHMARKS.register("phone_watch")
class PhoneWatch(Benchmark):
    """Phone + watch inertial windows of 23 subjects, domains = age bands (or gender); see the module doc.

    Args:
        data_file: the npz to load (its metadata is the ``.json`` beside it); default the packaged
            ``mmdg/resources/sensors/phone_watch.npz``.  Checked against the metadata's checksum.
        channels: ``"all"`` (acc + gyro, 6 channels), ``"acc"`` or ``"gyro"`` (3 channels).
        domains_by: ``"age"`` (young / middle / older, default) or ``"gender"`` (female / male).
    """

    name = "phone_watch"
    modalities = MODALITIES
    classes = CLASSES

    def __init__(self, data_file: str | Path | None = None, channels: str = "all", domains_by: str = "age"):
        if channels not in CHANNEL_SETS:
            raise ValueError(f"channels {channels!r}; expected one of {list(CHANNEL_SETS)}")
        if domains_by not in DOMAINS_BY:
            raise ValueError(f"domains_by {domains_by!r}; expected one of {list(DOMAINS_BY)}")
        self.channels, self.domains_by = channels, domains_by
        self.data_file = Path(data_file) if data_file is not None else RESOURCE_DIR / DATA_FILE
        self.arrays, self.meta = load_phone_watch(self.data_file)
        self.domains = DOMAINS_BY[domains_by]
        self.subject_domains: dict[str, str] = {}
        for s, info in self.meta["subjects"].items():
            d = subject_domain(info, domains_by)
            if info.get("domain", {}).get(domains_by) != d:
                raise ValueError(f"{self.data_file.with_suffix('.json')}: subject {s} is in domain "
                                 f"{info.get('domain', {}).get(domains_by)!r} by {domains_by}, this version of mmdg "
                                 f"puts it in {d!r}; rebuild with `{REBUILD}`")
            self.subject_domains[s] = d
        by_number = np.full(128, -1)
        for s, d in self.subject_domains.items():
            by_number[int(s[1:])] = self.domains.index(d)
        self._window_domain = by_number[self.arrays["subject"].astype(np.int64)]
        if (self._window_domain < 0).any():
            unknown = sorted(set(self.arrays["subject"][self._window_domain < 0].tolist()))
            raise ValueError(f"{self.data_file}: windows of subjects {unknown} missing from the metadata; "
                             f"rebuild with `{REBUILD}`")
        self._cache: dict[tuple[str, str], TensorDataset] = {}

    @property
    def window(self) -> int:
        return int(self.arrays["phone"].shape[-1])

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {m: (len(CHANNEL_SETS[self.channels]), self.window) for m in self.modalities}

    def subjects(self, domain: str) -> list[str]:
        """The subject ids (``s01`` ...) of ``domain``."""
        self.check_domain(domain)
        return sorted(s for s, d in self.subject_domains.items() if d == domain)

    def _select(self, domain: str, split: str) -> np.ndarray:
        d = self.domains.index(self.check_domain(domain))
        return (self._window_domain == d) & (self.arrays["split"] == SPLIT_NAMES.index(self.check_split(split)))

    def window_info(self, domain: str, split: str) -> dict[str, np.ndarray]:
        """Subject, execution, start time (Unix ms) and label of each window of ``dataset(domain, split)``."""
        sel = self._select(domain, split)
        return {k: self.arrays[k][sel] for k in ("subject", "execution", "start_ms", "label")}

    def dataset(self, domain: str, split: str) -> TensorDataset:
        key = (domain, split)
        if key not in self._cache:
            sel = self._select(domain, split)
            chans = list(CHANNEL_SETS[self.channels])
            inputs = {m: torch.from_numpy(self.arrays[m][sel][:, chans].astype(np.float32)) for m in self.modalities}
            label = torch.from_numpy(self.arrays["label"][sel].astype(np.int64))
            self._cache[key] = TensorDataset(inputs, label, torch.full_like(label, self.domains.index(domain)))
        return self._cache[key]

    def target_dataset(self, domain: str) -> TensorDataset:
        """Every window of the held-out ``domain``: its test split, then its train split (a held-out
        band is never trained on).  Per age band 1,295 to 1,757 windows, so one window is worth at most
        0.08 points of target accuracy (its test split alone: 391 to 534)."""
        return TensorDataset.concat([self.dataset(domain, "test"), self.dataset(domain, "train")])

    def fit_normalizer(self, train: Dataset) -> ChannelNormalizer:
        """Per-modality, per-channel mean and std (over windows and time) of ``train``."""
        if not isinstance(train, TensorDataset):
            raise TypeError(f"phone_watch.fit_normalizer needs a TensorDataset, got {type(train).__name__}")
        if len(train) == 0:
            raise ValueError("phone_watch.fit_normalizer got an empty training set")
        mean, std = {}, {}
        for m in self.modalities:
            x = train.inputs[m].double()
            mean[m] = x.mean(dim=(0, 2)).float()
            s = x.std(dim=(0, 2), unbiased=False)
            std[m] = torch.where(s > 1e-8, s, torch.ones_like(s)).float()
        return ChannelNormalizer(mean, std)

    def describe(self) -> dict:
        sizes = {d: {s: int(self._select(d, s).sum()) for s in SPLIT_NAMES} for d in self.domains}
        return {**super().describe(), "data_file": str(self.data_file), "channels": self.channels,
                "domains_by": self.domains_by, "rate_hz": self.meta["rate_hz"], "window": self.window,
                "input_shapes": self.input_shapes(), "sizes": sizes,
                "subjects": {d: self.subjects(d) for d in self.domains}}
