"""RNA-Net's relative norm alignment (Planamente et al., WACV 2022).

Source: ``SIMMMDG_PIPELINE_AND_PEERS.md`` §4; no code was released, the loss is the paper's.
Computed in float32 (float64 for float64 input) with autocast off.
"""
from __future__ import annotations

import torch

from ..data.base import Batch
from ..models.model import ModelOutput
from ..registry import check_number
from .base import OBJECTIVES, Context, Objective, Term, full_precision, no_autocast

__all__ = ["rna_loss", "RelativeNormAlignment"]


def rna_loss(feats: dict[str, torch.Tensor], modalities: list[str] | None = None) -> torch.Tensor:
    """Relative norm alignment (RNA-Net): ``(mean_i |f^a_i| / mean_i |f^b_i| - 1)^2``.

    ``a``, ``b`` are the first and second modality (in ``modalities`` order, default the
    dict's).  For M > 2 modalities (a generalisation; the paper has two) the loss is the mean
    over pairs ``i < j`` of ``(n_i / n_j - 1)^2``, ``n`` the batch-mean L2 norms.
    """
    mods = list(modalities or feats)
    if len(mods) < 2:
        raise ValueError(f"rna_loss needs at least 2 modalities, got {mods}")
    with no_autocast(feats[mods[0]]):
        norms = [full_precision(feats[m]).norm(dim=1).mean() for m in mods]
        vals = [(norms[i] / norms[j] - 1.0) ** 2 for i in range(len(mods)) for j in range(i + 1, len(mods))]
        return torch.stack(vals).mean()


@OBJECTIVES.register("rna")
class RelativeNormAlignment(Objective):
    """``lambda * rna_loss(feats)``: equalise the modalities' batch-mean feature norms (kind "other").

    RNA-Net (Planamente et al., WACV 2022) on the encoder features; ratio = first / second
    modality in the model's order; M > 2: mean over pairs (see :func:`rna_loss`).
    """

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 1.0):
        super().__init__("rna", check_number("rna", "weight", weight))
        if len(ctx.modalities) < 2:
            raise ValueError(f"rna: needs at least 2 modalities, got {ctx.modalities}")
        self.modalities = list(ctx.modalities)

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        loss = rna_loss(out.feats, self.modalities)
        logs = {"rna": loss.detach()}
        logs.update({f"feat_norm_{m}": out.feats[m].detach().float().norm(dim=1).mean() for m in self.modalities})
        return Term(self.name, self.kind, self.weight * loss, None, logs)
