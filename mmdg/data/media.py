"""Media decoding for the file-backed benchmarks: JPEG frames, mp4 video, wav audio, spectrograms.

Every reader raises :class:`MediaError` naming the file (the datasets add the sample).  mp4 needs
PyAV (``av``) and wav needs ``soundfile``, both imported when first used (pinned in
requirements.txt); torchvision 0.29 and torchaudio 2.11 no longer read or write video.
"""
from __future__ import annotations

from pathlib import Path

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# SimMMDG's spectrogram: scipy.signal.spectrogram(x, fs, nperseg=512, noverlap=353) with its
# defaults (periodic Tukey window alpha 0.25, constant detrend, one-sided PSD density scaling).
NPERSEG, NOVERLAP, TUKEY_ALPHA = 512, 353, 0.25
LOG_FLOOR, STD_EPS = 1e-7, 1e-9
# A wav may end up to this long before a segment's end (audio tracks are often a little shorter
# than their video); a shorter file is a media error, not silence or a tiled fragment.
SHORT_AUDIO_TOLERANCE_S = 0.05
# ITU-R 601 luma, as OpenCV's RGB2GRAY (the HAC reference converts RGB-coded flow with it).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class MediaError(ValueError):
    """A media file that is missing, unreadable or not what the loader expects."""

    def __init__(self, file: str | Path, reason: str, sample: str | None = None):
        self.file, self.reason, self.sample = str(file), reason, sample
        where = f"sample {sample}: " if sample else ""
        super().__init__(f"{where}{file}: {reason}")

    def for_sample(self, sample: str) -> "MediaError":
        return MediaError(self.file, self.reason, sample)


# ---------------------------------------------------------------- images

def read_jpeg_array(path: str | Path, gray: bool = False) -> np.ndarray:
    """A JPEG as uint8 (H, W, C), C = 3 (RGB) or 1 (``gray``), decoded by Pillow (libjpeg)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MediaError(path, f"cannot read ({type(e).__name__}: {e.strerror or e})") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            array = np.asarray(img.convert("L" if gray else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError(path, f"not a decodable JPEG ({type(e).__name__}: {e})") from None
    return array[..., None] if gray else array


def read_frames(paths, gray: bool = False) -> torch.Tensor:
    """JPEG files as uint8 (T, C, H, W) (a view of one (T, H, W, C) array; repeated paths decoded once)."""
    cache: dict[str, np.ndarray] = {}
    arrays, first = [], None
    for p in paths:
        key = str(p)
        if key not in cache:
            cache[key] = read_jpeg_array(p, gray)
            if arrays and cache[key].shape != arrays[0].shape:
                raise MediaError(p, f"frame size {cache[key].shape[:2]} differs from the clip's first frame "
                                    f"{arrays[0].shape[:2]} ({first})")
        first = p if first is None else first
        arrays.append(cache[key])
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> uint8 (..., 1, H, W) by ITU-R 601 luma, rounded as OpenCV does."""
    w = torch.tensor(GRAY_WEIGHTS, dtype=torch.float32).view(3, 1, 1)
    y = (rgb.float() * w).sum(-3, keepdim=True)
    return y.round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------- video (PyAV)

def _av():
    try:
        import av
    except ImportError:
        raise ImportError("reading/writing mp4 needs PyAV: pip install av (pinned in requirements.txt)") from None
    return av


