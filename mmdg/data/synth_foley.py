"""SynthFoley: a procedurally generated audio-visual benchmark with tunable MMDG failure modes.

Each clip shows one object moving on a textured background ("video", plus its
analytic motion field "flow") while it makes a sound ("audio", a log-mel
spectrogram).  A class is a (motion, sound) pair.  Domains differ only in
recording conditions.  Three knobs switch on the effects studied in the book:
modality imbalance, a source/target shift concentrated on the dominant
modality, and source-specific cross-modal co-occurrences (Fusion Overfitting).
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..io import atomic_torch_save
from .audio import empty_mel_bands, log_mel
from .base import BENCHMARKS, Benchmark, TensorDataset

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
                train_per_domain=300, test_per_domain=120),
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

LINEAR_MOTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SWEEP = 1.0          # distance travelled by the linear motions, in half image widths
EXPAND = math.log(2.5)  # log growth of "expand" over the clip
SPIN = math.pi       # rotation of "rotate" over the clip, in radians
ORBIT_RADIUS = 0.35
OSCILLATE_AMPLITUDE = 0.4
TINT = 0.08          # nuisance tint amplitude (pixel units) at nuisance_strength 1
HUM = 0.25           # nuisance hum amplitude at nuisance_strength 1
HUM_BASE_HZ, HUM_STEP_HZ = 120.0, 50.0
SOUND_LEVEL = 1.0    # class-sound amplitude at full cue strength
WEAKEST = 0.15       # cue strength of the non-dominant modality at imbalance 1
CHUNK_ELEMENTS = 2 ** 22  # samples are rendered in chunks of about this many video elements


@dataclass
class _Trajectory:
    """Object pose per frame in normalised image coordinates ([-1, 1], y downwards)."""

    center: torch.Tensor    # (N, T, 2)
    velocity: torch.Tensor  # (N, T, 2), d center / d clip time
    scale: torch.Tensor     # (N, T), object radius
    growth: torch.Tensor    # (N, T), d log(scale) / d clip time
    angle: torch.Tensor     # (N, T)
    spin: torch.Tensor      # (N, T), d angle / d clip time


@BENCHMARKS.register("synth_foley")
class SynthFoley(Benchmark):
    """Generated audio-visual clips: a moving, sounding object under domain-specific recording conditions.

    Modalities (per sample): ``video`` (3, T, H, W), an RGB clip normalised as ``(x - 0.5) / 0.25``;
    ``flow`` (2, T, H, W), the analytic velocity (x, y) of object pixels in half image widths per clip,
    times a domain frame-rate factor, plus estimation noise, and exactly zero where nothing moves;
    ``audio`` (1, n_mels, frames), the log-mel spectrogram of the clip's sound, z-normalised per sample.

    Class ``c`` pairs the motion ``MOTIONS[c]`` with the sound ``SOUNDS[c]``.  Per sample the object's
    size, shape, start, speed, orientation and colour shade, and the sound's pitch, onset, length
    and rhythm vary at random.  Domains ``studio``, ``kitchen`` and ``street`` differ in recording
    conditions: palette, background texture, blur, brightness/contrast, frame rate and flow noise
    (visual); noise colour and level, reverb, gain and low-pass band limit (audio).

    Args:
        num_classes: number of classes, 2..8 (default 6).
        dominant: ``"audio"`` (default) or ``"video"``: the modality favoured by ``imbalance`` and
            shifted by ``mismatch``.  ``flow`` is rendered from the video's object, so it is on the
            video side of both knobs.
        imbalance: in [0, 1] (default 0.5).  Weakens the class cue of the non-dominant side: the cue
            strength falls linearly from 1 to 0.15 (video/flow: smaller, fainter object with a jittery
            path; audio: quieter sound relative to the noise, less regular timing).  0 gives both
            sides comparable difficulty.
        mismatch: in [0, 1] (default 0.5).  How far the dominant side's recording conditions differ
            between domains (0: identical in all domains, 1: the full ``*_CONDITIONS`` tables).
        other_mismatch: in [0, 1] (default 0.25).  The same for the non-dominant side (kept mild).
        cooccur: in [0, 1] (default 0).  A nuisance ``n`` in 0..K-1 is shown in both modalities (a
            background tint in video, a hum tone in audio).  In each correlated domain ``d``,
            ``n = perm_d(label)`` with probability ``cooccur`` and is uniform otherwise, so
            ``P(n = perm_d(label)) = cooccur + (1 - cooccur) / K``.  Elsewhere ``n`` is independent of
            the label.  Applies to both splits.
        cooccur_mapping: ``"per_domain"`` (default: each domain has its own permutation ``perm_d``,
            and no two domains map a class to the same nuisance when K >= 3) or ``"shared"``.
        cooccur_domains: the domains that may carry the correlation (default: all).
        target_domain: a domain to hold out: it never carries the correlation (both splits), whatever
            ``cooccur_domains`` says.  Set it to the leave-one-domain-out target, so that shortcuts
            learned on the sources do not transfer; use one instance per target.
        nuisance_strength: >= 0 (default 1): amplitude of the tint and the hum.
        seed: the same seed and configuration give identical tensors (default 0).
        size: preset ``"tiny"`` (unit tests), ``"cpu"`` (default, book chapters on a 2-core CPU) or
            ``"gpu"``; see ``PRESETS``.  The next eight arguments override single preset values.
        frames, height, width: video clip size (frames >= 2, height and width >= 8).
        audio_seconds, sample_rate, n_mels: audio length (>= 0.1 s), rate (>= 8000 Hz) and mel bands
            (8 or more, and few enough that every band covers an FFT bin: at most 86 at 8000 Hz).
        train_per_domain, test_per_domain: split sizes (>= 1).
        modalities: the modalities to generate (default all three).
        cache_dir: optional folder for an on-disk cache (one ``.pt`` file per domain, split and
            modality, named by a hash of the configuration).  Nothing is ever downloaded.
    """

    name = "synth_foley"
    domains = DOMAINS

    def __init__(self, num_classes: int = 6, dominant: str = "audio", imbalance: float = 0.5,
                 mismatch: float = 0.5, other_mismatch: float = 0.25, cooccur: float = 0.0,
                 cooccur_mapping: str = "per_domain", cooccur_domains: Sequence[str] | None = None,
                 target_domain: str | None = None, nuisance_strength: float = 1.0, seed: int = 0,
                 size: str = "cpu", frames: int | None = None, height: int | None = None,
                 width: int | None = None, audio_seconds: float | None = None,
                 sample_rate: int | None = None, n_mels: int | None = None,
                 train_per_domain: int | None = None, test_per_domain: int | None = None,
                 modalities: Sequence[str] | None = None, cache_dir: str | Path | None = None):
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
        overrides = dict(frames=frames, height=height, width=width, audio_seconds=audio_seconds,
                         sample_rate=sample_rate, n_mels=n_mels, train_per_domain=train_per_domain,
                         test_per_domain=test_per_domain)
        shape = {k: PRESETS[size][k] if v is None else v for k, v in overrides.items()}
        _check_shape(shape)
        modalities = MODALITIES if modalities is None else tuple(modalities)
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be a non-empty list without repeats, got {list(modalities)}")
        for m in modalities:
            _check_choice("modalities entry", m, MODALITIES)

        self.modalities = tuple(m for m in MODALITIES if m in modalities)
        self.classes = tuple(f"{m}+{s}" for m, s in zip(MOTIONS, SOUNDS))[:num_classes]
        self.config = dict(num_classes=num_classes, dominant=dominant, imbalance=float(imbalance),
                           mismatch=float(mismatch), other_mismatch=float(other_mismatch),
                           cooccur=float(cooccur), cooccur_mapping=cooccur_mapping,
                           cooccur_domains=sorted(cooccur_domains), target_domain=target_domain,
                           nuisance_strength=float(nuisance_strength), seed=int(seed), size=size,
                           **shape, version=FORMAT_VERSION)
        if empty_mel_bands(shape["sample_rate"], self._n_fft(), shape["n_mels"]):
            raise ValueError(f"SynthFoley: n_mels={shape['n_mels']} is too many for sample_rate "
                             f"{shape['sample_rate']} (n_fft {self._n_fft()}): some mel bands would be empty")
        self.correlated_domains = tuple(d for d in DOMAINS if d in cooccur_domains and d != target_domain)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._factors: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self._inputs: dict[tuple[str, str], dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ public API
    def dataset(self, domain: str, split: str) -> TensorDataset:
        self.check_domain(domain)
        self.check_split(split)
        label = self.factors(domain, split)["label"]
        domain_id = torch.full_like(label, self.domains.index(domain))
        return TensorDataset(self._generated(domain, split), label, domain_id)

    def factors(self, domain: str, split: str) -> dict[str, torch.Tensor]:
        """Latent factors per sample (cheap: nothing is rendered).

        ``label``, ``nuisance``, ``nuisance_from_label`` (bool: n was set to perm_d(label)),
        object ``size``/``aspect``/``roundness``/``x0``/``y0``/``angle``/``shade``, motion ``speed``,
        ``phase`` and ``turn`` (+-1), sound ``pitch`` (Hz), ``onset``/``duration`` (fractions of
        the clip) and ``rate``, and ``brightness`` (a per-clip exposure offset).
        """
        self.check_domain(domain)
        self.check_split(split)
        if (domain, split) not in self._factors:
            self._factors[domain, split] = self._sample_factors(domain, split)
        return self._factors[domain, split]

    def nuisance_map(self, domain: str) -> torch.Tensor:
        """``perm_d`` as a (K,) tensor: the nuisance a class maps to in correlated domains."""
        self.check_domain(domain)
        k = self.num_classes
        base = torch.randperm(k, generator=self._generator("mapping"))
        if self.config["cooccur_mapping"] == "shared":
            return base
        # Latin-square rows: domains disagree on every class (when K >= number of domains).
        return base[(torch.arange(k) + self.domains.index(domain)) % k]

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        shapes = {"video": (3, c["frames"], c["height"], c["width"]),
                  "flow": (2, c["frames"], c["height"], c["width"]),
                  "audio": (1, c["n_mels"], self._num_samples() // self._hop() + 1)}
        return {m: shapes[m] for m in self.modalities}

    def describe(self) -> dict:
        return {**super().describe(), "config": dict(self.config), "input_shapes": self.input_shapes()}

    # ------------------------------------------------------------------ sampling
    def _generator(self, *stream: object) -> torch.Generator:
        key = json.dumps([self.config["seed"], *stream]).encode()
        return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)

    def _size(self, split: str) -> int:
        return self.config[f"{split}_per_domain"]

    def _sample_factors(self, domain: str, split: str) -> dict[str, torch.Tensor]:
        n, k = self._size(split), self.num_classes
        g = self._generator("factors", domain, split)
        uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)
        label = (torch.arange(n) % k)[torch.randperm(n, generator=g)]  # balanced classes
        p = self.config["cooccur"] if domain in self.correlated_domains else 0.0
        from_label = torch.rand(n, generator=g) < p
        nuisance = torch.where(from_label, self.nuisance_map(domain)[label], torch.randint(k, (n,), generator=g))
        return dict(
            label=label, nuisance=nuisance, nuisance_from_label=from_label,
            size=uniform(0.3, 0.45), aspect=uniform(0.4, 0.65), roundness=uniform(2.0, 5.0),
            x0=uniform(-0.25, 0.25), y0=uniform(-0.25, 0.25), angle=uniform(0.0, math.pi),
            shade=uniform(-0.08, 0.08), speed=uniform(0.75, 1.0), phase=uniform(0.0, 2 * math.pi),
            turn=torch.randint(2, (n,), generator=g) * 2.0 - 1.0,
            pitch=torch.exp(uniform(math.log(500.0), math.log(1000.0))), onset=uniform(0.0, 0.25),
            duration=uniform(0.55, 0.75), rate=uniform(0.85, 1.15), brightness=uniform(-0.05, 0.05),
        )

    def _strength(self, side: str) -> float:
        """Class-cue strength of ``side`` ("video" covers flow): 1 for the dominant side."""
        if side == self.config["dominant"]:
            return 1.0
        return 1.0 - (1.0 - WEAKEST) * self.config["imbalance"]

    def _conditions(self, side: str, domain: str) -> dict[str, torch.Tensor]:
        shift = self.config["mismatch" if side == self.config["dominant"] else "other_mismatch"]
        table = VISUAL_CONDITIONS if side == "video" else AUDIO_CONDITIONS
        out = {}
        for key in table[domain]:
            values = torch.tensor([table[d][key] for d in DOMAINS], dtype=torch.float32)
            mean = values.mean(0)
            out[key] = mean + shift * (values[DOMAINS.index(domain)] - mean)
        return out

    # ------------------------------------------------------------------ generation and caching
    def _generated(self, domain: str, split: str) -> dict[str, torch.Tensor]:
        if (domain, split) not in self._inputs:
            self._inputs[domain, split] = {m: self._load_or_render(domain, split, m) for m in self.modalities}
        return self._inputs[domain, split]

    def _cache_path(self, domain: str, split: str, modality: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps([self.config, domain, split, modality], sort_keys=True).encode()
        return self.cache_dir / f"synth_foley-{hashlib.sha256(key).hexdigest()[:20]}.pt"

    def _load_or_render(self, domain: str, split: str, modality: str) -> torch.Tensor:
        path = self._cache_path(domain, split, modality)
        if path is not None and path.exists():
            try:
                return torch.load(path, weights_only=True)
            except Exception as e:  # truncated or corrupt: render it again
                warnings.warn(f"synth_foley cache file {path} is unreadable ({type(e).__name__}); regenerating it",
                              stacklevel=2)
        x = torch.cat(list(self._render_chunks(domain, split, modality)))
        if path is not None:
            atomic_torch_save(x, path)  # a private temporary file: concurrent writers do not clash
        return x

    def _render_chunks(self, domain: str, split: str, modality: str) -> Iterator[torch.Tensor]:
        c = self.config
        f = self.factors(domain, split)
        per_sample = max(3 * c["frames"] * c["height"] * c["width"], self._num_samples())
        step = max(1, CHUNK_ELEMENTS // per_sample)
        for i, start in enumerate(range(0, self._size(split), step)):
            part = {k: v[start:start + step] for k, v in f.items()}
            if modality == "audio":
                yield self._render_audio(part, domain, self._generator("audio", domain, split, i))
                continue
            traj = self._trajectory(part, self._generator("motion", domain, split, i))
            g = self._generator(modality, domain, split, i)
            render = self._render_video if modality == "video" else self._render_flow
            yield render(part, traj, domain, g)

    # ------------------------------------------------------------------ vision
    def _trajectory(self, f: dict[str, torch.Tensor], g: torch.Generator) -> _Trajectory:
        n, frames = f["label"].shape[0], self.config["frames"]
        t = torch.linspace(0.0, 1.0, frames)
        strength = self._strength("video")
        center = torch.stack([f["x0"], f["y0"]], -1)[:, None].expand(n, frames, 2).clone()
        velocity = torch.zeros(n, frames, 2)
        log_scale, growth = torch.zeros(n, frames), torch.zeros(n, frames)
        angle, spin = f["angle"][:, None].expand(n, frames).clone(), torch.zeros(n, frames)
        for c, motion in enumerate(MOTIONS[:self.num_classes]):
            i = f["label"] == c
            v, ph, turn = f["speed"][i, None], f["phase"][i, None], f["turn"][i, None]
            if motion in LINEAR_MOTIONS:
                direction = torch.tensor(LINEAR_MOTIONS[motion])
                center[i] += (SWEEP * v * (t - 0.5))[..., None] * direction
                velocity[i] = (SWEEP * v).expand(-1, frames)[..., None] * direction
            elif motion == "expand":
                log_scale[i], growth[i] = EXPAND * v * (t - 0.5), (EXPAND * v).expand(-1, frames)
            elif motion == "rotate":
                angle[i] += turn * SPIN * v * t
                spin[i] = (turn * SPIN * v).expand(-1, frames)
            elif motion == "orbit":
                a, r = ph + 2 * math.pi * turn * t, ORBIT_RADIUS * v
                center[i] += r[..., None] * torch.stack([a.cos(), a.sin()], -1)
                velocity[i] = (2 * math.pi * turn * r)[..., None] * torch.stack([-a.sin(), a.cos()], -1)
            else:  # oscillate: one horizontal back-and-forth
                a, amp = ph + 2 * math.pi * t, OSCILLATE_AMPLITUDE * v
                center[i, :, 0] += amp * a.sin()
                velocity[i, :, 0] = 2 * math.pi * amp * a.cos()
        # A random-walk wobble, stronger when the visual cue is weakened.
        steps = torch.randn(n, frames, 2, generator=g) * (0.02 + 0.10 * (1.0 - strength))
        wobble = steps.cumsum(1)
        wobble = wobble - wobble.mean(1, keepdim=True)
        center += wobble
        velocity += torch.gradient(wobble, spacing=1.0 / (frames - 1), dim=1)[0]
        scale = (f["size"] * (0.55 + 0.45 * strength))[:, None] * log_scale.exp()
        return _Trajectory(center, velocity, scale, growth, angle, spin)

    def _object(self, f: dict[str, torch.Tensor], traj: _Trajectory) -> tuple[torch.Tensor, ...]:
        """Soft object mask (N, T, H, W) and pixel offsets from the object centre (dx, dy)."""
        h, w = self.config["height"], self.config["width"]
        xs = (torch.arange(w) + 0.5) / w * 2 - 1
        ys = (torch.arange(h) + 0.5) / h * 2 - 1
        dx = xs - traj.center[..., 0, None, None]          # (N, T, 1, W)
        dy = ys[:, None] - traj.center[..., 1, None, None]  # (N, T, H, 1)
        cos, sin = traj.angle.cos()[..., None, None], traj.angle.sin()[..., None, None]
        scale = traj.scale[..., None, None]
        u = (cos * dx + sin * dy) / scale
        v = (cos * dy - sin * dx) / (scale * f["aspect"][:, None, None, None])
        p = f["roundness"][:, None, None, None]
        radius = (u.abs() ** p + v.abs() ** p) ** (1 / p)
        mask = ((1 - radius) * scale * w / 2 + 0.5).clamp(0, 1)  # about one pixel of soft edge
        return mask, dx.expand_as(mask), dy.expand_as(mask)

    def _render_video(self, f, traj: _Trajectory, domain: str, g: torch.Generator) -> torch.Tensor:
        c = self._conditions("video", domain)
        mask = self._object(f, traj)[0][:, None]  # (N, 1, T, H, W)
        n, h, w = mask.shape[0], self.config["height"], self.config["width"]
        exposure = f["brightness"][:, None, None, None]
        background = self._background(n, c, g) + self._tint(f["nuisance"]) + exposure
        background = background[:, :, None, :, :]  # static scene: (N, 3, 1, H, W)
        colour = (c["object"] + f["shade"][:, None])[:, :, None, None, None]
        opacity = 0.2 + 0.8 * self._strength("video")
        x = background + opacity * mask * (colour - background)
        x = _blur(x, float(c["blur"]) * w)
        x = (x - 0.5) * c["contrast"] + 0.5 + c["brightness"]
        x = x + c["pixel_noise"] * torch.randn(x.shape, generator=g)
        return ((x - 0.5) / 0.25).contiguous()

    def _background(self, n: int, c: dict[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
        """Palette colour times a (tiled) grating of random orientation and phase: (N, 3, H, W)."""
        h, w = self.config["height"], self.config["width"]
        xs = ((torch.arange(w) + 0.5) / w * 2 - 1)[None, None, :]
        ys = ((torch.arange(h) + 0.5) / h * 2 - 1)[None, :, None]
        theta, phase = torch.rand(2, n, 1, 1, generator=g) * 2 * math.pi
        k = math.pi * c["texture_freq"]  # texture_freq cycles across the image
        along, across = xs * theta.cos() + ys * theta.sin(), ys * theta.cos() - xs * theta.sin()
        texture = torch.sin(k * along + phase) + c["tiles"] * torch.sin(k * across)
        return c["background"][None, :, None, None] * (1 + c["texture_amp"] * texture[:, None])

    def _tint(self, nuisance: torch.Tensor) -> torch.Tensor:
        """Nuisance colour: K hues evenly spaced on the chroma circle (grey axis untouched): (N, 3, 1, 1)."""
        e1 = torch.tensor([2.0, -1.0, -1.0]) / math.sqrt(6)
        e2 = torch.tensor([0.0, 1.0, -1.0]) / math.sqrt(2)
        hue = 2 * math.pi * nuisance.float()[:, None] / self.num_classes
        amplitude = TINT * self.config["nuisance_strength"]
        return (amplitude * (hue.cos() * e1 + hue.sin() * e2))[..., None, None]

    def _render_flow(self, f, traj: _Trajectory, domain: str, g: torch.Generator) -> torch.Tensor:
        c = self._conditions("video", domain)
        mask, dx, dy = self._object(f, traj)
        grow, spin = traj.growth[..., None, None], traj.spin[..., None, None]
        vx = traj.velocity[..., 0, None, None] + grow * dx - spin * dy
        vy = traj.velocity[..., 1, None, None] + grow * dy + spin * dx
        flow = torch.stack([vx, vy], 1) * c["flow_scale"]
        flow = flow + c["flow_noise"] * torch.randn(flow.shape, generator=g)
        flow = _blur(mask[:, None] * flow, float(c["blur"]) * self.config["width"])
        return flow.contiguous()

    # ------------------------------------------------------------------ audio
    def _num_samples(self) -> int:
        return int(round(self.config["audio_seconds"] * self.config["sample_rate"]))

    def _n_fft(self) -> int:
        return 2 ** round(math.log2(0.032 * self.config["sample_rate"]))  # about 32 ms windows

    def _hop(self) -> int:
        return self.config["sample_rate"] // 100  # 10 ms hop

    def _render_audio(self, f, domain: str, g: torch.Generator) -> torch.Tensor:
        c, sr = self._conditions("audio", domain), self.config["sample_rate"]
        n, length = f["label"].shape[0], self._num_samples()
        t = torch.arange(length) / sr
        x = self._sound(f, t, g) + self._hum(f, t)
        x = _room(x, c, sr, g) * 10 ** (c["gain_db"] / 20)
        x = x + c["noise_level"] * _coloured_noise(n, length, float(c["noise_colour"]), sr, g)
        spec = log_mel(x, sr, self._n_fft(), self._hop(), self.config["n_mels"])
        spec = (spec - spec.mean((1, 2), keepdim=True)) / spec.std((1, 2), keepdim=True).clamp_min(1e-6)
        return spec[:, None].contiguous()

    def _sound(self, f, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The class sounds (N, L): one event, faded in and out, louder when the audio cue is strong."""
        n, sr = f["label"].shape[0], self.config["sample_rate"]
        strength = self._strength("audio")
        clip = t[-1] + 1 / sr
        # A weak cue also gets a sloppier timing: the event's onset wanders further.
        onset = (f["onset"] + (1 - strength) * 0.1 * torch.randn(n, generator=g))[:, None] * clip
        since = t - onset                                     # (N, L) seconds since onset
        length = f["duration"][:, None] * clip
        envelope = ((torch.minimum(since, length - since) / 0.01).clamp(0, 1))
        tau = (since / length).clamp(0, 1)                    # event progress in [0, 1]
        f0, rate = f["pitch"][:, None], f["rate"][:, None]
        noise = torch.randn(n, t.shape[0], generator=g)
        wave = torch.zeros(n, t.shape[0])
        for c, sound in enumerate(SOUNDS[:self.num_classes]):
            i = f["label"] == c
            wave[i] = _class_sound(sound, since[i], tau[i], f0[i], rate[i], noise[i], sr)
        return SOUND_LEVEL * 10 ** (-1.2 * (1 - strength)) * envelope * wave

    def _hum(self, f, t: torch.Tensor) -> torch.Tensor:
        """Nuisance hum: a steady tone at 120 + 50 n Hz."""
        freq = HUM_BASE_HZ + HUM_STEP_HZ * f["nuisance"].float()[:, None]
        return HUM * self.config["nuisance_strength"] * torch.sin(2 * math.pi * freq * t + f["phase"][:, None])


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


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (replicate borders) over the last two dims; sigma in pixels."""
    if sigma < 0.1:
        return x
    rows, cols = _blur_matrix(x.shape[-2], sigma), _blur_matrix(x.shape[-1], sigma)
    return rows @ x @ cols.T


def _blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """(n, n) matrix of a 1-D Gaussian blur whose taps beyond the border hit the edge pixel."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    source = (torch.arange(n)[:, None] + offsets).clamp(0, n - 1)  # (n, taps)
    return torch.zeros(n, n).scatter_add_(1, source, (taps / taps.sum()).expand(n, -1).contiguous())


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
