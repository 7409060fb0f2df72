"""Objectives: named losses tagged by what they are for.

``kind`` tells a gradient strategy how to treat the gradient of a term:
``"cls"`` (classification), ``"dom"`` (domain invariance) or ``"other"``
(regularisers such as MER, SupCon, translation: always added unmodulated).
An objective may own modules (a discriminator, projectors); they are trained
with the model and are never modulated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.base import Batch
from ..feature_stats import full_precision, no_autocast  # noqa: F401  (the objectives compute in full precision)
from ..models.model import ModelOutput
from ..registry import Registry

OBJECTIVES = Registry("objective")
KINDS = ("cls", "dom", "other")


@dataclass
class Context:
    """What an objective may need to build its modules."""

    modalities: list[str]
    feat_dims: dict[str, int]
    num_classes: int
    num_domains: int


@dataclass
class Term:
    name: str
    kind: str
    loss: torch.Tensor                                   # weighted scalar
    confidence: dict[str, torch.Tensor] | None = None    # per-modality, per-sample, detached
    logs: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars


class Objective(nn.Module):
    kind = "other"

    def __init__(self, name: str, weight: float = 1.0):
        super().__init__()
        if self.kind not in KINDS:
            raise ValueError(f"objective kind must be one of {KINDS}, got {self.kind!r}")
        self.name, self.weight = name, float(weight)

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        raise NotImplementedError

    def bind(self, model: nn.Module, objectives: list) -> None:
        """Hook (no-op here): called once by :class:`~mmdg.methods.Method` with the model and the
        method's objectives, for objectives that need the model (e.g. DRB's initial weights)."""

    def epoch_end(self, epoch: int, method, row: dict, val_loader) -> None:
        """Hook (no-op here): called by the trainer after each epoch's evaluation, before the
        checkpoint (``row``: the epoch's record row, which the hook may add to)."""


def true_class_prob(shares: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
    """softmax(share_m)[i, target_i] per modality, detached: q (GMP Eq. 6) or c (Eq. 7)."""
    with torch.no_grad():
        return {m: torch.softmax(s.float(), dim=1).gather(1, target[:, None]).squeeze(1)
                for m, s in shares.items()}


def build_objective(name: str, ctx: Context, **kwargs) -> Objective:
    return OBJECTIVES.build(name, ctx=ctx, **kwargs)
