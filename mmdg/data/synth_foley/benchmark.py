"""The SynthFoley benchmark: configuration, latent factors, chunked rendering and the disk cache."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ...io import atomic_torch_save
from ..base import BENCHMARKS, Benchmark, TensorDataset
from .audio import render_audio
from .config import DOMAINS, MOTIONS, SOUNDS, hop, make_config, num_samples
from .factors import generator, nuisance_map, sample_factors
from .video import render_flow, render_video, trajectory

CHUNK_ELEMENTS = 2 ** 22  # samples are rendered in chunks of about this many video elements


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
        train_per_domain, test_per_domain: split sizes (>= 1); a held-out domain is evaluated on both
            (:meth:`target_dataset`), a source domain's test split is its validation data.
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
        shape = dict(frames=frames, height=height, width=width, audio_seconds=audio_seconds,
                     sample_rate=sample_rate, n_mels=n_mels, train_per_domain=train_per_domain,
                     test_per_domain=test_per_domain)
        self.config, self.modalities = make_config(
            num_classes, dominant, imbalance, mismatch, other_mismatch, cooccur, cooccur_mapping,
            cooccur_domains, target_domain, nuisance_strength, seed, size, shape, modalities)
        self.classes = tuple(f"{m}+{s}" for m, s in zip(MOTIONS, SOUNDS))[:num_classes]
        cooccur_domains = self.config["cooccur_domains"]
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

    def target_dataset(self, domain: str) -> TensorDataset:
        """Every clip of the held-out ``domain``: its test split, then its train split (as on HAC, and as
        the papers evaluate the whole target domain); a held-out domain is never trained on.  With the
        ``cpu`` preset that is 500 clips, so one clip is worth 0.2 points of target accuracy."""
        return TensorDataset.concat([self.dataset(domain, "test"), self.dataset(domain, "train")])

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
            self._factors[domain, split] = sample_factors(self.config, domain, split,
                                                          domain in self.correlated_domains)
        return self._factors[domain, split]

    def nuisance_map(self, domain: str) -> torch.Tensor:
        """``perm_d`` as a (K,) tensor: the nuisance a class maps to in correlated domains."""
        self.check_domain(domain)
        return nuisance_map(self.config, domain)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        shapes = {"video": (3, c["frames"], c["height"], c["width"]),
                  "flow": (2, c["frames"], c["height"], c["width"]),
                  "audio": (1, c["n_mels"], num_samples(c) // hop(c) + 1)}
        return {m: shapes[m] for m in self.modalities}

    def describe(self) -> dict:
        return {**super().describe(), "config": dict(self.config), "input_shapes": self.input_shapes()}

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
        per_sample = max(3 * c["frames"] * c["height"] * c["width"], num_samples(c))
        step = max(1, CHUNK_ELEMENTS // per_sample)
        for i, start in enumerate(range(0, c[f"{split}_per_domain"], step)):
            part = {k: v[start:start + step] for k, v in f.items()}
            if modality == "audio":
                yield render_audio(c, part, domain, generator(c, "audio", domain, split, i))
                continue
            traj = trajectory(c, part, generator(c, "motion", domain, split, i))
            g = generator(c, modality, domain, split, i)
            render = render_video if modality == "video" else render_flow
            yield render(c, part, traj, domain, g)
