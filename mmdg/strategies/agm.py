"""AGM: Adaptive Gradient Modulation (Li et al., ICCV 2023).

Mono-modal responses (Shapley-style, two modalities a, v):
``m_a = 1/2 (f(a, v) - f(0, v) + f(a, 0))``, m_v symmetric, where f is the fused model and
0 a zeroed feature.  Scores are the mean CE of each response, ``s_a = mean_i -log p(m_a)_i[y_i]``;
``ratio_a = exp(s_v - s_a)``; the "optimal" ratio is the same expression on the running means
of the scores over all previous steps; ``k_a = exp(alpha min(opt_a - ratio_a, 10))`` scales
modality a's gradient.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.fusion import ConcatFusion, SumFusion
from ..registry import check_number
from ._grads import add_grads, class_confidence, grads_of, per_modality, split_params, total_loss, write_grads
from .base import STRATEGIES, Strategy

_PROB_FLOOR = 1e-8  # the reference clamps probabilities at 1e-8 before the log
_CAP = 10.0         # min(opt - ratio, 10) in the exponent


def agm_scores(q: dict[str, torch.Tensor], mods: list[str]) -> torch.Tensor:
    """s_m = mean_i -log(max(q_i^m, 1e-8)), (M,), from the true-class probabilities of m's response."""
    return torch.stack([-q[m].detach().float().clamp_min(_PROB_FLOOR).log().mean() for m in mods])


def _others_mean(x: torch.Tensor) -> torch.Tensor:
    m = x.numel()
    if m < 2:
        return x.clone()
    return ((1.0 - torch.eye(m, dtype=x.dtype, device=x.device)) @ x) / (m - 1)


def agm_coefficients(scores: torch.Tensor, mean_scores: torch.Tensor, alpha: float):
    """(ratio, optimal ratio, k), each (M,): ratio_m = exp(mean_{other} s - s_m), the optimal ratio
    likewise from the running means, k_m = exp(alpha * min(opt_m - ratio_m, 10))."""
    ratio = torch.exp(_others_mean(scores) - scores)
    opt = torch.exp(_others_mean(mean_scores) - mean_scores)
    return ratio, opt, torch.exp(alpha * (opt - ratio).clamp_max(_CAP))


@STRATEGIES.register("agm")
class AGM(Strategy, nn.Module):
    """AGM as a gradient strategy.

    * Mono responses without extra forward passes.  The reference runs the fused model on
      zeroed inputs; we need only the classifier on zeroed *features*, and for late fusion
      with a linear classifier (``head_hidden=0``) over ``concat`` or ``sum`` fusion,
      ``1/2 (f(a, v) - f(0, v) + f(a, 0))`` equals modality a's logit share ``W z_a + b/2``
      exactly (the bias terms cancel; ``tests/test_balancing.py`` checks it against
      ``model.classify`` on zeroed features).  So the scores come from the fused CE term's
      confidences (softmax of the shares at the true class), and AGM costs no extra forward.
      Other heads or fusions raise an error rather than silently approximating.
      (Like the reference's formula, f(0, 0) is not subtracted, so this is not the exact
      two-player Shapley value.)
    * M > 2 modalities: "other" is the mean of the other modalities' scores, and the response
      of modality m is its logit share (bias split evenly); for M = 2 this is the reference.
    * Running means: cumulative means of the scores over all previous steps, starting at 0
      (so the first step's optimal ratio is 1), updated after the coefficients, as in the
      reference; they travel with checkpoints.
    * What is scaled: each modality encoder's gradient of the ``cls`` terms (the
      classification loss, where the reference's hooks sit).  ``dom`` / ``other`` terms and
      every head get their plain gradient.  The reference's optional epoch window and
      gradient clipping are not implemented.

    Cost: one backward pass for a classification-only method (two with other terms).
    Logs ``agm/score_<m>``, ``agm/ratio_<m>``, ``agm/k_<m>``.
    """

    name = "agm"

    def __init__(self, alpha: float = 1.0):
        nn.Module.__init__(self)
        self.alpha = check_number("AGM", "alpha", alpha)
        self.mean_scores: torch.Tensor | None = None
        self.steps = 0

    def get_extra_state(self):
        return {"mean_scores": None if self.mean_scores is None else self.mean_scores.cpu(), "steps": self.steps}

    def set_extra_state(self, state):
        self.mean_scores, self.steps = state["mean_scores"], int(state["steps"])

    @staticmethod
    def check_model(model) -> None:
        if getattr(model.classifier, "hidden", 0) or not isinstance(model.fusion, (ConcatFusion, SumFusion)):
            raise ValueError("AGM reads its mono-modal responses from the logit shares, which equal the "
                             "zeroed-feature responses only for a linear classifier (head_hidden=0) on "
                             f"'concat' or 'sum' fusion; got head_hidden={getattr(model.classifier, 'hidden', 0)} "
                             f"and fusion {type(model.fusion).__name__}")

    def backward(self, terms, model, params):
        self.check_model(model)
        q = class_confidence(terms, "AGM")
        enc, heads = split_params(model, params)
        mods = list(enc)
        missing = [m for m in mods if m not in q]
        if missing:
            raise KeyError(f"AGM: no confidence for modalities {missing} (it has {sorted(q)})")
        dev = next((p.device for ps in enc.values() for p in ps), q[mods[0]].device)
        scores = agm_scores(q, mods).to(dev)
        mean = torch.zeros_like(scores) if self.mean_scores is None else self.mean_scores.to(dev)
        ratio, _, k = agm_coefficients(scores, mean, self.alpha)
        self.mean_scores = (mean * self.steps + scores) / (self.steps + 1)
        self.steps += 1

        cls = [t for t in terms if t.kind == "cls"]
        rest = [t for t in terms if t.kind != "cls"]
        enc_flat = [p for m in mods for p in enc[m]]
        allp = enc_flat + heads
        l_rest = total_loss(rest, allow_empty=True)
        g_cls = grads_of(total_loss(cls, allow_empty=True), allp, retain=l_rest is not None)
        g_rest = grads_of(l_rest, allp, retain=False)
        n = len(enc_flat)
        write_grads(heads, add_grads(g_cls[n:], g_rest[n:]))
        for i, m, ps, sl in per_modality(enc):
            scaled = [None if g is None else g * k[i].to(g.dtype) for g in g_cls[sl]]
            write_grads(ps, add_grads(scaled, g_rest[sl]))
        logs = {}
        for i, m in enumerate(mods):
            logs.update({f"agm/score_{m}": scores[i].detach(), f"agm/ratio_{m}": ratio[i].detach(),
                         f"agm/k_{m}": k[i].detach()})
        return logs
