"""MOOSA's objectives (Dong et al., ECCV 2024), in the closed-set DG form of GMP's Table 3.

Source: ``SIMMMDG_PIPELINE_AND_PEERS.md`` §4 and the authors' released EPIC/HAC training
script (read, not copied).  MOOSA keeps SimMMDG's SupCon on the shared halves and its
shared/specific distance (``supcon_shared``, ``ss_distance``) and adds

* ``moosa_heads`` (kind "cls"): a linear head per modality on ``z^m`` beside the fused
  classifier; per sample, the H = M + 1 heads' cross-entropies are weighted by
  ``softmax_h(-H_h / T)`` of their prediction entropies (**entropy weighting**,
  :func:`entropy_weighted_ce`), plus ``ent_weight`` times the mean over heads of the batch-mean
  prediction entropy (**entropy minimisation**, :func:`entropy_min_loss`, with the
  reference's ``log(p + 1e-5)``);
* ``moosa_jigsaw`` (kind "other"): **multimodal jigsaw**: each ``z^m`` is cut into ``splits``
  equal chunks, the M * splits chunks are concatenated in each of ``perms`` fixed random
  permutations, and an MLP classifies which permutation it sees (:func:`jigsaw_batch`);
* ``masked_translation`` (kind "other"): SimMMDG's cross-modal translation with a random
  element mask (ratio ``mask_ratio``, set to 0) on the *source* feature during training
  (**masked cross-modal translation**); the target is the unmasked feature, not detached.

The weights of the entropy weighting are not detached (the reference back-propagates
through them too).  Deviations (stated): the closed-set form only (the open-set unknown
class and the H-score threshold sweep are not ported); the jigsaw permutations are drawn
as distinct uniform random permutations from torch's generator at construction (the
reference samples distinct indices into the lexicographic list of all permutations: the
same law) and stored as a buffer; feature widths must be divisible by ``splits`` (the
reference's ``torch.split`` would make a ragged extra chunk); the entropy-minimisation term
sits in the "cls" term, so ``+gmp`` modulates it with the classification gradient (its
weight is 0.001 by default).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch
from ..models.model import ModelOutput
from ..registry import check_int, check_number
from .base import OBJECTIVES, Context, Objective, Term, full_precision, no_autocast, true_class_prob
from .simmmdg import CrossModalTranslation, translation_loss

__all__ = ["prediction_entropy", "entropy_weighted_ce", "entropy_min_loss", "sample_permutations",
           "jigsaw_batch", "MOOSAHeads", "MOOSAJigsaw", "MaskedTranslation"]


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``-sum_k p_k log p_k`` per row of ``softmax(logits)`` (N,)."""
    logp = torch.log_softmax(full_precision(logits), dim=1)
    return -(logp.exp() * logp).sum(1)


def entropy_weighted_ce(logits: list[torch.Tensor], target: torch.Tensor, temperature: float = 1.0):
    """``mean_i sum_h w_ih CE_ih`` with ``w_i = softmax_h(-H_ih / T)``; returns (loss, weights (N, H)).

    ``logits``: one (N, K) tensor per head.  The weights are not detached.
    """
    temperature = check_number("entropy_weighted_ce", "temperature", temperature, strict=True)
    if not logits:
        raise ValueError("entropy_weighted_ce: no heads")
    with no_autocast(logits[0]):
        ent = torch.stack([prediction_entropy(lg) for lg in logits], dim=1)
        w = torch.softmax(-ent / temperature, dim=1)
        ce = torch.stack([F.cross_entropy(full_precision(lg), target, reduction="none") for lg in logits], dim=1)
        return (w * ce).sum(1).mean(), w


def entropy_min_loss(logits: list[torch.Tensor], eps: float = 1e-5) -> torch.Tensor:
    """``mean_h mean_i -sum_k p_ik log(p_ik + eps)`` (MOOSA's entropy minimisation)."""
    with no_autocast(logits[0]):
        vals = []
        for lg in logits:
            p = torch.softmax(full_precision(lg), dim=1)
            vals.append(-(p * torch.log(p + eps)).sum(1).mean())
        return torch.stack(vals).mean()


def sample_permutations(n: int, count: int) -> torch.Tensor:
    """``count`` distinct uniform random permutations of ``range(n)`` as a (count, n) long tensor."""
    check_int("sample_permutations", "n", n)
    check_int("sample_permutations", "count", count)
    if count > math.factorial(n):
        raise ValueError(f"sample_permutations: count={count} exceeds the {math.factorial(n)} permutations of {n} "
                         f"chunks (lower jigsaw_perms or raise jigsaw_splits)")
    seen, out = set(), []
    while len(out) < count:
        p = tuple(torch.randperm(n).tolist())
        if p not in seen:
            seen.add(p)
            out.append(p)
    return torch.tensor(out, dtype=torch.long)