def _decode_video(path: str | Path, use):
    """``use(stream, container)`` on the first video stream of ``path``; decode errors become MediaError."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(path, "has no video stream")
            return use(container.streams.video[0], container)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(path, f"cannot decode video ({type(e).__name__}: {e})") from None


def read_video(path: str | Path) -> torch.Tensor:
    """Every frame of the first video stream of ``path`` as uint8 (T, 3, H, W), RGB."""
    def frames_of(stream, container):
        stream.thread_type = "AUTO"
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)]

    frames = _decode_video(path, frames_of)
    if not frames:
        raise MediaError(Path(path), "no decodable video frames")
    odd = next((i for i, f in enumerate(frames) if f.shape != frames[0].shape), None)
    if odd is not None:
        raise MediaError(Path(path), f"frame {odd} is {frames[odd].shape[:2]}, frame 0 is {frames[0].shape[:2]}: "
                                     f"mixed frame sizes")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def video_frame_count(path: str | Path) -> int:
    """Frames of the first video stream: the container's count, or decoded and counted when it has none."""
    n = _decode_video(path, lambda stream, container: stream.frames or sum(1 for _ in container.decode(stream)))
    if n < 1:
        raise MediaError(Path(path), "no video frames")
    return int(n)


def write_video(path: str | Path, frames: np.ndarray, fps: int, crf: int = 18) -> None:
    """Write uint8 (T, H, W, 3) RGB frames as H.264 mp4 (yuv420p, so H and W must be even)."""
    av = _av()
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"write_video {path}: frames must be (T, H, W, 3) with even H, W; got {frames.shape}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------- audio

def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise ImportError("reading wav needs soundfile: pip install soundfile (pinned in requirements.txt)") from None
    return soundfile


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A sound file as float64 mono samples in [-1, 1] and its sample rate.

    Deviation: multi-channel files are averaged to mono (the reference assumes mono files).
    """
    soundfile = _soundfile()
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        samples, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise MediaError(path, f"cannot decode audio ({type(e).__name__}: {e})") from None
    if len(samples) == 0:
        raise MediaError(path, "holds no audio samples")
    return samples.mean(axis=1), int(rate)


def check_audio_span(path, n: int, rate: int, start_s: float, stop_s: float) -> None:
    """A MediaError if a file of ``n`` samples ends before the segment ``[start_s, stop_s)`` does
    (beyond :data:`SHORT_AUDIO_TOLERANCE_S`): a truncated file must not become silence or a tiled fragment."""
    if stop_s - SHORT_AUDIO_TOLERANCE_S > n / rate:
        raise MediaError(path, f"audio ends at {n / rate:.3f} s ({n} samples at {rate} Hz), before the segment "
                               f"{start_s:.3f}-{stop_s:.3f} s it must cover (truncated file?)")


def read_wav_segment(path: str | Path, start_s: float, stop_s: float) -> tuple[np.ndarray, int]:
    """``cut_segment(*read_wav(path), start_s, stop_s)``, a MediaError if the file ends before the segment."""
    samples, rate = read_wav(path)
    check_audio_span(path, len(samples), rate, start_s, stop_s)
    return cut_segment(samples, rate, start_s, stop_s), rate


def cut_segment(samples: np.ndarray, rate: int, start_s: float, stop_s: float) -> np.ndarray:
    """Samples of ``[start_s, stop_s)`` seconds, as the reference: times are scaled by
    ``len(samples) / duration`` (= the rate) and rounded to the nearest sample."""
    duration = len(samples) / rate
    a = int(np.round(start_s / duration * len(samples)))
    b = int(np.round(stop_s / duration * len(samples)))
    return samples[a:b]


def fit_length(segment: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples; a shorter segment is tiled (x10 until long enough) and cut;
    an empty one becomes silence (as the HAC reference); the result is clipped to [-1, 1]."""
    out = segment[:length]
    if len(out) == 0:
        out = np.zeros(length)
    while len(out) < length:
        out = np.tile(out, 10)[:length]
    return np.clip(out, -1.0, 1.0)


def tukey_window(n: int, alpha: float = TUKEY_ALPHA) -> np.ndarray:
    """The periodic Tukey window of length ``n`` (the symmetric one of length ``n + 1``, last point dropped)."""
    m = n + 1
    k = np.arange(m, dtype=np.float64)
    w = np.ones(m)
    edge = int(np.floor(alpha * (m - 1) / 2))
    rise = k[: edge + 1]
    w[: edge + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2 * rise / (alpha * (m - 1)))))
    fall = k[m - edge - 1:]
    w[m - edge - 1:] = 0.5 * (1 + np.cos(np.pi * (-2 / alpha + 1 + 2 * fall / (alpha * (m - 1)))))
    return w[:n]


