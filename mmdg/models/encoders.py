"""Modality encoders: ``x (N, *in_shape) -> z (N, out_dim)``.

Every encoder is an ``nn.Module`` with an ``out_dim`` attribute; parameters with
``requires_grad=False`` (a frozen trunk) are not trained and not modulated.
Factories take the per-sample input shape first: ``ENCODERS.build(name, in_shape=..., **kw)``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

ENCODERS = Registry("encoder")


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Flatten, then Linear-ReLU blocks; for feature-level benchmarks."""

    def __init__(self, in_shape: tuple[int, ...], hidden: int = 64, out_dim: int = 64, depth: int = 2):
        super().__init__()
        d = int(torch.Size(in_shape).numel())
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth - 1):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers += [nn.Linear(d, out_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_encoder(name: str, in_shape: tuple[int, ...], **kwargs) -> nn.Module:
    return ENCODERS.build(name, in_shape=tuple(in_shape), **kwargs)
