"""Tiny EPIC-Kitchens and HAC datasets written in the real on-disk layout, for tests and benchmarks.

The media are synthetic but real files: JPEG frames (456 x 256, the EPIC-55 frame size, by
default), 16 kHz mono wav, H.264 mp4.  Each class has its own colour, moving square and tone,
so a model can learn something; the split files are written beside them in the reference
layout, so ``--data-root <root>`` alone finds everything.

    write_epic_fixture(root)  -> root/MM-SADA_Domain_Adaptation_Splits/D1_train.csv, rgb/..., flow/...
    write_hac_fixture(root)   -> root/HAC_Splits/HAC_train_only_human.csv, human/videos/..., ...
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from .annotations import EPIC_SPLITS_FOLDER, HAC_SPLITS_FOLDER
from .epic import FRAME, PARTICIPANTS
from .hac import CLASSES as HAC_CLASSES
from .media import write_video

EPIC_FPS, AUDIO_RATE = 60, 16_000
EPIC_COLUMNS_ALL = ("uid", "participant_id", "video_id", "narration", "start_timestamp", "stop_timestamp",
                    "start_frame", "stop_frame", "verb", "verb_class")
EPIC_VERBS = ("take", "put", "open", "close", "wash", "cut", "mix", "pour")


def timestamp(seconds: float) -> str:
    """Seconds -> ``HH:MM:SS.ss`` (the EPIC annotation format)."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:05.2f}"


