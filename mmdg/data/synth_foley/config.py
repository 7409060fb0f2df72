"""SynthFoley's settings: presets, recording-condition tables, render constants and validation."""
from __future__ import annotations

import math
from typing import Sequence

from ..audio import empty_mel_bands

MOTIONS = ("right", "left", "up", "down", "expand", "rotate", "orbit", "oscillate")
SOUNDS = ("rising_chirp", "falling_chirp", "pulsed_tone", "harmonic_drone",
          "am_tone", "noise_bursts", "trill", "two_tone")
DOMAINS = ("studio", "kitchen", "street")
MODALITIES = ("video", "flow", "audio")
MAX_CLASSES = len(MOTIONS)
FORMAT_VERSION = 1  # bump when generation changes, so that disk caches are invalidated

PRESETS = {
    "tiny": dict(frames=8, height=16, width=16, audio_seconds=0.5, sample_rate=8000, n_mels=32,
                 train_per_domain=32, test_per_domain=16),
    "cpu": dict(frames=8, height=32, width=32, audio_seconds=1.0, sample_rate=8000, n_mels=40,
                train_per_domain=300, test_per_domain=200),
    "gpu": dict(frames=16, height=112, width=112, audio_seconds=2.0, sample_rate=16000, n_mels=64,
                train_per_domain=600, test_per_domain=200),
}

# Recording conditions at full strength (shift 1).  A domain's conditions at shift s are
# mean + s * (own - mean), the mean taken over the domains: shift 0 makes all domains equal.
VISUAL_CONDITIONS = {
    "studio": dict(background=(0.55, 0.55, 0.55), object=(0.92, 0.92, 0.88), texture_amp=0.05,
                   texture_freq=2.0, tiles=0.0, blur=0.0, brightness=0.0, contrast=1.0,
                   pixel_noise=0.02, flow_scale=1.0, flow_noise=0.05),
    "kitchen": dict(background=(0.70, 0.52, 0.32), object=(0.20, 0.35, 0.65), texture_amp=0.20,
                    texture_freq=5.0, tiles=1.0, blur=0.03, brightness=0.08, contrast=0.75,
                    pixel_noise=0.05, flow_scale=0.6, flow_noise=0.20),
    "street": dict(background=(0.25, 0.30, 0.42), object=(0.95, 0.80, 0.25), texture_amp=0.40,
                   texture_freq=9.0, tiles=0.3, blur=0.06, brightness=-0.08, contrast=1.35,
                   pixel_noise=0.08, flow_scale=1.6, flow_noise=0.35),
}
AUDIO_CONDITIONS = {
    # noise_colour: spectral exponent of the background noise (0 white, 1 pink, 2 brown);
    # reverb_decay in seconds; lowpass as a fraction of the Nyquist frequency.
    "studio": dict(noise_colour=0.0, noise_level=0.15, reverb_decay=0.005, reverb_wet=0.0,
                   gain_db=0.0, lowpass=1.0),
    "kitchen": dict(noise_colour=1.0, noise_level=0.30, reverb_decay=0.08, reverb_wet=0.6,
                    gain_db=-4.0, lowpass=0.7),
    "street": dict(noise_colour=2.0, noise_level=0.45, reverb_decay=0.20, reverb_wet=0.9,
                   gain_db=-9.0, lowpass=0.4),
}

WEAKEST = 0.15  # cue strength of the non-dominant modality at imbalance 1


def make_config(num_classes: int, dominant: str, imbalance: float, mismatch: float, other_mismatch: float,
                cooccur: float, cooccur_mapping: str, cooccur_domains: Sequence[str] | None,
                target_domain: str | None, nuisance_strength: float, seed: int, size: str,
                shape: dict, modalities: Sequence[str] | None) -> tuple[dict, tuple[str, ...]]:
    """The validated configuration (also the cache key) and the modalities in canonical order.

    ``shape`` holds the preset overrides (None: the preset's value).
    """
    _check_int("num_classes", num_classes, 2, MAX_CLASSES)
    _check_choice("dominant", dominant, ("audio", "video"))
    for key, value in (("imbalance", imbalance), ("mismatch", mismatch),
                       ("other_mismatch", other_mismatch), ("cooccur", cooccur)):
        _check_range(key, value, 0.0, 1.0)
    _check_choice("cooccur_mapping", cooccur_mapping, ("per_domain", "shared"))
    if target_domain is not None:
        _check_choice("target_domain", target_domain, DOMAINS)
    cooccur_domains = DOMAINS if cooccur_domains is None else tuple(cooccur_domains)
    for d in cooccur_domains:
        _check_choice("cooccur_domains entry", d, DOMAINS)
    _check_range("nuisance_strength", nuisance_strength, 0.0, math.inf)
    _check_int("seed", seed, -2 ** 63, 2 ** 63 - 1)
    _check_choice("size", size, tuple(PRESETS))
    shape = {k: PRESETS[size][k] if v is None else v for k, v in shape.items()}
    _check_shape(shape)
    modalities = _check_modalities(modalities)
    config = dict(num_classes=num_classes, dominant=dominant, imbalance=float(imbalance),
                  mismatch=float(mismatch), other_mismatch=float(other_mismatch),
                  cooccur=float(cooccur), cooccur_mapping=cooccur_mapping,
                  cooccur_domains=sorted(cooccur_domains), target_domain=target_domain,
                  nuisance_strength=float(nuisance_strength), seed=int(seed), size=size,
                  **shape, version=FORMAT_VERSION)
    if empty_mel_bands(shape["sample_rate"], n_fft(config), shape["n_mels"]):
        raise ValueError(f"SynthFoley: n_mels={shape['n_mels']} is too many for sample_rate "
                         f"{shape['sample_rate']} (n_fft {n_fft(config)}): some mel bands would be empty")
    return config, modalities


def _check_modalities(modalities: Sequence[str] | None) -> tuple[str, ...]:
    modalities = MODALITIES if modalities is None else tuple(modalities)
    if not modalities or len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities must be a non-empty list without repeats, got {list(modalities)}")
    for m in modalities:
        _check_choice("modalities entry", m, MODALITIES)
    return tuple(m for m in MODALITIES if m in modalities)


def num_samples(config: dict) -> int:
    """Audio samples per clip."""
    return int(round(config["audio_seconds"] * config["sample_rate"]))


def n_fft(config: dict) -> int:
    return 2 ** round(math.log2(0.032 * config["sample_rate"]))  # about 32 ms windows


def hop(config: dict) -> int:
    return config["sample_rate"] // 100  # 10 ms hop


def strength(config: dict, side: str) -> float:
    """Class-cue strength of ``side`` ("video" covers flow): 1 for the dominant side."""
    if side == config["dominant"]:
        return 1.0
    return 1.0 - (1.0 - WEAKEST) * config["imbalance"]


def _check_range(name: str, value, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"SynthFoley: {name} must be a number in [{lo}, {hi}], got {value!r}")


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"SynthFoley: {name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"SynthFoley: unknown {name} {value!r}; expected one of {list(choices)}")


def _check_shape(shape: dict) -> None:
    _check_int("frames", shape["frames"], 2, 10 ** 4)
    for key in ("height", "width"):
        _check_int(key, shape[key], 8, 10 ** 4)
    _check_range("audio_seconds", shape["audio_seconds"], 0.1, 60.0)
    _check_int("sample_rate", shape["sample_rate"], 8000, 192000)
    _check_int("n_mels", shape["n_mels"], 8, 256)
    for key in ("train_per_domain", "test_per_domain"):
        _check_int(key, shape[key], 1, 10 ** 7)
