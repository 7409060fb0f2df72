"""SimMMDG's objectives (Dong et al., NeurIPS 2023).

Source: ``SIMMMDG_PIPELINE_AND_PEERS.md`` §1.5 (the released SimMMDG train step).  RNA-Net's
relative norm alignment is in :mod:`mmdg.objectives.rna`.

SimMMDG splits each modality's encoder feature ``z^m`` (N, d_m) into a *shared* half
``z^m[:, :d_m/2]`` and a *specific* half ``z^m[:, d_m/2:]``, as the reference does, and adds
to the fused cross-entropy

* ``alpha_con * L_supcon``: supervised contrastive loss on the L2-normalised projections
  of the shared halves, the M modalities being M views of a sample (:class:`SupConShared`);
* ``beta * L_dist`` with ``L_dist = -mean_m MSE(shared^m, specific^m)``, pushing the two
  halves apart (:class:`SharedSpecificDistance`);
* ``alpha_trans * L_trans``: cross-modal translation MLPs for every ordered pair of
  modalities (:class:`CrossModalTranslation`).

All three are kind ``"other"``: a gradient strategy (GMP) adds them unmodulated.
Losses are computed in float32 (float64 for float64 input) with autocast off.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch
from ..models.heads import projector
from ..models.model import ModelOutput
from ..registry import check_int, check_number
from .base import Context, OBJECTIVES, Objective, Term, full_precision, no_autocast

__all__ = ["supcon_loss", "shared_specific_distance", "translation_loss", "split_halves",
           "SupConShared", "SharedSpecificDistance", "CrossModalTranslation"]


# ------------------------------------------------------------------------------------- helpers

def split_halves(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(shared, specific) = (z[:, :d/2], z[:, d/2:])``; ``d`` must be even."""
    if z.dim() != 2 or z.shape[1] % 2:
        raise ValueError(f"split_halves needs features of shape (N, d) with d even, got {tuple(z.shape)}")
    h = z.shape[1] // 2
    return z[:, :h], z[:, h:]


# ------------------------------------------------------------------------------------- pure losses

