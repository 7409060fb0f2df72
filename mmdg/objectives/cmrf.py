"""CMRF: cross-modal representation flattening (Fan et al., NeurIPS 2024).

Source: ``SIMMMDG_PIPELINE_AND_PEERS.md`` §4 and the authors' released EPIC/HAC training
script (read, not copied).  CMRF adds to the fused cross-entropy

* ``cmrf_unimodal``: a linear head per modality on its encoder feature ``z^m``,
  ``weight * sum_m w_m CE(head_m(z^m), y)`` (the released ``mix_coef`` = 2), with the
  **static modality weighting** ``w_audio = 1/2`` (``down`` names the down-weighted modalities);
* ``cmrf_flatten``: a projector ``P_m`` per modality (Linear-BN-ReLU-Linear-BN-ReLU-Linear,
  output L2-normalised) and

  - SupCon over the M projections as views (``alpha_con`` = 3, temperature 0.1 with the
    reference SupCon's base temperature 0.07, see :func:`~mmdg.objectives.simmmdg.supcon_loss`);
  - **distillation toward mixed teacher features**: a simple-moving-average (SMA) teacher
    of *all* weights (the model and the projectors) gives projections ``t^m``; for every
    modality pair ``(a, b)`` the teacher features are mixed with per-sample Beta(alpha, alpha)
    coefficients, ``lam_hi > 1/2`` for ``a`` and ``lam_lo < 1/2`` for ``b``::

        t^{a|ab} = lam_hi t^a + (1 - lam_hi) t^b,   t^{b|ab} = lam_lo t^a + (1 - lam_lo) t^b

    and each online projection is pulled toward its normalised mixed teachers,
    ``distill * sum_m w_m sum_{pairs with m} mean_i || n(t^{m|pair}_i) - n(s^m_i) ||_2``
    (L2 distance, not squared; teacher detached), active once the SMA has started.

SMA rule (:func:`sma_update`): at the start of training step ``s`` the teacher is
refreshed from the online weights ``theta_s`` (those after ``s`` optimiser steps): a copy
for ``s <= sma_start``, then the equal-weight running mean of ``theta_start .. theta_s``.
Floating buffers (BatchNorm statistics) are averaged like the weights, integer buffers copied.

Deviations from the released code (stated):

* the teacher is refreshed at the start of the next step instead of right after
  ``optimizer.step()`` (the same weights reach the same forward pass);
* the coefficients conditioned on ``> 1/2`` are drawn as ``max(x, 1 - x)``, ``x ~ Beta(alpha, alpha)``,
  which for a symmetric Beta has exactly the law of the reference's rejection sampling;
* the teacher holds the model (encoders, fusion, fused classifier) and the projectors; the
  unimodal heads of ``cmrf_unimodal`` are not averaged (they do not enter the distillation,
  and the SMA model's predictions are not evaluated here);
* only the online model is evaluated and reported (the reference also evaluates the SMA
  model); the optional SAM branch is not ported;
* the unimodal heads are linear layers on ``z^m`` owned by the objective (the reference's
  per-backbone ``fc_cls``); which modality is down-weighted is a parameter (``down``), the
  reference hard-codes audio.  A named modality the model lacks is ignored.
"""
from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch
from ..models.heads import projector
from ..models.model import ModelOutput
from ..registry import check_int, check_number
from .base import OBJECTIVES, Context, Objective, Term, full_precision, no_autocast, true_class_prob
from .simmmdg import supcon_loss

__all__ = ["sma_update", "beta_halves", "mix_pair", "distill_loss", "CMRFUnimodal", "CMRFFlatten"]


def modality_weights(modalities: list[str], down: tuple[str, ...] | list[str], down_weight: float) -> dict[str, float]:
    """``{m: down_weight if m in down else 1.0}`` (CMRF's static modality weighting)."""
    return {m: (float(down_weight) if m in down else 1.0) for m in modalities}


