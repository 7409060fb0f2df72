"""What EPIC-Kitchens and HAC share: clip sampling, frame augmentation, the audio front end,
media-error handling and the benchmark base class.

Sampling and augmentation follow the SimMMDG reference (mmaction2 0.13 pipelines):

- ``sample_indices``: mmaction's ``SampleFrames`` with one clip: a random offset in
  ``[0, total - clip_len * interval]`` for training, the centred one for evaluation, indices
  looped modulo ``total`` when the clip is longer than the segment.
- ``FrameTransform``: resize the short side to 256; train: ``RandomResizedCrop`` (area 0.08-1,
  aspect 3/4-4/3, 10 tries, else the centred square), resize to 224 x 224, horizontal flip with
  p 0.5 (for flow the u channel is inverted, ``255 - u``, as mmaction does); evaluation: centre
  crop (224 for RGB, 256 for flow).  Normalisation: ImageNet mean/std for RGB, 128/128 for flow.
  Stated deviation: bilinear resizing by ``torch.nn.functional.interpolate`` (half-pixel centres,
  rounded to uint8 like OpenCV's output), not OpenCV itself, so pixels may differ by a grey level.
- ``AudioTransform``: the reference's 257 x 1004 standardised log power spectrogram of the first
  160 000 samples (tiled if shorter), train-time U(-0.05, 0.05) noise and a 9-row frequency mask;
  or (``audio_frontend="log_mel"``, our addition) a torchaudio log-mel map with the same
  standardisation and augmentation.

Randomness: each training sample draws a seed from torch's global generator, which the trainer
seeds and DataLoader workers reseed per worker; evaluation is deterministic.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from . import media
from .audio import log_mel
from .base import Benchmark
from .media import MediaError

log = logging.getLogger("mmdg.data")

MODALITIES = ("video", "flow", "audio")
RGB_MEAN, RGB_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
FLOW_MEAN, FLOW_STD = (128.0, 128.0), (128.0, 128.0)
AUDIO_FRONTENDS = ("spectrogram", "log_mel")


@dataclass(frozen=True)
class ClipSettings:
    """Clip sizes; the defaults are the reference's."""

    rgb_frames: int = 32
    rgb_interval: int = 2
    flow_frames: int = 8
    flow_interval: int = 4
    short_side: int = 256
    crop_size: int = 224
    rgb_eval_crop: int = 224
    flow_eval_crop: int = 256
    audio_samples: int = 160_000
    audio_frontend: str = "spectrogram"
    n_mels: int = 128
    mel_n_fft: int = 512
    mel_hop: int = 160

    def __post_init__(self):
        for name in ("rgb_frames", "rgb_interval", "flow_frames", "flow_interval", "short_side", "crop_size",
                     "rgb_eval_crop", "flow_eval_crop", "n_mels", "mel_n_fft", "mel_hop"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"clip setting {name} must be an int >= 1, got {v!r}")
        if not isinstance(self.audio_samples, int) or self.audio_samples < media.NPERSEG:
            raise ValueError(f"clip setting audio_samples must be an int >= {media.NPERSEG}, "
                             f"got {self.audio_samples!r}")
        if self.audio_frontend not in AUDIO_FRONTENDS:
            raise ValueError(f"audio_frontend {self.audio_frontend!r}; expected one of {list(AUDIO_FRONTENDS)}")
        for name in ("crop_size", "rgb_eval_crop", "flow_eval_crop"):
            if getattr(self, name) > self.short_side:
                raise ValueError(f"clip setting {name}={getattr(self, name)} exceeds short_side={self.short_side}")

    def audio_shape(self) -> tuple[int, int, int]:
        if self.audio_frontend == "spectrogram":
            return (1, media.NPERSEG // 2 + 1, media.spectrogram_frames(self.audio_samples))
        return (1, self.n_mels, self.audio_samples // self.mel_hop + 1)

    def input_shapes(self, modalities) -> dict[str, tuple[int, ...]]:
        """Training shapes; evaluation flow clips are ``flow_eval_crop`` wide (256 by default)."""
        shapes = {"video": (3, self.rgb_frames, self.crop_size, self.crop_size),
                  "flow": (2, self.flow_frames, self.crop_size, self.crop_size),
                  "audio": self.audio_shape()}
        return {m: shapes[m] for m in modalities}


# ---------------------------------------------------------------- temporal sampling

def sample_indices(total: int, clip_len: int, interval: int, train: bool,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """0-based frame offsets of one clip of ``clip_len`` frames every ``interval`` in ``total`` frames."""
    if total < 1:
        raise ValueError(f"sample_indices: total must be >= 1, got {total}")
    span = clip_len * interval
    if train:
        offset = int(rng.integers(total - span + 1)) if total - span + 1 > 0 else 0
    else:
        offset = int((total - span + 1) / 2.0) if total > span - 1 else 0
    return np.mod(offset + interval * np.arange(clip_len), total)


# ---------------------------------------------------------------- spatial transforms

def random_resized_box(h: int, w: int, rng: np.random.Generator, area=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                       attempts: int = 10) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of mmaction's RandomResizedCrop: ``attempts`` (area, log-uniform aspect)
    draws, the first that fits wins; else the centred square of the short side."""
    ratios = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=attempts))
    areas = rng.uniform(*area, size=attempts) * h * w
    cws = np.round(np.sqrt(areas * ratios)).astype(int)
    chs = np.round(np.sqrt(areas / ratios)).astype(int)
    for cw, ch in zip(cws, chs):
        if ch <= h and cw <= w:
            x0 = int(rng.integers(w - cw + 1))
            y0 = int(rng.integers(h - ch + 1))
            return x0, y0, x0 + int(cw), y0 + int(ch)
    s = min(h, w)
    x0, y0 = (w - s) // 2, (h - s) // 2
    return x0, y0, x0 + s, y0 + s


def resize(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinear resize of float (T, C, H, W) holding 0..255 values, rounded to integers like uint8 output."""
    if frames.shape[-2:] == (h, w):
        return frames
    out = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return out.round_().clamp_(0, 255)


def resize_short_side(frames: torch.Tensor, short: int) -> torch.Tensor:
    """Scale so the short side is ``short`` (sizes rounded half up, as mmcv)."""
    h, w = frames.shape[-2:]
    scale = short / min(h, w)
    return resize(frames, int(h * scale + 0.5), int(w * scale + 0.5))


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    h, w = frames.shape[-2:]
    y0, x0 = max(h - size, 0) // 2, max(w - size, 0) // 2
    return frames[..., y0:y0 + size, x0:x0 + size]


class FrameTransform:
    """uint8 frames (T, C, H, W) -> normalised float32 clip (C, T, S, S); C = 3 (RGB) or 2 (flow u, v)."""

    def __init__(self, settings: ClipSettings, flow: bool):
        self.s, self.flow = settings, flow
        mean, std = (FLOW_MEAN, FLOW_STD) if flow else (RGB_MEAN, RGB_STD)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, frames: torch.Tensor, train: bool, rng: np.random.Generator | None = None) -> torch.Tensor:
        x = frames
        if min(x.shape[-2:]) != self.s.short_side:
            x = resize_short_side(x.float(), self.s.short_side)
        # crop before converting to float: the same pixels, less work
        if train:
            x0, y0, x1, y1 = random_resized_box(x.shape[-2], x.shape[-1], rng)
            x = resize(x[..., y0:y1, x0:x1].float(), self.s.crop_size, self.s.crop_size)
            if rng.random() < 0.5:
                x = x.flip(-1)
                if self.flow:
                    x[:, 0] = 255 - x[:, 0]
        else:
            x = center_crop(x, self.s.flow_eval_crop if self.flow else self.s.rgb_eval_crop).float()
        x = (x - self.mean) / self.std
        return x.permute(1, 0, 2, 3).contiguous()


# ---------------------------------------------------------------- audio

class AudioTransform:
    """An audio segment (float64 samples) -> float32 (1, F, T) per :class:`ClipSettings`."""

    def __init__(self, settings: ClipSettings):
        self.s = settings

    def __call__(self, segment: np.ndarray, rate: int, train: bool,
                 rng: np.random.Generator | None = None) -> torch.Tensor:
        x = media.fit_length(segment, self.s.audio_samples)
        if self.s.audio_frontend == "spectrogram":
            spec = media.reference_spectrogram(x, rate)
        else:
            mel = log_mel(torch.from_numpy(x).float(), rate, self.s.mel_n_fft, self.s.mel_hop, self.s.n_mels)
            spec = media.standardize(mel.double().numpy())
        if train:
            spec = media.augment_spectrogram(spec, rng)
        return torch.from_numpy(spec.astype(np.float32))[None]


# ---------------------------------------------------------------- media problems

class SkipLog:
    """Samples skipped for missing or unreadable media, for the run record.

    ``dropped``: found missing when the dataset was built (exact, with files).  Read failures
    during training are counted across DataLoader workers (a shared counter); the files are
    listed for failures seen in this process.
    """

    def __init__(self):
        self.dropped: list[dict] = []
        self.read_failed: list[dict] = []
        self._count = multiprocessing.Value("i", 0)

    def drop(self, sample: str, error: MediaError) -> None:
        self.dropped.append({"sample": sample, "file": error.file, "reason": error.reason})
        log.warning("skipping sample %s: %s: %s", sample, error.file, error.reason)

    def read_failure(self, sample: str, error: MediaError) -> None:
        with self._count.get_lock():
            self._count.value += 1
        if len(self.read_failed) < 1000:
            self.read_failed.append({"sample": sample, "file": error.file, "reason": error.reason})
        log.warning("sample %s unreadable, replaced by the next one: %s: %s", sample, error.file, error.reason)

    def report(self) -> dict:
        return {"dropped_at_build": len(self.dropped), "read_failures": int(self._count.value),
                "dropped": list(self.dropped), "read_failed": list(self.read_failed)}


class ClipDataset(Dataset):
    """Map-style dataset of media clips; subclasses implement :meth:`load` and :meth:`sample_name`.

    A :class:`MediaError` is re-raised naming the sample, or with ``skip_bad_media`` logged,
    counted in ``skip_log`` and the next sample returned instead.
    """

    def __init__(self, labels: list[int], train: bool, skip_bad_media: bool, skip_log: SkipLog):
        self.labels, self.train = list(labels), train
        self.skip_bad_media, self.skip_log = skip_bad_media, skip_log

    def __len__(self) -> int:
        return len(self.labels)

    def sample_name(self, i: int) -> str:
        raise NotImplementedError

    def load(self, i: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _rng(self) -> np.random.Generator | None:
        return np.random.default_rng(int(torch.randint(0, 2**62, ()).item())) if self.train else None

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        for k in range(n):
            j = (i + k) % n
            try:
                return {"inputs": self.load(j, self._rng()), "label": self.labels[j], "domain": 0}
            except MediaError as e:
                if not self.skip_bad_media:
                    raise e.for_sample(self.sample_name(j)) from None
                self.skip_log.read_failure(self.sample_name(j), e)
        raise MediaError("-", f"every one of the {n} samples failed to load")


def clip_settings(who: str, clip: dict, others=()) -> ClipSettings:
    """:class:`ClipSettings` from keyword arguments, or a TypeError naming the unknown ones and listing
    the valid ones (``others``: the benchmark's own parameters)."""
    names = [f.name for f in fields(ClipSettings)]
    unknown = sorted(set(clip) - set(names))
    if unknown:
        raise TypeError(f"benchmark {who!r} got unknown parameter(s) {unknown}; valid parameters: "
                        f"{sorted([*others, *names])}")
    return ClipSettings(**clip)


class ClipBenchmark(Benchmark):
    """Shared constructor arguments and reporting of the EPIC-Kitchens and HAC benchmarks."""

    def __init__(self, data_root, modalities, settings: ClipSettings, skip_bad_media: bool, check_media: bool):
        self.data_root = Path(data_root) if data_root is not None else None
        mods = modalities.split(",") if isinstance(modalities, str) else list(modalities)
        mods = [m.strip() for m in mods if m.strip()]
        bad = [m for m in mods if m not in MODALITIES]
        if bad or not mods:
            raise ValueError(f"{self.name}: modalities {mods}; expected a non-empty subset of {list(MODALITIES)}")
        self.modalities = tuple(m for m in MODALITIES if m in mods)
        self.settings = settings
        self.skip_bad_media, self.check_media = bool(skip_bad_media), bool(check_media)
        self.skip_log = SkipLog()
        self.frames = FrameTransform(settings, flow=False)
        self.flows = FrameTransform(settings, flow=True)
        self.audio = AudioTransform(settings)

    def root(self) -> Path:
        if self.data_root is None:
            raise ValueError(f"benchmark {self.name!r} needs data_root (CLI: --data-root DIR) holding the media")
        if not self.data_root.is_dir():
            raise FileNotFoundError(f"benchmark {self.name!r}: data_root {self.data_root} is not a directory")
        return self.data_root

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.settings.input_shapes(self.modalities)

    def skipped_samples(self) -> dict:
        """Samples skipped for bad media (see :class:`SkipLog`), for the run record."""
        return self.skip_log.report()

    def describe(self) -> dict:
        return {**super().describe(), "data_root": str(self.data_root), "settings": asdict(self.settings),
                "input_shapes": self.input_shapes(), "skip_bad_media": self.skip_bad_media}


def ceil_half(frame: int) -> int:
    return int(math.ceil(frame / 2))
