import math
import warnings

import pytest
import torch
import torchaudio.functional as AF

from mmdg.data.audio import empty_mel_bands, log_mel

CONFIGS = [(8000, 256, 80, 32), (8000, 256, 80, 40), (16000, 512, 160, 64)]


def reference_log_mel(wave, sample_rate, n_fft, hop_length, n_mels):
    """Independent float64 computation: |STFT|^2 (Hann, centred, reflect) times a mel filterbank."""
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(wave.double(), n_fft, hop_length, window=window, center=True,
                      pad_mode="reflect", return_complex=True).abs() ** 2
    fb = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
    mel = torch.einsum("...ft,fm->...mt", spec, fb.double())
    return torch.log(mel + 1e-6)


@pytest.mark.parametrize("sample_rate,n_fft,hop_length,n_mels", CONFIGS)
def test_matches_reference_without_warnings(sample_rate, n_fft, hop_length, n_mels):
    wave = torch.randn(3, sample_rate // 2, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torchaudio's "empty filterbank" warning
        out = log_mel(wave, sample_rate, n_fft, hop_length, n_mels)
    ref = reference_log_mel(wave, sample_rate, n_fft, hop_length, n_mels)
    assert out.shape == (3, n_mels, wave.shape[-1] // hop_length + 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-3, rtol=1e-4)


def test_batch_dims_are_kept():
    wave = torch.randn(2, 3, 4000)
    assert log_mel(wave, 8000, 256, 80, 32).shape == (2, 3, 32, 51)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0])
def test_pure_tone_peaks_in_its_mel_band(freq):
    sample_rate, n_mels = 8000, 40
    t = torch.arange(sample_rate) / sample_rate
    spec = log_mel(torch.sin(2 * math.pi * freq * t), sample_rate, 256, 80, n_mels)
    # Band k peaks at the k-th interior point of n_mels + 2 equally spaced mel points.
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)
    centers = torch.linspace(0.0, mel(sample_rate / 2), n_mels + 2)[1:-1]
    expected = int((centers - mel(freq)).abs().argmin())
    assert abs(int(spec.mean(-1).argmax()) - expected) <= 1


def test_rejects_integer_waves():
    with pytest.raises(TypeError, match="floating-point"):
        log_mel(torch.zeros(100, dtype=torch.int16), 8000, 256, 80, 32)


@pytest.mark.parametrize("sample_rate,n_fft,n_mels", [(8000, 256, 40), (8000, 256, 86), (8000, 256, 87),
                                                      (8000, 256, 128), (16000, 512, 64), (16000, 512, 200)])
def test_empty_mel_bands_counts_the_constant_bands(sample_rate, n_fft, n_mels):
    wave = torch.randn(2, sample_rate // 4, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = log_mel(wave, sample_rate, n_fft, sample_rate // 100, n_mels)
    constant = int((spec == math.log(1e-6)).all(-1).all(0).sum())  # bands that never see any power
    assert empty_mel_bands(sample_rate, n_fft, n_mels) == constant
    assert (constant == 0) == (n_mels in (40, 86, 64))
