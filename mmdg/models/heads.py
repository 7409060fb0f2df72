"""Heads: classifiers that report per-modality logit shares, gradient reversal, projectors."""
from __future__ import annotations

import torch
from torch import nn

from .fusion import FusionOut


class SharesHead(nn.Module):
    """Logits of a fused representation plus each modality's share of them.

    ``hidden == 0``: a linear layer, and the shares are exact,
    ``share_m = W @ part_m + b / M`` (they sum to the logits).
    ``hidden > 0``: an MLP (Linear-ReLU-Dropout-Linear); a modality's share is the
    MLP evaluated on that modality's part alone (the other modalities zeroed).  The
    shares then do not sum to the logits; this is the usual reading for MLP heads
    (GMP.md §6 item 1, option b) and is stated wherever it is used.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.hidden, self.out_dim = hidden, out_dim
        if hidden:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, f: FusionOut, shares: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.net(f.fused)
        if not shares:
            return logits, {}
        if self.hidden:
            return logits, {m: self.net(p) for m, p in f.parts.items()}
        w, b = self.net.weight, self.net.bias
        m = len(f.parts)
        return logits, {k: p @ w.t() + b / m for k, p in f.parts.items()}


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward."""
    return _GradReverse.apply(x, coeff)


def projector(in_dim: int, out_dim: int = 128, hidden: int = 2048, norm: str = "layer") -> nn.Sequential:
    """Linear-Norm-ReLU-Linear-Norm-ReLU-Linear; ``norm`` is 'layer', 'batch' or 'none'."""
    def nrm():
        return {"layer": nn.LayerNorm(hidden), "batch": nn.BatchNorm1d(hidden), "none": nn.Identity()}[norm]
    if norm not in ("layer", "batch", "none"):
        raise ValueError(f"projector norm must be 'layer', 'batch' or 'none', got {norm!r}")
    return nn.Sequential(nn.Linear(in_dim, hidden), nrm(), nn.ReLU(),
                         nn.Linear(hidden, hidden), nrm(), nn.ReLU(),
                         nn.Linear(hidden, out_dim))