def jigsaw_batch(feats: list[torch.Tensor], splits: int, perms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Permuted chunk concatenations (P N, D) and their permutation labels (P N,).

    The chunks are ``splits`` equal pieces of each feature, modality after modality; row
    block ``j`` (rows ``j N .. (j+1) N - 1``) concatenates them in the order ``perms[j]``.
    """
    parts = []
    for z in feats:
        if z.shape[1] % splits:
            raise ValueError(f"jigsaw_batch: feature width {z.shape[1]} is not divisible by splits={splits}")
        parts.extend(torch.split(z, z.shape[1] // splits, dim=1))
    if perms.shape[1] != len(parts):
        raise ValueError(f"jigsaw_batch: permutations of {perms.shape[1]} chunks, features give {len(parts)}")
    n = feats[0].shape[0]
    rows = torch.cat([torch.cat([parts[i] for i in p.tolist()], dim=1) for p in perms], dim=0)
    labels = torch.arange(len(perms), device=rows.device).repeat_interleave(n)
    return rows, labels


@OBJECTIVES.register("moosa_heads")
class MOOSAHeads(Objective):
    """Entropy-weighted CE of the unimodal heads and the fused classifier + entropy minimisation.

    Kind "cls"; reports q^m from the fused classifier's logit shares (as ``ce``).
    """

    kind = "cls"

    def __init__(self, ctx: Context, weight: float = 1.0, temperature: float = 1.0, ent_weight: float = 0.001):
        super().__init__("moosa_heads", check_number("moosa_heads", "weight", weight))
        self.temperature = check_number("moosa_heads", "temperature", temperature, strict=True)
        self.ent_weight = check_number("moosa_heads", "ent_weight", ent_weight)
        self.heads = nn.ModuleDict({m: nn.Linear(ctx.feat_dims[m], ctx.num_classes) for m in ctx.modalities})

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        logits = [self.heads[m](out.feats[m]) for m in self.heads] + [out.logits]
        ce, w = entropy_weighted_ce(logits, batch.label, self.temperature)
        ent = entropy_min_loss(logits)
        conf = true_class_prob(out.shares, batch.label) if out.shares else None
        logs = {"moosa_ce": ce.detach(), "moosa_entropy": ent.detach()}
        logs.update({f"moosa_w_{m}": w[:, i].mean().detach() for i, m in enumerate(self.heads)})
        return Term(self.name, self.kind, self.weight * (ce + self.ent_weight * ent), conf, logs)


@OBJECTIVES.register("moosa_jigsaw")
class MOOSAJigsaw(Objective):
    """``weight * CE(jigsaw_mlp(permuted chunks), permutation index)`` (kind "other")."""

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 1.0, splits: int = 4, perms: int = 128, hidden: int = 512):
        super().__init__("moosa_jigsaw", check_number("moosa_jigsaw", "weight", weight))
        self.splits = check_int("moosa_jigsaw", "splits", splits)
        check_int("moosa_jigsaw", "perms", perms)
        check_int("moosa_jigsaw", "hidden", hidden)
        self.modalities = list(ctx.modalities)
        bad = {m: ctx.feat_dims[m] for m in self.modalities if ctx.feat_dims[m] % splits}
        if bad:
            raise ValueError(f"moosa_jigsaw: encoder feature dims must be divisible by splits={splits}; not: {bad}")
        self.register_buffer("perms", sample_permutations(len(self.modalities) * splits, perms))
        width = sum(ctx.feat_dims[m] for m in self.modalities)
        self.classifier = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, perms))

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        rows, labels = jigsaw_batch([out.feats[m] for m in self.modalities], self.splits, self.perms)
        logits = self.classifier(rows)
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(1) == labels).float().mean()
        return Term(self.name, self.kind, self.weight * loss, None,
                    {"jigsaw": loss.detach(), "jigsaw_acc": acc.detach()})


@OBJECTIVES.register("masked_translation")
class MaskedTranslation(CrossModalTranslation):
    """Cross-modal translation from a randomly masked source feature (training only), kind "other"."""

    def __init__(self, ctx: Context, weight: float = 0.1, hidden: int = 2048, dropout: float = 0.5,
                 mask_ratio: float = 0.3):
        super().__init__(ctx, weight, hidden, dropout)
        self.name = "masked_translation"
        self.mask_ratio = check_number("masked_translation", "mask_ratio", mask_ratio)
        if self.mask_ratio >= 1:
            raise ValueError(f"masked_translation: mask_ratio must be in [0, 1), got {mask_ratio!r}")

    def mask(self, z: torch.Tensor) -> torch.Tensor:
        if not self.training or self.mask_ratio == 0:
            return z
        return z.masked_fill(torch.rand_like(z, dtype=torch.float32) < self.mask_ratio, 0.0)

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        masked = {m: self.mask(z) for m, z in out.feats.items()}
        vals = {f"{a}->{b}": translation_loss(self.translators[f"{a}->{b}"](masked[a]), out.feats[b])
                for a, b in self.pairs}
        loss = torch.stack(list(vals.values())).mean()
        return Term(self.name, self.kind, self.weight * loss, None, {"masked_translation": loss.detach()})
