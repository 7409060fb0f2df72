"""Gradient-Blending (Wang, Tran & Feiszli, CVPR 2020, "What makes training multimodal
classification networks hard?"): a weighting of the fused and unimodal heads' losses.

It is an objective weighting, not a gradient strategy, so it is the objective
``grad_blending`` (kind ``cls``), used with the ``sum`` strategy (the method ``grad_blending``
sits with the other balancing baselines in :mod:`mmdg.methods`).  Between two checkpoints n and n + dn, per head k:

    O_n = L^V_n - L^T_n                       (overfitting: held-out minus train loss)
    dG_k = L^V_n - L^V_{n+dn}                 (generalisation: decrease of the held-out loss)
    dO_k = O_{n+dn} - O_n
    w_k  proportional to dG_k / dO_k^2        (the paper's OGR-based weight estimate)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.base import Batch
from ..models.model import ModelOutput
from .base import OBJECTIVES, Context, Objective, Term, true_class_prob
from .unimodal_heads import UnimodalHeads

HEADS = ("aux", "shares")
_EPS = 1e-12


def blending_weights(train_prev, val_prev, train_now, val_now, eps: float = _EPS) -> torch.Tensor | None:
    """Gradient-Blending weights from per-head losses at two checkpoints, or None.

    ``w_k = max(dG_k, 0) / max(dO_k^2, eps)``, normalised to sum to the number of heads K
    (so uniform weights are all 1, the plain sum of the heads' losses).  A head whose held-out
    loss did not decrease gets weight 0; if no head's did, returns None (keep the weights).
    """
    t0, v0, t1, v1 = (torch.as_tensor(x, dtype=torch.float64) for x in (train_prev, val_prev, train_now, val_now))
    d_g = v0 - v1
    d_o = (v1 - t1) - (v0 - t0)
    raw = d_g.clamp_min(0) / (d_o * d_o).clamp_min(eps)
    if not raw.sum() > 0:
        return None
    return raw * (raw.numel() / raw.sum())


@OBJECTIVES.register("grad_blending")
class GradBlending(Objective):
    """``weight * sum_k w_k CE_k`` over the fused head and one head per modality.

    Heads: ``"aux"`` (default) uses per-modality linear heads on each encoder's feature (the
    ``unimodal_heads`` objective's module, as the paper trains separate unimodal heads);
    ``"shares"`` uses the fused classifier's logit shares (the ``unimodal_ce`` reading).

    The weights start at 1 and are re-estimated after every epoch (the paper's online
    G-Blend with a super-epoch of one epoch) by :meth:`epoch_end`, which the trainer calls:

    * L^V is each head's mean CE on the source-validation split (the trainer's model-selection
      data; no target data), computed in eval mode in one extra forward pass over it.
    * L^T is the epoch mean of the head's training CE over the steps of the epoch (train mode,
      changing weights), not a fresh pass over the training set: cheaper, and a biased
      estimate of the end-of-epoch train loss (it lags), so O is underestimated early on.
    * The first two epochs use weights 1 (two checkpoints are needed for a difference); the
      paper estimates from a warm-up run instead.  See :func:`blending_weights` for the guards
      (negative dG, tiny dO).

    The term reports the fused classifier's share confidences (like ``ce``), so strategies
    that need q (e.g. GMP) work with it.  The estimates are kept in the record's epoch rows
    under ``grad_blending`` and travel with checkpoints.
    """

    kind = "cls"

    def __init__(self, ctx: Context, weight: float = 1.0, heads: str = "aux"):
        super().__init__("grad_blending", weight)
        if heads not in HEADS:
            raise ValueError(f"grad_blending heads must be one of {list(HEADS)}, got {heads!r}")
        self.heads = heads
        self.head_names = ["fused", *ctx.modalities]
        self.aux = UnimodalHeads(ctx) if heads == "aux" else None
        self.register_buffer("weights", torch.ones(len(self.head_names)))
        self.previous: dict | None = None      # per-head train / val losses at the last epoch end

    def get_extra_state(self):
        return {"previous": self.previous}

    def set_extra_state(self, state):
        self.previous = state["previous"]

    def head_logits(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        if self.aux is not None:
            uni = {m: self.aux.heads[m](z) for m, z in out.feats.items()}
        else:
            uni = out.shares
        missing = [m for m in self.head_names[1:] if m not in uni]
        if missing:
            raise KeyError(f"grad_blending: no unimodal logits for modalities {missing}")
        return {"fused": out.logits, **{m: uni[m] for m in self.head_names[1:]}}

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        logits = self.head_logits(out)
        losses = torch.stack([F.cross_entropy(logits[h].float(), batch.label) for h in self.head_names])
        loss = self.weight * (self.weights.to(losses) * losses).sum()
        conf = true_class_prob(out.shares, batch.label) if out.shares else None
        logs = {f"gb_ce_{h}": losses[i].detach() for i, h in enumerate(self.head_names)}
        logs.update({f"gb_w_{h}": self.weights[i].detach() for i, h in enumerate(self.head_names)})
        return Term(self.name, self.kind, loss, conf, logs)

    @torch.no_grad()
    def heldout_losses(self, model, loader) -> list[float]:
        """Mean CE of every head over ``loader`` (eval mode; training flags restored)."""
        modes = [(mod, mod.training) for mod in (model, self)]
        model.eval()
        self.eval()
        device = next(model.parameters()).device
        total, n = torch.zeros(len(self.head_names), dtype=torch.float64), 0
        try:
            for batch in loader:
                batch = batch.to(device)
                logits = self.head_logits(model(batch.inputs))
                total += torch.stack([F.cross_entropy(logits[h].float(), batch.label, reduction="sum")
                                      for h in self.head_names]).double().cpu()
                n += len(batch)
        finally:
            for mod, flag in modes:
                mod.train(flag)
        if n == 0:
            raise ValueError("grad_blending: the held-out (source-validation) set is empty")
        return (total / n).tolist()

    def epoch_end(self, epoch, method, row, val_loader) -> None:
        """Re-estimate the weights from this epoch's train / source-val losses and the last ones."""
        train = [float(row["train"][f"gb_ce_{h}"]) for h in self.head_names]
        val = self.heldout_losses(method.model, val_loader)
        if self.previous is not None:
            w = blending_weights(self.previous["train"], self.previous["val"], train, val)
            if w is not None:
                self.weights.copy_(w.to(self.weights))
        self.previous = {"train": train, "val": val}
        row["grad_blending"] = {"train_ce": dict(zip(self.head_names, train)),
                                "val_ce": dict(zip(self.head_names, val)),
                                "weights_next": dict(zip(self.head_names, self.weights.tolist()))}
