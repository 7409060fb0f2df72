"""Objectives of the remaining GMP Table 2 peers and of the GMP authors' released code.

* ``cggm_heads``: CGGM's per-modality classifiers, trained on *detached* encoder features
  (they never move the encoders; the ``cggm`` strategy reads their batch accuracies).
* ``modality_kl``: BALGRAD's KL divergence between the modalities' predictions, computed on
  the auxiliary heads of the method's ``unimodal_heads`` objective.
* ``domain_adv_released``: the domain branch of MMDG-Bench's ``train_GMP.py``: per-modality
  projection heads behind a gradient reversal, one discriminator shared by all modalities.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch
from ..hparams import HParam, LogUniform
from ..models.heads import grad_reverse
from ..models.model import ModelOutput
from ..registry import check_number
from .base import OBJECTIVES, Context, Objective, Term, full_precision, true_class_prob

# Hyperparameters of this part, declared once (the method registry, mmdg.methods, lists them).
RELEASED_DOM_WEIGHT = HParam("released_dom_weight", 0.5, "released GMP: weight of the per-modality domain CE",
                             LogUniform(0.05, 5.0), low=0)
RELEASED_GRL = HParam("released_grl", 0.3, "released GMP: gradient-reversal coefficient", LogUniform(0.03, 3.0),
                      low=0)
RELEASED_PROJ_DIM = HParam("released_proj_dim", 512, "released GMP: width of the domain projections", low=1)


@OBJECTIVES.register("cggm_heads")
class CGGMHeads(Objective):
    """``weight * sum_m CE(f_m(stopgrad(z^m)), y)``: CGGM's modality classifiers f_m (kind "other").

    Logs each classifier's batch accuracy ``cggm_acc_<m>`` (in [0, 1]), which the ``cggm``
    strategy turns into its coefficients.  Deviation: f_m is ``Linear(d_m, K)`` (the released
    code uses a two-layer transformer on the token sequence, with its own AdamW optimizer at
    lr 5e-4); here the heads are trained by the run's optimizer.
    """

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 1.0):
        super().__init__("cggm_heads", check_number("cggm_heads", "weight", weight))
        self.heads = nn.ModuleDict({m: nn.Linear(d, ctx.num_classes) for m, d in ctx.feat_dims.items()})

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        logits = {m: self.heads[m](z.detach()) for m, z in out.feats.items()}
        losses = {m: F.cross_entropy(lg.float(), batch.label) for m, lg in logits.items()}
        logs = {f"cggm_acc_{m}": full_precision((lg.argmax(1) == batch.label).to(lg.dtype)).mean()
                for m, lg in logits.items()}
        logs.update({f"cggm_ce_{m}": v.detach() for m, v in losses.items()})
        return Term(self.name, self.kind, self.weight * torch.stack(list(losses.values())).sum(), None, logs)


def symmetric_kl(logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over modality pairs (a, b) of ``(KL(p_a || p_b) + KL(p_b || p_a)) / 2``, batch-averaged."""
    pairs = list(itertools.combinations(list(logits), 2))
    if not pairs:
        first = next(iter(logits.values()))
        return first.sum() * 0.0
    logp = {m: F.log_softmax(full_precision(lg), dim=1) for m, lg in logits.items()}
    total = 0.0
    for a, b in pairs:
        kl_ab = (logp[a].exp() * (logp[a] - logp[b])).sum(1).mean()
        kl_ba = (logp[b].exp() * (logp[b] - logp[a])).sum(1).mean()
        total = total + 0.5 * (kl_ab + kl_ba)
    return total / len(pairs)


@OBJECTIVES.register("modality_kl")
class ModalityKL(Objective):
    """``weight * symmetric_kl`` of the ``unimodal_heads`` objective's predictions (kind "other").

    BALGRAD's KL term "between the two modalities' predictions"; the paper's direction of the
    KL was not available to us, so the symmetric form is used (stated).  More than two
    modalities: the mean over pairs.  The heads are those of the method's ``unimodal_heads``
    objective (found by :meth:`bind`), so the KL and the unimodal CE see the same predictions.
    """

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 1.0):
        super().__init__("modality_kl", check_number("modality_kl", "weight", weight))
        self._heads: list = []

    def bind(self, model, objectives) -> None:
        heads = [o for o in objectives if o.name == "unimodal_heads"]
        if not heads:
            raise ValueError("modality_kl needs the 'unimodal_heads' objective in the same method "
                             f"(objectives: {[o.name for o in objectives]})")
        self._heads = [heads[0].heads]          # a list, so the heads are not registered twice

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        if not self._heads:
            raise RuntimeError("modality_kl is not bound to a method (build it with build_method)")
        heads = self._heads[0]
        kl = symmetric_kl({m: heads[m](z) for m, z in out.feats.items()})
        return Term(self.name, self.kind, self.weight * kl, None, {"kl": kl.detach()})


@OBJECTIVES.register("domain_adv_released")
class DomainAdvReleased(Objective):
    """The domain branch of MMDG-Bench ``train_GMP.py``: ``weight * sum_m CE(D(P_m(GRL_coeff(z^m))), d)``.

    ``P_m`` = Linear(d_m, proj_dim)-ReLU-Dropout(0.5) per modality, ``D`` = Linear(proj_dim,
    hidden)-BatchNorm-ReLU-Linear(hidden, C) shared by the modalities, the reversal multiplies
    the gradient by ``-grl`` (0.3 there) and ``weight`` is ``domain_adv_loss_local`` (0.5).
    Each modality's CE only depends on its own encoder, so d/dtheta^m of the sum is the released
    per-modality domain gradient.  c^m = softmax(D(P_m(z^m)))[true domain] (their domain
    confidence).  Whether P_m and D are trained is the ``gmp_released`` strategy's choice: the
    released code never trains them (see :class:`~mmdg.strategies.gmp_released.GMPReleased`).
    """

    kind = "dom"

    def __init__(self, ctx: Context, weight: float = RELEASED_DOM_WEIGHT.default, grl: float = RELEASED_GRL.default,
                 proj_dim: int = RELEASED_PROJ_DIM.default,
                 hidden: int = 256, dropout: float = 0.5):
        super().__init__("domain_adv_released", check_number("domain_adv_released", "weight", weight))
        if ctx.num_domains < 2:
            raise ValueError(f"domain_adv_released needs at least 2 source domains, got {ctx.num_domains}")
        for name, v in (("proj_dim", proj_dim), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"domain_adv_released: {name} must be an int >= 1, got {v!r}")
        self.grl = check_number("domain_adv_released", "grl", grl)
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, proj_dim), nn.ReLU(), nn.Dropout(dropout))
                                   for m, d in ctx.feat_dims.items()})
        self.disc = nn.Sequential(nn.Linear(proj_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                  nn.Linear(hidden, ctx.num_domains))

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        logits = {m: self.disc(self.proj[m](grad_reverse(z, self.grl))) for m, z in out.feats.items()}
        losses = {m: F.cross_entropy(lg.float(), batch.domain) for m, lg in logits.items()}
        logs = {f"domain_ce_{m}": v.detach() for m, v in losses.items()}
        logs.update({f"domain_acc_{m}": (lg.argmax(1) == batch.domain).float().mean() for m, lg in logits.items()})
        return Term(self.name, self.kind, self.weight * torch.stack(list(losses.values())).sum(),
                    true_class_prob(logits, batch.domain), logs)
