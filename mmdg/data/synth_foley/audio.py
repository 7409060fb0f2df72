"""SynthFoley's audio side: the class sounds, the nuisance hum, the room and the log-mel front end."""
from __future__ import annotations

import math

import torch

from ..audio import log_mel
from .config import SOUNDS, hop, n_fft, num_samples, strength
from .factors import conditions

HUM = 0.25           # nuisance hum amplitude at nuisance_strength 1
HUM_BASE_HZ, HUM_STEP_HZ = 120.0, 50.0
SOUND_LEVEL = 1.0    # class-sound amplitude at full cue strength


def render_audio(config: dict, f, domain: str, g: torch.Generator) -> torch.Tensor:
    """Log-mel spectrograms (N, 1, n_mels, frames), z-normalised per sample."""
    c, sr = conditions(config, "audio", domain), config["sample_rate"]
    n, length = f["label"].shape[0], num_samples(config)
    t = torch.arange(length) / sr
    x = _sound(config, f, t, g) + _hum(config, f, t)
    x = _room(x, c, sr, g) * 10 ** (c["gain_db"] / 20)
    x = x + c["noise_level"] * _coloured_noise(n, length, float(c["noise_colour"]), sr, g)
    spec = log_mel(x, sr, n_fft(config), hop(config), config["n_mels"])
    spec = (spec - spec.mean((1, 2), keepdim=True)) / spec.std((1, 2), keepdim=True).clamp_min(1e-6)
    return spec[:, None].contiguous()


def _sound(config: dict, f, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The class sounds (N, L): one event, faded in and out, louder when the audio cue is strong."""
    n, sr = f["label"].shape[0], config["sample_rate"]
    cue = strength(config, "audio")
    clip = t[-1] + 1 / sr
    # A weak cue also gets a sloppier timing: the event's onset wanders further.
    onset = (f["onset"] + (1 - cue) * 0.1 * torch.randn(n, generator=g))[:, None] * clip
    since = t - onset                                     # (N, L) seconds since onset
    length = f["duration"][:, None] * clip
    envelope = ((torch.minimum(since, length - since) / 0.01).clamp(0, 1))
    tau = (since / length).clamp(0, 1)                    # event progress in [0, 1]
    f0, rate = f["pitch"][:, None], f["rate"][:, None]
    noise = torch.randn(n, t.shape[0], generator=g)
    wave = torch.zeros(n, t.shape[0])
    for c, sound in enumerate(SOUNDS[:config["num_classes"]]):
        i = f["label"] == c
        wave[i] = _class_sound(sound, since[i], tau[i], f0[i], rate[i], noise[i], sr)
    return SOUND_LEVEL * 10 ** (-1.2 * (1 - cue)) * envelope * wave


def _hum(config: dict, f, t: torch.Tensor) -> torch.Tensor:
    """Nuisance hum: a steady tone at 120 + 50 n Hz."""
    freq = HUM_BASE_HZ + HUM_STEP_HZ * f["nuisance"].float()[:, None]
    return HUM * config["nuisance_strength"] * torch.sin(2 * math.pi * freq * t + f["phase"][:, None])


def _class_sound(sound: str, since, tau, f0, rate, noise, sr: int) -> torch.Tensor:
    """Waveform of one sound pattern before its envelope; all inputs broadcast to (n, L)."""
    if sound == "rising_chirp":
        return _tone(f0 * 2 ** (1.5 * tau), sr)
    if sound == "falling_chirp":
        return _tone(f0 * 2 ** (1.5 * (1 - tau)), sr)
    if sound == "pulsed_tone":
        return _tone(f0.expand_as(since), sr) * ((since * 10 * rate) % 1 < 0.5)
    if sound == "harmonic_drone":
        phase = 2 * math.pi * torch.cumsum(f0.expand_as(since), -1) / sr
        return 0.6 * phase.sin() + 0.4 * (2 * phase).sin() + 0.3 * (3 * phase).sin()
    if sound == "am_tone":
        return _tone(f0.expand_as(since), sr) * 0.5 * (1 - torch.cos(2 * math.pi * 4 * rate * since))
    if sound == "noise_bursts":
        return noise * ((since * 5 * rate) % 1 < 0.25)
    if sound == "trill":
        return _tone(f0 * (1 + 0.12 * torch.sin(2 * math.pi * 9 * rate * since)), sr)
    # two_tone: alternate between f0 and 1.5 f0 four times a second
    return _tone(f0 * (1 + 0.5 * ((since * 4 * rate) % 1 >= 0.5)), sr)


def _tone(freq: torch.Tensor, sr: int) -> torch.Tensor:
    """A sine whose instantaneous frequency (Hz) is ``freq`` (..., L)."""
    return torch.sin(2 * math.pi * torch.cumsum(freq, -1) / sr)


def _room(x: torch.Tensor, c: dict[str, torch.Tensor], sr: int, g: torch.Generator) -> torch.Tensor:
    """Reverb (a direct path plus an exponentially decaying noise tail) and a low-pass band limit."""
    n, length = x.shape
    taps = min(length, int(0.3 * sr))
    t = torch.arange(taps) / sr
    # The tail's energy relative to the direct path is about reverb_wet ** 2.
    tail = torch.exp(-t / c["reverb_decay"]) * torch.sqrt(2 / (c["reverb_decay"] * sr))
    ir = c["reverb_wet"] * tail * torch.randn(n, taps, generator=g)
    ir[:, 0] = 1.0
    size = length + taps
    freqs = torch.fft.rfftfreq(size, 1 / sr)
    lowpass = 1 / torch.sqrt(1 + (freqs / (c["lowpass"] * sr / 2)) ** 8)
    y = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(ir, size) * lowpass, size)
    return y[:, :length]


def _coloured_noise(n: int, length: int, exponent: float, sr: int, g: torch.Generator) -> torch.Tensor:
    """Unit-RMS noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = torch.fft.rfft(torch.randn(n, length, generator=g))
    freqs = torch.fft.rfftfreq(length, 1 / sr).clamp_min(20.0)
    noise = torch.fft.irfft(spectrum * freqs ** (-exponent / 2), length)
    return noise / noise.pow(2).mean(-1, keepdim=True).sqrt()