def power_spectrogram(x: np.ndarray, rate: int, nperseg: int = NPERSEG, noverlap: int = NOVERLAP) -> np.ndarray:
    """One-sided PSD (freq, time) of ``x``: mean-removed Tukey-windowed segments, density scaling.

    Matches ``scipy.signal.spectrogram(x, rate, nperseg=nperseg, noverlap=noverlap)``; 160 000
    samples give (257, 1004).
    """
    step = nperseg - noverlap
    count = (len(x) - nperseg) // step + 1
    if count < 1:
        raise ValueError(f"power_spectrogram: {len(x)} samples, need at least nperseg={nperseg}")
    win = tukey_window(nperseg)
    idx = np.arange(nperseg)[None, :] + step * np.arange(count)[:, None]
    seg = x[idx]
    seg = seg - seg.mean(axis=1, keepdims=True)
    spec = np.abs(np.fft.rfft(seg * win, axis=1)) ** 2 / (rate * (win ** 2).sum())
    spec[:, 1:-1 if nperseg % 2 == 0 else None] *= 2
    return spec.T


def standardize(spec: np.ndarray) -> np.ndarray:
    """``(s - mean) / (std + 1e-9)`` over the whole map (population std)."""
    return (spec - spec.mean()) / (spec.std() + STD_EPS)


def reference_spectrogram(x: np.ndarray, rate: int) -> np.ndarray:
    """The reference's audio input: standardised ``log(PSD + 1e-7)``, float64 (257, frames)."""
    return standardize(np.log(power_spectrogram(x, rate) + LOG_FLOOR))


def spectrogram_frames(samples: int, nperseg: int = NPERSEG, noverlap: int = NOVERLAP) -> int:
    return (samples - nperseg) // (nperseg - noverlap) + 1


def augment_spectrogram(spec: np.ndarray, rng: np.random.Generator, noise: float = 0.05,
                        band: int = 9, band_range: int | None = None) -> np.ndarray:
    """Train-time augmentation of the reference: add U(-noise, noise), then zero ``band`` consecutive
    frequency rows starting at a uniform row in ``[0, band_range)``; the reference draws from
    ``256 - 9`` for its 257 rows, the default here is ``rows - 1 - band`` (the same for 257 rows)."""
    rows = spec.shape[0]
    band_range = rows - 1 - band if band_range is None else band_range
    out = spec + rng.uniform(-noise, noise, spec.shape)
    if band_range > 0:
        start = int(rng.integers(band_range))
        out[start:start + band] = 0
    return out


def read_wav_span(path: str | Path, start_s: float, stop_s: float,
                  max_samples: int | None = None) -> tuple[np.ndarray, int]:
    """``cut_segment(*read_wav(path), start_s, stop_s)[:max_samples]``, reading only that span of the file
    (EPIC wavs are whole videos, up to an hour)."""
    soundfile = _soundfile()
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        with soundfile.SoundFile(str(path)) as f:
            n, rate = f.frames, f.samplerate
            if n == 0:
                raise MediaError(path, "holds no audio samples")
            # the part of the segment that is read must be in the file
            need = stop_s if max_samples is None else min(stop_s, start_s + max_samples / rate)
            check_audio_span(path, n, rate, start_s, need)
            duration = n / rate
            a = min(max(int(np.round(start_s / duration * n)), 0), n)
            b = min(max(int(np.round(stop_s / duration * n)), a), n)
            if max_samples is not None:
                b = min(b, a + max_samples)
            f.seek(a)
            x = f.read(b - a, dtype="float64", always_2d=True)
    except MediaError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise MediaError(path, f"cannot decode audio ({type(e).__name__}: {e})") from None
    return x.mean(axis=1), int(rate)
