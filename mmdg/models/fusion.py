"""Fusion modules that stay additive in the modalities.

Every fusion returns ``FusionOut(fused, parts)`` with ``fused == sum(parts.values())``
exactly, where ``parts[m]`` is modality ``m``'s contribution.  A linear head on
``fused`` therefore splits into per-modality logit shares ``W @ parts[m] + b / M``:
the quantity OGM-GE and GMP call modality ``m``'s logits (GMP Eqs. 5-7).

- ``concat``: fused = [z_1; ...; z_M]; part m is z_m in its own block, zeros elsewhere
  (so ``W @ part_m`` is exactly the column block W^m z^m).
- ``sum``: fused = sum_m P_m z_m (a linear map per modality to a common width).
- ``film``: the first modality is modulated by the others,
  fused = gamma(c) * P_1 z_1 + beta(c), c = concat(other modalities);
  part_1 = gamma(c) * P_1 z_1, and beta(c) is split evenly over the conditioning modalities.
- ``gated`` ("activation-based"): fused = sum_m g_m * P_m z_m with
  softmax gates g over modalities computed from all features.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..registry import Registry

FUSIONS = Registry("fusion")


@dataclass
class FusionOut:
    fused: torch.Tensor
    parts: dict[str, torch.Tensor]


class Fusion(nn.Module):
    """Base class: ``dims`` maps modality -> feature width; ``out_dim`` is set by subclasses."""

    def __init__(self, dims: dict[str, int]):
        super().__init__()
        if not dims:
            raise ValueError("fusion needs at least one modality")
        self.dims = dict(dims)
        self.modalities = list(dims)
        self.out_dim = 0

    def check(self, feats: dict[str, torch.Tensor]) -> None:
        if list(feats) != self.modalities:
            raise ValueError(f"fusion expects modalities {self.modalities} in this order, got {list(feats)}")
        for m, z in feats.items():
            if z.dim() != 2 or z.shape[1] != self.dims[m]:
                raise ValueError(f"feature of modality {m!r} must have shape (N, {self.dims[m]}), "
                                 f"got {tuple(z.shape)}")


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    def __init__(self, dims: dict[str, int]):
        super().__init__(dims)
        self.out_dim = sum(dims.values())

    def forward(self, feats: dict[str, torch.Tensor]) -> FusionOut:
        self.check(feats)
        fused = torch.cat([feats[m] for m in self.modalities], dim=1)
        parts, start = {}, 0
        for m in self.modalities:
            part = fused.new_zeros(fused.shape)
            part[:, start:start + self.dims[m]] = feats[m]
            parts[m] = part
            start += self.dims[m]
        return FusionOut(fused, parts)


@FUSIONS.register("sum")
class SumFusion(Fusion):
    def __init__(self, dims: dict[str, int], width: int = 256):
        super().__init__(dims)
        self.out_dim = width
        self.proj = nn.ModuleDict({m: nn.Linear(d, width, bias=False) for m, d in dims.items()})

    def forward(self, feats: dict[str, torch.Tensor]) -> FusionOut:
        self.check(feats)
        parts = {m: self.proj[m](feats[m]) for m in self.modalities}
        return FusionOut(torch.stack(list(parts.values())).sum(0), parts)


@FUSIONS.register("film")
class FiLMFusion(Fusion):
    def __init__(self, dims: dict[str, int], width: int = 256):
        super().__init__(dims)
        if len(dims) < 2:
            raise ValueError("film fusion needs at least two modalities")
        self.out_dim = width
        first, *others = self.modalities
        cond = sum(dims[m] for m in others)
        self.proj = nn.Linear(dims[first], width, bias=False)
        self.gamma = nn.Linear(cond, width)
        self.beta = nn.Linear(cond, width)

    def forward(self, feats: dict[str, torch.Tensor]) -> FusionOut:
        self.check(feats)
        first, *others = self.modalities
        c = torch.cat([feats[m] for m in others], dim=1)
        modulated = self.gamma(c) * self.proj(feats[first])
        shift = self.beta(c) / len(others)
        parts = {first: modulated, **{m: shift for m in others}}
        return FusionOut(modulated + shift * len(others), parts)


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    def __init__(self, dims: dict[str, int], width: int = 256):
        super().__init__(dims)
        self.out_dim = width
        self.proj = nn.ModuleDict({m: nn.Linear(d, width, bias=False) for m, d in dims.items()})
        self.gate = nn.Linear(sum(dims.values()), len(dims))

    def forward(self, feats: dict[str, torch.Tensor]) -> FusionOut:
        self.check(feats)
        gates = torch.softmax(self.gate(torch.cat([feats[m] for m in self.modalities], 1)), dim=1)
        parts = {m: gates[:, i:i + 1] * self.proj[m](feats[m]) for i, m in enumerate(self.modalities)}
        return FusionOut(torch.stack(list(parts.values())).sum(0), parts)


def build_fusion(name: str, dims: dict[str, int], **kwargs) -> Fusion:
    return FUSIONS.build(name, dims=dims, **kwargs)
