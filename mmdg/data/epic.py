"""``epic_kitchens``: EPIC-Kitchens-55 in the MM-SADA domain splits D1 (P08), D2 (P01), D3 (P22).

8 verb classes, modalities ``video`` (RGB), ``flow`` (u/v) and ``audio``, as the SimMMDG reference
reads them from ``data_root`` (the media are not redistributable; see the research note §1.2):

- RGB frames (60 fps, 1-based): ``rgb/<split>/<D>/<video_id>/frame_%010d.jpg``
- flow frames (30 fps, grey): ``flow/<split>/<D>/<video_id>/{u,v}/frame_%010d.jpg``; a segment
  ``start..stop`` of RGB frames is flow frames ``ceil(start / 2)`` onwards, ``(stop - start) // 2`` of them
- audio: ``rgb/<split>/<D>/<video_id>.wav`` (the whole video, 16 kHz mono), cut by the segment's
  timestamps

``<split>`` is the split file's (train/test): the source validation reads ``test`` folders.
Split files: ``splits_dir``; else ``<data_root>/MM-SADA_Domain_Adaptation_Splits`` when it holds
``D*_*.csv``/``.pkl`` (the reference layout); else the packaged copies (``mmdg.data.annotations``).
Protocol: train = sources' train split, validation = sources' test split, target = its test split.

Clips: 32 RGB frames every 2 and 8 flow frames every 4 by default (``mmdg.data.video_datasets``
for sampling, augmentation and the 257 x 1004 spectrogram).  Stated deviation: the audio is read
only over the segment (the reference reads the whole wav and cuts; the samples are the same).
With ``check_media`` (default) every frame a segment can sample and its wav are checked to exist
when the dataset is built; a missing file raises :class:`~mmdg.data.media.MediaError` naming the
sample and the file, or with ``skip_bad_media`` drops the sample, logs it and counts it in the
run record (``skipped_samples``).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import media
from .annotations import (EPIC_SPLITS_FOLDER, EpicSegment, epic_split_file, read_epic_split,
                          resolve_splits_dir)
from .base import BENCHMARKS
from .media import MediaError
from .video_datasets import ClipBenchmark, ClipDataset, ceil_half, clip_settings, sample_indices

CLASSES = ("take", "put", "open", "close", "wash", "cut", "mix", "pour")
PARTICIPANTS = {"D1": "P08", "D2": "P01", "D3": "P22"}
FRAME = "frame_{:010d}.jpg"


def rgb_range(seg: EpicSegment) -> tuple[int, int]:
    """First RGB frame and frame count of a segment (the reference: start_frame, stop - start)."""
    return seg.start_frame, seg.stop_frame - seg.start_frame


def flow_range(seg: EpicSegment) -> tuple[int, int]:
    """First flow frame and frame count (flow at 30 fps: ceil(start / 2), (stop - start) // 2, at least 1)."""
    return ceil_half(seg.start_frame), max((seg.stop_frame - seg.start_frame) // 2, 1)


class EpicClips(ClipDataset):
    """The segments of one (domain, split) file as clips."""

    def __init__(self, bench: "EpicKitchens", domain: str, split: str, segments: list[EpicSegment], train: bool):
        super().__init__([s.label for s in segments], train, bench.skip_bad_media, bench.skip_log)
        self.bench, self.domain, self.split, self.segments = bench, domain, split, list(segments)
        self.base = bench.root()

    def rgb_dir(self, seg: EpicSegment) -> Path:
        return self.base / "rgb" / self.split / self.domain / seg.video_id

    def flow_dir(self, seg: EpicSegment) -> Path:
        return self.base / "flow" / self.split / self.domain / seg.video_id

    def wav(self, seg: EpicSegment) -> Path:
        return self.base / "rgb" / self.split / self.domain / f"{seg.video_id}.wav"

    def sample_name(self, i: int) -> str:
        s = self.segments[i]
        return f"{self.domain}/{self.split} uid {s.uid} ({s.video_id} frames {s.start_frame}-{s.stop_frame})"

    def _frames(self, folder: Path, first: int, offsets, gray: bool) -> torch.Tensor:
        return media.read_frames([folder / FRAME.format(first + k) for k in offsets.tolist()], gray)

    def load(self, i, rng):
        seg, s, mods = self.segments[i], self.bench.settings, self.bench.modalities
        out = {}
        if "video" in mods:
            first, total = rgb_range(seg)
            offsets = sample_indices(total, s.rgb_frames, s.rgb_interval, self.train, rng)
            out["video"] = self.bench.frames(self._frames(self.rgb_dir(seg), first, offsets, False), self.train, rng)
        if "flow" in mods:
            first, total = flow_range(seg)
            offsets = sample_indices(total, s.flow_frames, s.flow_interval, self.train, rng)
            u = self._frames(self.flow_dir(seg) / "u", first, offsets, True)
            v = self._frames(self.flow_dir(seg) / "v", first, offsets, True)
            out["flow"] = self.bench.flows(torch.cat([u, v], dim=1), self.train, rng)
        if "audio" in mods:
            wave, rate = media.read_wav_span(self.wav(seg), seg.start_seconds, seg.stop_seconds, s.audio_samples)
            out["audio"] = self.bench.audio(wave, rate, self.train, rng)
        return out

    def missing_file(self, i: int, listings: dict[Path, set[str] | None]) -> MediaError | None:
        """The first file segment ``i`` may read that does not exist, or None."""
        seg, mods = self.segments[i], self.bench.modalities

        def listing(folder: Path) -> set[str] | None:
            if folder not in listings:
                listings[folder] = set(os.listdir(folder)) if folder.is_dir() else None
            return listings[folder]

        checks = []
        if "video" in mods:
            checks.append((self.rgb_dir(seg), rgb_range(seg)))
        if "flow" in mods:
            checks += [(self.flow_dir(seg) / c, flow_range(seg)) for c in ("u", "v")]
        for folder, (first, total) in checks:
            names = listing(folder)
            if names is None:
                return MediaError(folder, "frame folder not found")
            for k in range(first, first + total):
                if FRAME.format(k) not in names:
                    return MediaError(folder / FRAME.format(k), "frame file not found")
        if "audio" in mods and not self.wav(seg).is_file():
            return MediaError(self.wav(seg), "audio file not found")
        return None

    def drop_missing(self) -> None:
        """Check every segment's files; raise on the first missing one, or drop and log with skipping."""
        listings: dict[Path, set[str] | None] = {}
        keep = []
        for i in range(len(self.segments)):
            err = self.missing_file(i, listings)
            if err is None:
                keep.append(i)
            elif self.skip_bad_media:
                self.skip_log.drop(self.sample_name(i), err)
            else:
                raise err.for_sample(self.sample_name(i))
        self.segments = [self.segments[i] for i in keep]
        self.labels = [s.label for s in self.segments]


@BENCHMARKS.register("epic_kitchens")
class EpicKitchens(ClipBenchmark):
    """EPIC-Kitchens D1/D2/D3 (MM-SADA splits) from ``data_root`` in the reference layout; see the module doc.

    Args:
        data_root: folder with ``rgb/`` and ``flow/`` (and possibly the split folder); needed to load data.
        modalities: which of ``video,flow,audio`` to load (comma-separated string or list).
        splits_dir / allow_pickle: where the split files are; reading ``.pkl`` needs ``allow_pickle``.
        skip_bad_media: drop (at build) or replace (at read) samples with missing/corrupt media, logged
            and counted, instead of raising.  check_media: check files exist when building datasets.
        clip: clip settings, the fields of :class:`~mmdg.data.video_datasets.ClipSettings` (rgb_frames,
            rgb_interval, flow_frames, flow_interval, short_side, crop_size, rgb_eval_crop, flow_eval_crop,
            audio_samples, audio_frontend (``spectrogram`` or ``log_mel``), n_mels, mel_n_fft, mel_hop;
            the defaults are the reference's).
    """

    name = "epic_kitchens"
    domains = ("D1", "D2", "D3")
    classes = CLASSES

    def __init__(self, data_root: str | None = None, modalities="video,flow,audio", splits_dir: str | None = None,
                 allow_pickle: bool = False, skip_bad_media: bool = False, check_media: bool = True, **clip):
        settings = clip_settings(self.name, clip, ("data_root", "modalities", "splits_dir", "allow_pickle",
                                                   "skip_bad_media", "check_media"))
        super().__init__(data_root, modalities, settings, skip_bad_media, check_media)
        self.allow_pickle = bool(allow_pickle)
        self.splits_dir = resolve_splits_dir(splits_dir, data_root, EPIC_SPLITS_FOLDER, "D*_*.*")
        self._cache: dict[tuple[str, str], EpicClips] = {}

    def segments(self, domain: str, split: str) -> list[EpicSegment]:
        """The validated rows of ``<domain>_<split>`` (no media needed)."""
        path = epic_split_file(self.splits_dir, self.check_domain(domain), self.check_split(split), self.allow_pickle)
        return read_epic_split(path, self.allow_pickle)

    def dataset(self, domain: str, split: str) -> EpicClips:
        key = (domain, split)
        if key not in self._cache:
            ds = EpicClips(self, domain, split, self.segments(domain, split), train=split == "train")
            if self.check_media:
                ds.drop_missing()
            if len(ds) == 0:
                raise ValueError(f"epic_kitchens {domain}/{split}: no sample left after dropping missing media")
            self._cache[key] = ds
        return self._cache[key]

    def describe(self) -> dict:
        return {**super().describe(), "splits_dir": str(self.splits_dir), "participants": PARTICIPANTS}
