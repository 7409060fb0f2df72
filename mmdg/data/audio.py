"""Audio front end: waveforms to log-mel spectrograms.

A thin wrapper around torchaudio, kept in one place so the backend can be swapped.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch
import torchaudio

LOG_EPS = 1e-6


@lru_cache(maxsize=32)
def _mel_transform(sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                   device: str, dtype: torch.dtype) -> torchaudio.transforms.MelSpectrogram:
    """One cached MelSpectrogram per configuration (Hann window, centred frames, power 2)."""
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0)
    return transform.to(device=device, dtype=dtype)


def log_mel(wave: torch.Tensor, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> torch.Tensor:
    """``log(mel power + 1e-6)`` of ``wave`` (..., samples) -> (..., n_mels, frames).

    Frames are centred (reflect padding), so ``frames = samples // hop_length + 1``.
    The mel bands cover 0 Hz to the Nyquist frequency (HTK scale, unnormalised filters).
    """
    if not wave.is_floating_point():
        raise TypeError(f"wave must be a floating-point tensor, got {wave.dtype}")
    transform = _mel_transform(int(sample_rate), int(n_fft), int(hop_length), int(n_mels),
                               str(wave.device), wave.dtype)
    return torch.log(transform(wave) + LOG_EPS)


def empty_mel_bands(sample_rate: int, n_fft: int, n_mels: int) -> int:
    """How many of :func:`log_mel`'s ``n_mels`` bands cover no FFT bin (their output is constant).

    Too many bands for ``n_fft`` leave the lowest, narrowest filters between two bins.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchaudio's "empty filterbank" warning: counted instead
        fb = torchaudio.functional.melscale_fbanks(int(n_fft) // 2 + 1, 0.0, sample_rate / 2, int(n_mels),
                                                   int(sample_rate))
    return int((fb.max(0).values == 0).sum())