def class_frame(label: int, t: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3): a class colour, a square moving with time ``t`` and a little noise."""
    hue = np.array([(37 * label) % 256, (91 * label + 60) % 256, (151 * label + 120) % 256], dtype=np.float32)
    img = np.empty((height, width, 3), dtype=np.float32)
    img[:] = 0.6 * hue + 40
    side = max(height // 4, 2)
    x = (t * (2 + label)) % max(width - side, 1)
    y = (height - side) * (label + 1) // (len(EPIC_VERBS) + 2)
    img[y:y + side, x:x + side] = 255 - hue
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def flow_frame(label: int, width: int, height: int, rng: np.random.Generator, axis: int) -> np.ndarray:
    """uint8 (H, W): grey flow around 128 with a class-dependent shift on one axis."""
    shift = (label - 3.5) * 6 * (1 if axis == 0 else -1)
    img = 128 + shift + rng.normal(0, 4, (height, width))
    return img.clip(0, 255).astype(np.uint8)


def tone(label: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """float32 samples: a class-dependent tone with noise."""
    t = np.arange(samples) / AUDIO_RATE
    return (0.3 * np.sin(2 * np.pi * (220 * (label + 1)) * t) + 0.02 * rng.normal(size=samples)).astype(np.float32)


def _save_jpeg(path: Path, array: np.ndarray, quality: int) -> None:
    Image.fromarray(array).save(path, format="JPEG", quality=quality)


def write_epic_fixture(root: str | Path, domains=("D1", "D2", "D3"), clips: int = 4, frame_size=(456, 256),
                       segment_frames: tuple[int, int] = (70, 100), gap: int = 6, seed: int = 0,
                       quality: int = 90) -> Path:
    """Write ``clips`` segments per (domain, split), one video each, in the EPIC layout; returns ``root``.

    Each video is its segments back to back (``gap`` frames between), frames numbered from 1;
    flow has half as many frames (30 fps); the wav covers the video.  ``frame_size`` is (W, H).
    """
    root = Path(root)
    width, height = frame_size
    rng = np.random.default_rng(seed)
    (root / EPIC_SPLITS_FOLDER).mkdir(parents=True, exist_ok=True)
    uid = 0
    for d in domains:
        for v, split in enumerate(("train", "test")):
            video_id = f"{PARTICIPANTS[d]}_{v + 1:02d}"
            rows, cursor, labels = [], 1 + gap, []
            for k in range(clips):
                label = (k + v + int(d[1:])) % len(EPIC_VERBS)
                length = int(rng.integers(segment_frames[0], segment_frames[1] + 1))
                start, stop = cursor, cursor + length
                rows.append({"uid": uid, "participant_id": PARTICIPANTS[d], "video_id": video_id,
                             "narration": f"{EPIC_VERBS[label]} thing", "start_timestamp": timestamp(start / EPIC_FPS),
                             "stop_timestamp": timestamp(stop / EPIC_FPS), "start_frame": start, "stop_frame": stop,
                             "verb": EPIC_VERBS[label], "verb_class": label})
                labels.append((start, stop, label))
                uid, cursor = uid + 1, stop + gap
            n_frames = cursor
            frame_label = np.full(n_frames + 1, -1)
            for start, stop, label in labels:
                frame_label[start:stop + 1] = label
            rgb = root / "rgb" / split / d / video_id
            rgb.mkdir(parents=True, exist_ok=True)
            for f in range(1, n_frames + 1):
                _save_jpeg(rgb / FRAME.format(f), class_frame(max(frame_label[f], 0), f, width, height, rng), quality)
            for axis, c in enumerate(("u", "v")):
                folder = root / "flow" / split / d / video_id / c
                folder.mkdir(parents=True, exist_ok=True)
                for f in range(1, n_frames // 2 + 2):
                    lab = max(frame_label[min(2 * f, n_frames)], 0)
                    _save_jpeg(folder / FRAME.format(f), flow_frame(lab, width, height, rng, axis), quality)
            samples = int(round(n_frames / EPIC_FPS * AUDIO_RATE))
            wave = 0.01 * rng.normal(size=samples).astype(np.float32)
            for start, stop, label in labels:
                a, b = int(start / EPIC_FPS * AUDIO_RATE), min(int(stop / EPIC_FPS * AUDIO_RATE), samples)
                wave[a:b] += tone(label, b - a, rng)
            soundfile.write(rgb.parent / f"{video_id}.wav", wave, AUDIO_RATE, subtype="PCM_16")
            with open(root / EPIC_SPLITS_FOLDER / f"{d}_{split}.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=EPIC_COLUMNS_ALL)
                w.writeheader()
                w.writerows(rows)
    return root


def write_hac_fixture(root: str | Path, domains=("human", "animal", "cartoon"), clips: int = 3,
                      frame_size=(320, 240), frames: int = 72, fps: int = 24, seed: int = 0) -> Path:
    """Write ``clips`` mp4 clips (``frames`` frames at ``fps``) per (domain, split) in the HAC layout.

    Stated assumption: HAC clips come in several resolutions; 320 x 240 stands in for them.
    Flow videos are the grey flow repeated over RGB (the real ones are RGB-coded).
    """
    root = Path(root)
    width, height = frame_size
    rng = np.random.default_rng(seed)
    (root / HAC_SPLITS_FOLDER).mkdir(parents=True, exist_ok=True)
    for di, d in enumerate(domains):
        for folder in ("videos", "flow", "audio"):
            (root / d / folder).mkdir(parents=True, exist_ok=True)
        for si, split in enumerate(("train", "test")):
            rows = []
            for k in range(clips):
                label = (k + si + di) % len(HAC_CLASSES)
                stem = f"{d}_{HAC_CLASSES[label]}_{split}_{k:03d}"
                video = np.stack([class_frame(label, t, width, height, rng) for t in range(frames)])
                write_video(root / d / "videos" / f"{stem}.mp4", video, fps)
                for axis, suffix in enumerate(("x", "y")):
                    flow = np.stack([flow_frame(label, width, height, rng, axis) for _ in range(frames)])
                    write_video(root / d / "flow" / f"{stem}_flow_{suffix}.mp4",
                                np.repeat(flow[..., None], 3, axis=-1), fps)
                wave = tone(label, int(round(frames / fps * AUDIO_RATE)), rng)
                soundfile.write(root / d / "audio" / f"{stem}.wav", wave, AUDIO_RATE, subtype="PCM_16")
                rows.append((f"{stem}.mp4", label))
            with open(root / HAC_SPLITS_FOLDER / f"HAC_{split}_only_{d}.csv", "w", newline="") as f:
                csv.writer(f).writerows(rows)
    return root