@torch.no_grad()
def sma_update(teacher: nn.Module, online: nn.Module, count: int) -> None:
    """``teacher <- (count * teacher + online) / (count + 1)`` over the state dicts.

    ``count = 0`` copies.  Floating tensors (weights, BatchNorm statistics) are averaged;
    integer buffers (``num_batches_tracked``) are copied from ``online``.
    """
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"sma_update: count must be an int >= 0, got {count!r}")
    t_state, o_state = teacher.state_dict(), online.state_dict()
    if list(t_state) != list(o_state):
        raise ValueError("sma_update: teacher and online modules have different state dict keys")
    for k, t in t_state.items():
        o = o_state[k]
        if count == 0 or not t.is_floating_point():
            t.copy_(o)
        else:
            t.mul_(count / (count + 1)).add_(o.to(t.dtype), alpha=1.0 / (count + 1))


def beta_halves(n: int, alpha: float, upper: bool, like: torch.Tensor) -> torch.Tensor:
    """(n, 1) Beta(alpha, alpha) draws conditioned on ``> 1/2`` (``upper``) or ``< 1/2``."""
    alpha = check_number("beta_halves", "alpha", alpha, strict=True)
    x = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample((n, 1))
    x = torch.maximum(x, 1.0 - x) if upper else torch.minimum(x, 1.0 - x)
    return x.to(device=like.device, dtype=like.dtype)