def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                base_temperature: float | None = None) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, ``L^sup_out``), contrast mode "all".

    ``z``: (N, V, D), V views of each of N samples (SimMMDG: V = modalities), or (N, D)
    for one view.  Each view is L2-normalised.  With ``A = N V`` anchors ``a`` and
    ``P(a)`` the other anchors with ``a``'s label (all views of the same sample
    included, ``a`` itself excluded)::

        L = (T / T_b) * mean_a  -1/|P(a)| sum_{p in P(a)} log( exp(s_ap / T) / sum_{k != a} exp(s_ak / T) )

    with ``s`` the cosine similarity, ``T = temperature`` and ``T_b = base_temperature``.

    **Temperature quirk (deliberate choice).** The reference SupCon code multiplies the loss
    by ``T / T_b``; SimMMDG passes ``--temp 0.1`` but leaves ``T_b = 0.07``, so its loss is
    scaled by 0.1/0.07 = 1.43 (equivalently its ``alpha_con = 3`` is an effective 4.29).
    Here ``base_temperature=None`` (the default) means ``T_b = T``: factor 1, the paper's
    formula.  Pass ``base_temperature=0.07`` to reproduce the reference; the ``simmmdg``
    method does so by default (hyperparameter ``con_base_temp``) so that its ``alpha_con``
    means what it means in the released code.

    Anchors without any positive (only possible with one view) are left out of the mean
    (the original code divides by zero there and returns NaN); if no anchor has a
    positive the result is a zero attached to the graph.  Float32 (float64 for float64
    input), autocast off.
    """
    if not isinstance(z, torch.Tensor) or z.dim() not in (2, 3):
        raise ValueError(f"supcon_loss: z must have shape (N, D) or (N, V, D), got "
                         f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    temperature = check_number("supcon_loss", "temperature", temperature, strict=True)
    base = temperature if base_temperature is None else check_number(
        "supcon_loss", "base_temperature", base_temperature, strict=True)
    if z.dim() == 2:
        z = z[:, None]
    n, v, _ = z.shape
    if labels.shape != (n,):
        raise ValueError(f"supcon_loss: labels must have shape ({n},), got {tuple(labels.shape)}")
    with no_autocast(z):
        z = F.normalize(full_precision(z), dim=-1)
        feats = z.transpose(0, 1).reshape(n * v, -1)               # view-major, as torch.cat(unbind(1))
        lab = labels.repeat(v)
        logits = feats @ feats.T / temperature
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()
        self_mask = torch.eye(n * v, dtype=torch.bool, device=z.device)
        pos = (lab[:, None] == lab[None, :]) & ~self_mask
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        log_prob = log_prob.masked_fill(self_mask, 0.0)
        npos = pos.sum(1)
        has = npos > 0
        if not bool(has.any()):
            return z.sum() * 0.0
        mean_pos = (log_prob * pos).sum(1)[has] / npos[has]
        return -(temperature / base) * mean_pos.mean()


def shared_specific_distance(feats: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """SimMMDG's distance ("explore") loss: ``-mean_m MSE(shared^m, specific^m)``.

    MSE is the mean over batch and half-dimensions of the squared difference (``F.mse_loss``);
    the loss is unbounded below (minimising it pushes the halves apart without limit), as in
    the reference.  Accepts one feature tensor or a dict of them.
    """
    if isinstance(feats, torch.Tensor):
        feats = {"_": feats}
    if not feats:
        raise ValueError("shared_specific_distance: no features")
    with no_autocast(next(iter(feats.values()))):
        vals = [-F.mse_loss(*(full_precision(h) for h in split_halves(z))) for z in feats.values()]
        return torch.stack(vals).mean()


def translation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i || pred_i/|pred_i| - target_i/|target_i| ||_2`` (reference form; target not detached).

    The L2 *distance* (not squared) between the L2-normalised prediction and target,
    averaged over the batch; in [0, 2].
    """
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"translation_loss: pred and target must both be (N, D), got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    with no_autocast(pred):
        d = F.normalize(full_precision(pred), dim=1) - F.normalize(full_precision(target), dim=1)
        # sqrt(sum d^2 + tiny): finite gradient when prediction and target coincide
        return torch.sqrt((d * d).sum(1) + 1e-12).mean()


# ------------------------------------------------------------------------------------- objectives

def _even_dims(owner: str, ctx: Context) -> None:
    if len(ctx.modalities) < 2:
        raise ValueError(f"{owner}: needs at least 2 modalities, got {ctx.modalities}")
    odd = {m: ctx.feat_dims[m] for m in ctx.modalities if ctx.feat_dims[m] % 2}
    if odd:
        raise ValueError(f"{owner}: encoder feature dims must be even to split into shared/specific "
                         f"halves; odd: {odd}")


