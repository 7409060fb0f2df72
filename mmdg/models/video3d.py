"""The papers' video and flow encoders: mmaction2's SlowFast-R101 and SlowOnly-R50 (:mod:`.resnet3d`).

- ``slowfast_r101`` (RGB, (3, T, H, W)): pooled slow (2048) and fast (256) layer4 features,
  concatenated (2304-d), as SimMMDG's SlowFastHead pools them.
- ``slowonly_r50`` (flow, (2, T, H, W)): the pooled 2048-d layer4 feature.

Options: ``freeze_until`` (``"layer3"``: stem, layers 1-3 and the lateral connections form the
frozen trunk, run under ``no_grad`` in eval mode; ``None``: everything trains), ``weights`` (a
local mmaction2 recognizer checkpoint, loaded with strict key and shape checks through
:mod:`.checkpoints`; the ``cls_head.*`` Kinetics classifier is dropped) and ``dropout`` (on the
pooled feature; SimMMDG takes its embedding after the head's dropout 0.5).
Stated deviation (as for the other encoders): SimMMDG leaves its frozen layers' BatchNorm in
train mode, so their running statistics drift; ours stay fixed.
"""
from __future__ import annotations

import torch
from torch import nn

from . import resnet3d
from .checkpoints import load_strict, mmaction_backbone_state, safe_load
from .encoders import ENCODERS, _check_rank, check_input
from .split import TrunkSplit

FREEZE_POINTS = (None, "layer3")


class Video3dEncoder(TrunkSplit, nn.Module):
    """A :mod:`.resnet3d` backbone split after layer3, average-pooled per pathway and concatenated."""

    def __init__(self, name: str, in_shape: tuple[int, ...], net: nn.Module, freeze_until: str | None = "layer3",
                 weights: str | None = None, dropout: float = 0.0):
        super().__init__()
        _check_rank(name, in_shape, "CTHW")
        if freeze_until not in FREEZE_POINTS:
            raise ValueError(f"encoder {name!r}: freeze_until {freeze_until!r}; valid: {list(FREEZE_POINTS)}")
        self.net = net
        if weights is not None:
            who = f"encoder {name!r}"
            load_strict(net, mmaction_backbone_state(safe_load(weights, who), weights, who), weights, who)
        self.frozen = freeze_until is not None
        for p in self.trunk_parameters():
            p.requires_grad_(not self.frozen)
        self.drop = nn.Dropout(dropout)
        self.name, self.in_shape, self.out_dim = name, tuple(in_shape), net.out_channels
        self.cached_shapes = {}
        self.train()

    def _tail_modules(self) -> list[nn.Module]:
        paths = [self.net.slow_path, self.net.fast_path] if isinstance(self.net, resnet3d.SlowFast) else [self.net]
        return [p.layer4 for p in paths]

    def trunk_parameters(self):
        tail = {id(p) for m in self._tail_modules() for p in m.parameters()}
        return [p for p in self.net.parameters() if id(p) not in tail]

    def train(self, mode: bool = True) -> "Video3dEncoder":
        super().train(mode)
        if self.frozen:  # frozen BatchNorm statistics never update; layer4's do in training
            self.net.train(False)
            for t in self._tail_modules():
                t.train(mode)
        return self

    def forward_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return tuple(self.net.forward_trunk(x))

    def forward_tail(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        maps = self.net.forward_tail(parts)
        return self.drop(torch.cat([m.mean(dim=(2, 3, 4)) for m in maps], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_cached_input(x):
            return self.tail_from_cache(x)
        check_input(self.name, x, self.in_shape)
        return self.forward_tail(self.forward_trunk(x))


@ENCODERS.register("slowfast_r101")
def slowfast_r101(in_shape: tuple[int, ...], freeze_until: str | None = "layer3", weights: str | None = None,
                  dropout: float = 0.0) -> nn.Module:
    """mmaction2 SlowFast-R101 (tau 4, alpha 4, beta 1/8) on RGB (3, T, H, W), T >= 4; 2304-d output."""
    if len(in_shape) == 4 and in_shape[1] < 4:
        raise ValueError(f"encoder 'slowfast_r101' needs at least 4 frames (its slow pathway takes every 4th), "
                         f"got in_shape {tuple(in_shape)}")
    return Video3dEncoder("slowfast_r101", in_shape, resnet3d.slowfast_r101(in_shape[0]), freeze_until, weights,
                          dropout)


@ENCODERS.register("slowonly_r50")
def slowonly_r50(in_shape: tuple[int, ...], freeze_until: str | None = "layer3", weights: str | None = None,
                 dropout: float = 0.0) -> nn.Module:
    """mmaction2 SlowOnly-R50 on flow (2, T, H, W), no pool2; 2048-d output."""
    return Video3dEncoder("slowonly_r50", in_shape, resnet3d.slowonly_r50(in_shape[0]), freeze_until, weights,
                          dropout)
