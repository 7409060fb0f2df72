"""Per-modality auxiliary classifiers: the classification signal of the authors' GMP code.

In MMDG-Bench's ``train_GMP.py`` (GMP.md §7) each backbone has its own classification
head; the sum over modalities of their cross-entropies, weighted by 3.0, is what GMP
modulates and projects, and its softmax confidences give q^m.  Here the heads are
``Linear(d_m, K)`` layers on each encoder's feature z^m, owned by this objective (so
they are trained as heads, with their plain gradient, not modulated).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch
from ..hparams import HParam, LogUniform
from ..models.model import ModelOutput
from .base import OBJECTIVES, Context, Objective, Term, true_class_prob

# Hyperparameters of this part, declared once (the method registry, mmdg.methods, lists them).
UNIMODAL_WEIGHT = HParam("unimodal_weight", 3.0,
                         "weight of the unimodal heads' CE (unimodal_heads and released variants)",
                         LogUniform(0.3, 10.0), low=0)


@OBJECTIVES.register("unimodal_heads")
class UnimodalHeads(Objective):
    """``weight * sum_m CE(head_m(z^m), y)``; reports q^m = softmax(head_m(z^m))[y].

    The sum (not the mean) over modalities matches the authors' code, where each
    modality's encoder receives ``weight * dCE_m/dtheta^m``.
    """

    kind = "cls"

    def __init__(self, ctx: Context, weight: float = UNIMODAL_WEIGHT.default):
        super().__init__("unimodal_heads", weight)
        self.heads = nn.ModuleDict({m: nn.Linear(d, ctx.num_classes) for m, d in ctx.feat_dims.items()})

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        logits = {m: self.heads[m](z) for m, z in out.feats.items()}
        losses = {m: F.cross_entropy(lg.float(), batch.label) for m, lg in logits.items()}
        loss = torch.stack(list(losses.values())).sum()
        return Term(self.name, self.kind, self.weight * loss, true_class_prob(logits, batch.label),
                    {f"uni_ce_{m}": v.detach() for m, v in losses.items()})