def mix_pair(ta: torch.Tensor, tb: torch.Tensor, lam_hi: torch.Tensor,
             lam_lo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed teachers of a pair: ``(lam_hi ta + (1-lam_hi) tb, lam_lo ta + (1-lam_lo) tb)``."""
    if ta.shape != tb.shape:
        raise ValueError(f"mix_pair: teacher features must have one shape, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    return lam_hi * ta + (1 - lam_hi) * tb, lam_lo * ta + (1 - lam_lo) * tb


def distill_loss(student: dict[str, torch.Tensor], teachers: dict[str, list[torch.Tensor]],
                 weights: dict[str, float]) -> torch.Tensor:
    """``sum_m w_m sum_t mean_i || t_i/|t_i| - s_i/|s_i| ||_2`` with the teachers detached."""
    vals = []
    with no_autocast(next(iter(student.values()))):
        for m, s in student.items():
            s = F.normalize(full_precision(s), dim=1)
            for t in teachers[m]:
                d = F.normalize(full_precision(t.detach()), dim=1) - s
                vals.append(weights[m] * torch.sqrt((d * d).sum(1) + 1e-12).mean())
    return torch.stack(vals).sum()


@OBJECTIVES.register("cmrf_unimodal")
class CMRFUnimodal(Objective):
    """``weight * sum_m w_m CE(head_m(z^m), y)``, ``w_m = down_weight`` for ``m in down`` (kind "cls").

    Reports ``q^m = softmax(head_m(z^m))[y]``.
    """

    kind = "cls"

    def __init__(self, ctx: Context, weight: float = 2.0, down: tuple[str, ...] | list[str] = ("audio",),
                 down_weight: float = 0.5):
        super().__init__("cmrf_unimodal", check_number("cmrf_unimodal", "weight", weight))
        self.mod_weights = modality_weights(ctx.modalities, tuple(down),
                                            check_number("cmrf_unimodal", "down_weight", down_weight))
        self.heads = nn.ModuleDict({m: nn.Linear(ctx.feat_dims[m], ctx.num_classes) for m in ctx.modalities})

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        logits = {m: self.heads[m](out.feats[m]) for m in self.heads}
        losses = {m: F.cross_entropy(lg.float(), batch.label) for m, lg in logits.items()}
        loss = torch.stack([self.mod_weights[m] * v for m, v in losses.items()]).sum()
        return Term(self.name, self.kind, self.weight * loss, true_class_prob(logits, batch.label),
                    {f"cmrf_ce_{m}": v.detach() for m, v in losses.items()})


@OBJECTIVES.register("cmrf_flatten")
class CMRFFlatten(Objective):
    """SupCon on the projections + distillation toward Beta-mixed SMA-teacher projections (kind "other").

    Needs the online model: :class:`~mmdg.methods.Method` calls :meth:`bind`, which
    copies it (and the projectors) into the teacher.  The teacher is a submodule with
    ``requires_grad=False``: it is checkpointed with the method and never optimised.
    """

    kind = "other"

    def __init__(self, ctx: Context, alpha_con: float = 3.0, distill: float = 3.0, temperature: float = 0.1,
                 base_temperature: float | None = 0.07, mix_alpha: float = 0.1, sma_start: int = 400,
                 dim: int = 128, hidden: int = 2048, down: tuple[str, ...] | list[str] = ("audio",),
                 down_weight: float = 0.5):
        super().__init__("cmrf_flatten", 1.0)
        if len(ctx.modalities) < 2:
            raise ValueError(f"cmrf_flatten: needs at least 2 modalities, got {ctx.modalities}")
        self.alpha_con = check_number("cmrf_flatten", "alpha_con", alpha_con)
        self.distill = check_number("cmrf_flatten", "distill", distill)
        self.temperature = check_number("cmrf_flatten", "temperature", temperature, strict=True)
        self.base_temperature = None if base_temperature is None else check_number(
            "cmrf_flatten", "base_temperature", base_temperature, strict=True)
        self.mix_alpha = check_number("cmrf_flatten", "mix_alpha", mix_alpha, strict=True)
        self.sma_start = check_int("cmrf_flatten", "sma_start", sma_start, low=0)
        check_int("cmrf_flatten", "dim", dim)
        check_int("cmrf_flatten", "hidden", hidden)
        self.modalities = list(ctx.modalities)
        self.mod_weights = modality_weights(self.modalities, tuple(down),
                                            check_number("cmrf_flatten", "down_weight", down_weight))
        self.projectors = nn.ModuleDict({m: projector(ctx.feat_dims[m], dim, hidden, "batch") for m in self.modalities})
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.teacher: nn.ModuleDict | None = None
        self._online: list[nn.Module] = []   # a plain list: the online model is not a submodule here

    def bind(self, model: nn.Module, objectives: list = ()) -> None:
        self._online = [model]
        self.teacher = nn.ModuleDict({"model": copy.deepcopy(model),
                                      "projectors": copy.deepcopy(self.projectors)})
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _refresh_teacher(self) -> None:
        s = int(self.step)
        count = max(0, s - self.sma_start)
        sma_update(self.teacher["model"], self._online[0], count)
        sma_update(self.teacher["projectors"], self.projectors, count)

    def project(self, projectors: nn.ModuleDict, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: F.normalize(full_precision(projectors[m](feats[m])), dim=1) for m in self.modalities}

    def teacher_targets(self, t: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Mixed teacher features of every modality, one per pair it belongs to (model order)."""
        out: dict[str, list[torch.Tensor]] = {m: [] for m in self.modalities}
        n = next(iter(t.values())).shape[0]
        for a, b in itertools.combinations(self.modalities, 2):
            lam_hi = beta_halves(n, self.mix_alpha, True, t[a])
            lam_lo = beta_halves(n, self.mix_alpha, False, t[a])
            ma, mb = mix_pair(t[a], t[b], lam_hi, lam_lo)
            out[a].append(ma)
            out[b].append(mb)
        return out

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        if self.teacher is None:
            raise RuntimeError("cmrf_flatten: no online model bound (build it through mmdg.methods.build_method)")
        s = self.project(self.projectors, out.feats)
        supcon = supcon_loss(torch.stack([s[m] for m in self.modalities], dim=1), batch.label,
                             self.temperature, self.base_temperature)
        logs = {"cmrf_supcon": supcon.detach()}
        loss = self.alpha_con * supcon
        if self.training:
            self._refresh_teacher()
            if int(self.step) > self.sma_start and self.distill > 0:
                with torch.no_grad():
                    t = self.project(self.teacher["projectors"], self.teacher["model"].encode(batch.inputs))
                dist = distill_loss(s, self.teacher_targets(t), self.mod_weights)
                loss = loss + self.distill * dist
                logs["cmrf_distill"] = dist.detach()
            self.step += 1
        return Term(self.name, self.kind, loss, None, logs)
