"""SynthFoley's random streams and latent factors: labels, nuisances, object and sound parameters."""
from __future__ import annotations

import hashlib
import json
import math

import torch

from .config import AUDIO_CONDITIONS, DOMAINS, VISUAL_CONDITIONS


def generator(config: dict, *stream: object) -> torch.Generator:
    """A generator seeded by the configuration's seed and the stream's name."""
    key = json.dumps([config["seed"], *stream]).encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)


def nuisance_map(config: dict, domain: str) -> torch.Tensor:
    """``perm_d`` as a (K,) tensor: the nuisance a class maps to in correlated domains."""
    k = config["num_classes"]
    base = torch.randperm(k, generator=generator(config, "mapping"))
    if config["cooccur_mapping"] == "shared":
        return base
    # Latin-square rows: domains disagree on every class (when K >= number of domains).
    return base[(torch.arange(k) + DOMAINS.index(domain)) % k]


def sample_factors(config: dict, domain: str, split: str, correlated: bool) -> dict[str, torch.Tensor]:
    """Per-sample factors of one domain and split; ``correlated``: the domain carries the co-occurrence."""
    n, k = config[f"{split}_per_domain"], config["num_classes"]
    g = generator(config, "factors", domain, split)
    uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)
    label = (torch.arange(n) % k)[torch.randperm(n, generator=g)]  # balanced classes
    p = config["cooccur"] if correlated else 0.0
    from_label = torch.rand(n, generator=g) < p
    nuisance = torch.where(from_label, nuisance_map(config, domain)[label], torch.randint(k, (n,), generator=g))
    return dict(
        label=label, nuisance=nuisance, nuisance_from_label=from_label,
        size=uniform(0.3, 0.45), aspect=uniform(0.4, 0.65), roundness=uniform(2.0, 5.0),
        x0=uniform(-0.25, 0.25), y0=uniform(-0.25, 0.25), angle=uniform(0.0, math.pi),
        shade=uniform(-0.08, 0.08), speed=uniform(0.75, 1.0), phase=uniform(0.0, 2 * math.pi),
        turn=torch.randint(2, (n,), generator=g) * 2.0 - 1.0,
        pitch=torch.exp(uniform(math.log(500.0), math.log(1000.0))), onset=uniform(0.0, 0.25),
        duration=uniform(0.55, 0.75), rate=uniform(0.85, 1.15), brightness=uniform(-0.05, 0.05),
    )


def conditions(config: dict, side: str, domain: str) -> dict[str, torch.Tensor]:
    """Recording conditions of ``side`` ("video" or "audio") in ``domain`` at the configured shift."""
    shift = config["mismatch" if side == config["dominant"] else "other_mismatch"]
    table = VISUAL_CONDITIONS if side == "video" else AUDIO_CONDITIONS
    out = {}
    for key in table[domain]:
        values = torch.tensor([table[d][key] for d in DOMAINS], dtype=torch.float32)
        mean = values.mean(0)
        out[key] = mean + shift * (values[DOMAINS.index(domain)] - mean)
    return out
