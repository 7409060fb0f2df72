"""GaussianFeatures: a feature-level benchmark for explanation cells that run in seconds.

Each modality ``m`` of a sample with class ``y`` in domain ``d`` is a vector

    x^m = separation_m * mu[m, y] + shift_m * delta[m, d] + nuisance part + N(0, I)

with class means ``mu[m, y]`` and domain offsets ``delta[m, d]`` drawn once from the seed
(unit-norm directions).  ``separation`` sets how easily each modality predicts the class
(modality imbalance), ``shift`` how far each modality moves between domains.  With
``cooccur > 0`` a nuisance code ``n`` is written into both modalities (one extra noisy one-hot
block of ``K`` dimensions each, the same code in both): in every domain except
``target_domain`` ``n = (y + d) mod K`` with probability ``cooccur`` (a domain-specific
co-occurrence, the Fusion Overfitting trap) and uniform otherwise; in the target it is uniform.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import BENCHMARKS, Benchmark, TensorDataset


def _per_modality(name: str, value, modalities: Sequence[str]) -> dict[str, float]:
    values = [value] * len(modalities) if isinstance(value, (int, float)) else list(value)
    if len(values) != len(modalities):
        raise ValueError(f"{name} needs one number or one per modality ({len(modalities)}), got {value!r}")
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} entries must be finite numbers >= 0, got {value!r}")
    return dict(zip(modalities, map(float, values)))


@BENCHMARKS.register("gaussian_features")
class GaussianFeatures(Benchmark):
    """Gaussian class clusters per modality, shifted per domain.

    Args:
        num_modalities: 2 (default) or more; modalities are named ``m0``, ``m1``, ...
        dim: feature dimensions per modality (>= 2, default 8).
        num_classes: classes (>= 2, default 4).
        num_domains: domains ``d0``.. (>= 2, default 3).
        separation: class-mean distance scale, one number or one per modality (default 3 for
            ``m0``, 2 for the others: ``m0`` is the strong modality).
        shift: domain-offset scale, one number or one per modality (default 5 for ``m0``, 0.5 for
            the others: the strong modality also shifts most).
        cooccur: in [0, 1], strength of the source-specific nuisance co-occurrence (default 0; the
            nuisance block is only present if cooccur > 0).
        target_domain: the domain without the co-occurrence (default: the last domain).
        train_per_domain, test_per_domain: split sizes (defaults 200 and 100).
        seed: everything is a function of the seed and the arguments.
    """

    name = "gaussian_features"

    def __init__(self, num_modalities: int = 2, dim: int = 8, num_classes: int = 4, num_domains: int = 3,
                 separation: float | Sequence[float] | None = None, shift: float | Sequence[float] | None = None,
                 cooccur: float = 0.0, target_domain: str | None = None,
                 train_per_domain: int = 200, test_per_domain: int = 100, seed: int = 0):
        for key, value, lo in (("num_modalities", num_modalities, 2), ("dim", dim, 2),
                               ("num_classes", num_classes, 2), ("num_domains", num_domains, 2),
                               ("train_per_domain", train_per_domain, 2),
                               ("test_per_domain", test_per_domain, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"{key} must be an integer >= {lo}, got {value!r}")
        if not isinstance(cooccur, (int, float)) or not 0.0 <= cooccur <= 1.0:
            raise ValueError(f"cooccur must be a number in [0, 1], got {cooccur!r}")
        self.modalities = tuple(f"m{i}" for i in range(num_modalities))
        self.domains = tuple(f"d{i}" for i in range(num_domains))
        self.classes = tuple(f"c{i}" for i in range(num_classes))
        separation = [3.0] + [2.0] * (num_modalities - 1) if separation is None else separation
        shift = [5.0] + [0.5] * (num_modalities - 1) if shift is None else shift
        self.separation = _per_modality("separation", separation, self.modalities)
        self.shift = _per_modality("shift", shift, self.modalities)
        self.target_domain = self.domains[-1] if target_domain is None else self.check_domain(target_domain)
        self.dim, self.cooccur = dim, float(cooccur)
        self.sizes = {"train": train_per_domain, "test": test_per_domain}
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, dim, generator=g), dim=-1)  # noqa: E731
        self.means = {m: unit(num_classes) for m in self.modalities}
        self.offsets = {m: unit(num_domains) for m in self.modalities}
        self._cache: dict[tuple[str, str], TensorDataset] = {}

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        extra = len(self.classes) if self.cooccur > 0 else 0
        return {m: (self.dim + extra,) for m in self.modalities}

    def nuisance(self, domain: str, split: str) -> torch.Tensor:
        """The nuisance code of every sample of ``domain``/``split`` (agrees with ``(y + d) mod K`` when correlated)."""
        return self._generate(domain, split)[1]

    def dataset(self, domain: str, split: str) -> TensorDataset:
        return self._generate(domain, split)[0]

    def _generate(self, domain: str, split: str):
        key = (self.check_domain(domain), self.check_split(split))
        if key not in self._cache:
            d, n, k = self.domains.index(domain), self.sizes[split], len(self.classes)
            g = torch.Generator().manual_seed(self.seed * 1009 + 17 * d + (split == "test") + 1)
            y = torch.randint(0, k, (n,), generator=g)
            linked = torch.rand(n, generator=g) < (self.cooccur if domain != self.target_domain else 0.0)
            code = torch.where(linked, (y + d) % k, torch.randint(0, k, (n,), generator=g))
            inputs = {}
            for m in self.modalities:
                x = (self.separation[m] * self.means[m][y] + self.shift[m] * self.offsets[m][d]
                     + torch.randn(n, self.dim, generator=g))
                if self.cooccur > 0:
                    block = 2.0 * torch.nn.functional.one_hot(code, k).float()
                    x = torch.cat([x, block + 0.5 * torch.randn(n, k, generator=g)], dim=1)
                inputs[m] = x
            self._cache[key] = (TensorDataset(inputs, y, torch.full((n,), d)), code)
        return self._cache[key]
