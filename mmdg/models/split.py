"""Encoders split into a frozen trunk and a trained tail, so trunk outputs can be cached.

An encoder that supports the trunk cache (:mod:`mmdg.trunk_cache`) mixes in :class:`TrunkSplit`
and implements ``forward_trunk(x) -> tuple of tensors`` (run under ``no_grad``, eval mode) and
``forward_tail(parts) -> (N, out_dim)``.  The cache stores the trunk outputs of each sample
flattened into one row; ``cached_shapes`` maps that row length to the parts' per-sample shapes,
and a 2-D input whose width is a key of it is taken as such a row (raw inputs are 3-D or more).
"""
from __future__ import annotations

import math

import torch


class TrunkSplit:
    cached_shapes: dict[int, tuple[tuple[int, ...], ...]]

    def trunk_is_frozen(self) -> bool:
        return any(True for _ in self.trunk_parameters()) and not any(p.requires_grad for p in self.trunk_parameters())

    def trunk_parameters(self):
        raise NotImplementedError

    def is_cached_input(self, x: torch.Tensor) -> bool:
        return x.dim() == 2 and x.shape[1] in getattr(self, "cached_shapes", {})

    def tail_from_cache(self, rows: torch.Tensor) -> torch.Tensor:
        shapes = self.cached_shapes[rows.shape[1]]
        sizes = [math.prod(s) for s in shapes]
        parts = tuple(p.reshape(len(rows), *s).float() for p, s in zip(rows.split(sizes, dim=1), shapes))
        return self.forward_tail(parts)
