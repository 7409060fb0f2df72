"""Cross-entropy and the domain-adversarial objective (GMP's base, after Li et al. 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.base import Batch
from ..hparams import HParam, LogUniform
from ..models.fusion import ConcatFusion
from ..models.heads import SharesHead, grad_reverse
from ..models.model import ModelOutput
from .base import OBJECTIVES, Context, Objective, Term, true_class_prob

# Hyperparameters of this part, declared once (the method registry, mmdg.methods, lists them).
LAMBDA_D = HParam("lambda_d", 0.3, "weight of the domain-adversarial loss (0: none)", LogUniform(0.03, 3.0), low=0)
DISC_HIDDEN = HParam("disc_hidden", 0, "hidden width of the domain discriminator (0: linear)", low=0)


@OBJECTIVES.register("ce")
class CrossEntropy(Objective):
    """L_c: cross-entropy of the fused classifier; reports q^m from the logit shares."""

    kind = "cls"

    def __init__(self, ctx: Context, weight: float = 1.0):
        super().__init__("ce", weight)

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        loss = F.cross_entropy(out.logits.float(), batch.label)
        conf = true_class_prob(out.shares, batch.label) if out.shares else None
        return Term(self.name, self.kind, self.weight * loss, conf, {"ce": loss.detach()})


@OBJECTIVES.register("domain_adv")
class DomainAdversarial(Objective):
    """lambda * L_d with a domain discriminator behind gradient reversal.

    The discriminator sees the concatenated encoder features through a gradient
    reversal layer, so it *minimises* ``lambda * L_d`` while each encoder receives
    ``g_d = -lambda * dL_d/dtheta`` (GMP Eq. 2).  Its logit shares give the
    domain confidence c^m (GMP Eq. 7).  ``hidden=0`` makes it linear, so the shares
    are exact column blocks D^m z^m; the paper's MLP (256 hidden) is ``hidden=256``,
    whose shares are read as "the other modality zeroed" (see SharesHead).
    """

    kind = "dom"

    def __init__(self, ctx: Context, weight: float = LAMBDA_D.default, hidden: int = DISC_HIDDEN.default,
                 dropout: float = 0.0):
        super().__init__("domain_adv", weight)
        if ctx.num_domains < 2:
            raise ValueError(f"domain_adv needs at least 2 source domains, got {ctx.num_domains}")
        self.fusion = ConcatFusion(ctx.feat_dims)
        self.head = SharesHead(self.fusion.out_dim, ctx.num_domains, hidden=hidden, dropout=dropout)

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        feats = {m: grad_reverse(z, 1.0) for m, z in out.feats.items()}
        logits, shares = self.head(self.fusion(feats))
        loss = F.cross_entropy(logits.float(), batch.domain)
        acc = (logits.argmax(1) == batch.domain).float().mean()
        return Term(self.name, self.kind, self.weight * loss, true_class_prob(shares, batch.domain),
                    {"domain_ce": loss.detach(), "domain_acc": acc})


@OBJECTIVES.register("unimodal_ce")
class UnimodalCE(Objective):
    """Cross-entropy of each modality's logit share (per-modality branches), averaged."""

    kind = "cls"

    def __init__(self, ctx: Context, weight: float = 1.0):
        super().__init__("unimodal_ce", weight)

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        losses = {m: F.cross_entropy(s.float(), batch.label) for m, s in out.shares.items()}
        loss = torch.stack(list(losses.values())).mean()
        return Term(self.name, self.kind, self.weight * loss, true_class_prob(out.shares, batch.label),
                    {f"ce_{m}": v.detach() for m, v in losses.items()})