@OBJECTIVES.register("supcon_shared")
class SupConShared(Objective):
    """``alpha_con * supcon(P_m(shared^m) for m, labels)`` (SimMMDG §1.5 item 3, kind "other").

    Each modality's shared half goes through its own projector (reference:
    Linear(d/2, 2048)-BN-ReLU-Linear(2048, 2048)-BN-ReLU-Linear(2048, 128); ``norm``,
    ``hidden``, ``dim`` configurable) and is L2-normalised inside :func:`supcon_loss`;
    the M projections are M views.  ``base_temperature``: see :func:`supcon_loss`.
    """

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 3.0, temperature: float = 0.1,
                 base_temperature: float | None = 0.07, dim: int = 128, hidden: int = 2048, norm: str = "batch"):
        super().__init__("supcon_shared", check_number("supcon_shared", "weight", weight))
        _even_dims("supcon_shared", ctx)
        self.temperature = check_number("supcon_shared", "temperature", temperature, strict=True)
        self.base_temperature = None if base_temperature is None else check_number(
            "supcon_shared", "base_temperature", base_temperature, strict=True)
        check_int("supcon_shared", "dim", dim)
        check_int("supcon_shared", "hidden", hidden)
        if norm not in ("layer", "batch", "none"):
            raise ValueError(f"supcon_shared: norm must be 'layer', 'batch' or 'none', got {norm!r}")
        self.modalities = list(ctx.modalities)
        self.projectors = nn.ModuleDict({m: projector(ctx.feat_dims[m] // 2, dim, hidden, norm)
                                         for m in self.modalities})

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        views = [self.projectors[m](split_halves(out.feats[m])[0]) for m in self.modalities]
        z = torch.stack([full_precision(v) for v in views], dim=1)
        loss = supcon_loss(z, batch.label, self.temperature, self.base_temperature)
        return Term(self.name, self.kind, self.weight * loss, None, {"supcon": loss.detach()})


@OBJECTIVES.register("ss_distance")
class SharedSpecificDistance(Objective):
    """``beta * (-mean_m MSE(shared^m, specific^m))`` (SimMMDG's "explore" loss, kind "other").

    Unbounded below, as in the reference; it acts on the encoder features directly.
    """

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 0.7):
        super().__init__("ss_distance", check_number("ss_distance", "weight", weight))
        _even_dims("ss_distance", ctx)
        self.modalities = list(ctx.modalities)

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        loss = shared_specific_distance({m: out.feats[m] for m in self.modalities})
        return Term(self.name, self.kind, self.weight * loss, None, {"ss_distance": loss.detach()})


def translator(in_dim: int, out_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """Linear(in, h)-ReLU-Linear(h, h)-ReLU-Dropout-Linear(h, out) (SimMMDG's translation MLP)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, out_dim))


@OBJECTIVES.register("translation")
class CrossModalTranslation(Objective):
    """``alpha_trans * mean_{A != B} translation_loss(T_AB(z^A), z^B)`` (kind "other").

    One MLP per ordered modality pair maps A's full feature to B's; 2 directions for two
    modalities, 6 for three.  The target is not detached (reference), so the loss also
    pulls the target encoder's features.
    """

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 0.1, hidden: int = 2048, dropout: float = 0.5):
        super().__init__("translation", check_number("translation", "weight", weight))
        if len(ctx.modalities) < 2:
            raise ValueError(f"translation: needs at least 2 modalities, got {ctx.modalities}")
        check_int("translation", "hidden", hidden)
        dropout = check_number("translation", "dropout", dropout)
        if dropout >= 1:
            raise ValueError(f"translation: dropout must be in [0, 1), got {dropout!r}")
        self.pairs = [(a, b) for a in ctx.modalities for b in ctx.modalities if a != b]
        self.translators = nn.ModuleDict({f"{a}->{b}": translator(ctx.feat_dims[a], ctx.feat_dims[b], hidden, dropout)
                                          for a, b in self.pairs})

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        vals = {f"{a}->{b}": translation_loss(self.translators[f"{a}->{b}"](out.feats[a]), out.feats[b])
                for a, b in self.pairs}
        loss = torch.stack(list(vals.values())).mean()
        logs = {f"trans_{k}": v.detach() for k, v in vals.items()}
        logs["translation"] = loss.detach()
        return Term(self.name, self.kind, self.weight * loss, None, logs)

    def translate(self, feats: dict[str, torch.Tensor], missing: str) -> torch.Tensor:
        """``missing``'s feature predicted from the others: the mean of ``T_{a->missing}(z^a)`` over
        the available modalities ``a`` (used by the missing-modality evaluation)."""
        srcs = [a for a, b in self.pairs if b == missing and a in feats]
        if not srcs:
            raise KeyError(f"{self.name}: no translator into modality {missing!r} from {sorted(feats)}")
        return torch.stack([self.translators[f"{a}->{missing}"](feats[a]) for a in srcs]).mean(0)
