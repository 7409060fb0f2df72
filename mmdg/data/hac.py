"""``hac``: Human-Animal-Cartoon (SimMMDG, NeurIPS 2023), domains human / animal / cartoon.

7 classes, modalities ``video``, ``flow`` and ``audio``, read from ``data_root`` in the reference
layout (research note §1.3; media on Hugging Face ``hdong51/Human-Animal-Cartoon``):

- video: ``<domain>/videos/<name>.mp4``
- flow: ``<domain>/flow/<name>_flow_x.mp4`` and ``_flow_y.mp4`` (RGB-coded, converted to grey)
- audio: ``<domain>/audio/<name>.wav``

Split lists: ``splits_dir``; else ``<data_root>/HAC_Splits`` when it holds ``HAC_*.csv``; else the
packaged copies.  Protocol: train = sources' train lists, validation = sources' test lists,
**target = every clip of the target domain** (its test list, then its train list, evaluated
without augmentation): :meth:`HAC.target_dataset` overrides the default (the test split).  The
packaged human lists share 24 clips, which the target set therefore holds twice, as in the reference.

Sampling as the reference: the whole video is decoded, ``n`` frames; clip offsets are drawn over
``n - 1`` frames (the reference's ``total_frames``) and offset ``k`` reads decoded frame
``k - 1`` clamped to ``[0, n - 1]``.  The audio window is the first to the last sampled RGB frame
(flow frames if RGB is not loaded) at 24 fps, then as EPIC (first 160 000 samples, tiled).
Stated deviations: a flow-y video shorter than flow-x is clamped to its own last frame (the
reference falls back to up to 3 frames earlier, then frame 0); with audio alone, the window is
placed where the RGB clip would be (the reference needs video or flow).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import media
from .annotations import HAC_SPLITS_FOLDER, HacClip, hac_split_file, read_hac_list, resolve_splits_dir
from .base import BENCHMARKS
from .media import MediaError
from .video_datasets import ClipBenchmark, ClipDataset, clip_settings, sample_indices

CLASSES = ("sleeping", "watching_tv", "eating", "drinking", "swimming", "running", "opening_door")
FPS = 24.0


def decoded_frames(offsets: np.ndarray, n: int) -> np.ndarray:
    """Decoded-frame index of each sampled offset: ``offset - 1`` clamped to ``[0, n - 1]``."""
    return np.clip(offsets - 1, 0, n - 1)


class HacClips(ClipDataset):
    """HAC clips of one domain (from one or more lists)."""

    def __init__(self, bench: "HAC", domain: str, clips: list[HacClip], train: bool, what: str):
        super().__init__([c.label for c in clips], train, bench.skip_bad_media, bench.skip_log)
        self.bench, self.domain, self.clips, self.what = bench, domain, list(clips), what
        self.base = bench.root() / domain

    def files(self, clip: HacClip) -> dict[str, Path]:
        return {"video": self.base / "videos" / clip.file,
                "flow_x": self.base / "flow" / f"{clip.stem}_flow_x.mp4",
                "flow_y": self.base / "flow" / f"{clip.stem}_flow_y.mp4",
                "audio": self.base / "audio" / f"{clip.stem}.wav"}

    def sample_name(self, i: int) -> str:
        return f"{self.domain}/{self.what} {self.clips[i].file}"

    def load(self, i, rng):
        clip, s, mods = self.clips[i], self.bench.settings, self.bench.modalities
        files = self.files(clip)
        out, window = {}, None
        if "video" in mods:
            video = media.read_video(files["video"])
            n = video.shape[0]
            window = sample_indices(max(n - 1, 1), s.rgb_frames, s.rgb_interval, self.train, rng)
            frames = video[torch.from_numpy(decoded_frames(window, n))]
            out["video"] = self.bench.frames(frames, self.train, rng)
        if "flow" in mods:
            fx = media.to_gray(media.read_video(files["flow_x"]))
            fy = media.to_gray(media.read_video(files["flow_y"]))
            n = fx.shape[0]
            offsets = sample_indices(max(n - 1, 1), s.flow_frames, s.flow_interval, self.train, rng)
            u = fx[torch.from_numpy(decoded_frames(offsets, n))]
            v = fy[torch.from_numpy(decoded_frames(offsets, fy.shape[0]))]
            out["flow"] = self.bench.flows(torch.cat([u, v], dim=1), self.train, rng)
            window = offsets if window is None else window
        if "audio" in mods:
            if window is None:
                n = media.video_frame_count(files["video"])
                window = sample_indices(max(n - 1, 1), s.rgb_frames, s.rgb_interval, self.train, rng)
            segment, rate = media.read_wav_segment(files["audio"], window[0] / FPS, window[-1] / FPS)
            out["audio"] = self.bench.audio(segment, rate, self.train, rng)
        return out

    def drop_missing(self) -> None:
        """Check the files of every clip exist; raise on the first missing one, or drop and log."""
        mods = self.bench.modalities
        need = [k for k in ("video", "flow_x", "flow_y", "audio")
                if k.split("_")[0] in mods or (k == "video" and mods == ("audio",))]
        keep = []
        for i, clip in enumerate(self.clips):
            files = self.files(clip)
            bad = next((files[k] for k in need if not files[k].is_file()), None)
            if bad is None:
                keep.append(i)
                continue
            err = MediaError(bad, "file not found")
            if not self.skip_bad_media:
                raise err.for_sample(self.sample_name(i))
            self.skip_log.drop(self.sample_name(i), err)
        self.clips = [self.clips[i] for i in keep]
        self.labels = [c.label for c in self.clips]


@BENCHMARKS.register("hac")
class HAC(ClipBenchmark):
    """Human-Animal-Cartoon from ``data_root`` in the reference layout; see the module doc.

    Args: as :class:`~mmdg.data.epic.EpicKitchens` (no ``allow_pickle``: the lists are CSV).
    """

    name = "hac"
    domains = ("human", "animal", "cartoon")
    classes = CLASSES

    def __init__(self, data_root: str | None = None, modalities="video,flow,audio", splits_dir: str | None = None,
                 skip_bad_media: bool = False, check_media: bool = True, **clip):
        settings = clip_settings(self.name, clip, ("data_root", "modalities", "splits_dir", "skip_bad_media",
                                                   "check_media"))
        super().__init__(data_root, modalities, settings, skip_bad_media, check_media)
        self.splits_dir = resolve_splits_dir(splits_dir, data_root, HAC_SPLITS_FOLDER, "HAC_*_only_*.csv")
        self._cache: dict[tuple[str, str], HacClips] = {}

    def clips(self, domain: str, split: str) -> list[HacClip]:
        """The validated rows of ``HAC_<split>_only_<domain>.csv`` (no media needed)."""
        return read_hac_list(hac_split_file(self.splits_dir, self.check_domain(domain), self.check_split(split)))

    def _build(self, domain: str, lists: tuple[str, ...], train: bool) -> HacClips:
        key = (domain, "+".join(lists))
        if key not in self._cache:
            clips = [c for split in lists for c in self.clips(domain, split)]
            ds = HacClips(self, domain, clips, train, what=key[1])
            if self.check_media:
                ds.drop_missing()
            if len(ds) == 0:
                raise ValueError(f"hac {domain}/{key[1]}: no sample left after dropping missing media")
            self._cache[key] = ds
        return self._cache[key]

    def dataset(self, domain: str, split: str) -> HacClips:
        return self._build(domain, (self.check_split(split),), train=split == "train")

    def target_dataset(self, domain: str) -> HacClips:
        """Every clip of ``domain``: its test list, then its train list, without augmentation."""
        return self._build(domain, ("test", "train"), train=False)

    def describe(self) -> dict:
        return {**super().describe(), "splits_dir": str(self.splits_dir), "fps": FPS}
