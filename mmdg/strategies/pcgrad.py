"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning") across terms.

Each term of the method is a task.  For every task i, and the other tasks j in random order,
the task gradient is projected onto the normal plane of the *original* g_j when they conflict:
``g_i <- g_i - (g_i.g_j / |g_j|^2) g_j`` if ``g_i.g_j < 0`` (Yu et al., Algorithm 1).
"""
from __future__ import annotations

import torch

from ._grads import add_grads, flat_grads, grads_of, write_grads
from .base import STRATEGIES, Strategy

REDUCTIONS = ("sum", "mean")


def pcgrad_project(grads: list[torch.Tensor], order: list[list[int]] | None = None) -> list[torch.Tensor]:
    """Projected task gradients (1-D, one per task).

    ``order[i]`` lists the other tasks in the order task i is projected against them (default:
    ascending).  Projections use the original gradients; a zero g_j is skipped (no NaN).
    Written with ``torch.where``, so there is no host synchronisation.
    """
    out = []
    for i, g in enumerate(grads):
        gi = g.clone()
        for j in (order[i] if order is not None else [j for j in range(len(grads)) if j != i]):
            gj = grads[j]
            dot, nj = torch.dot(gi, gj), torch.dot(gj, gj)
            coef = torch.where((dot < 0) & (nj > 0), dot / nj.clamp_min(torch.finfo(nj.dtype).tiny),
                               torch.zeros_like(dot))
            gi = gi - coef * gj
        out.append(gi)
    return out


@STRATEGIES.register("pcgrad")
class PCGrad(Strategy):
    """PCGrad over the method's terms (e.g. fused CE and unimodal CE), on the shared parameters.

    * Tasks are the terms.  A term is one loss: the ``unimodal_ce`` term (the mean of the
      modalities' CEs) is one task, not one per modality.  With concatenation fusion the
      per-modality CEs reach disjoint encoders (they share only the classifier bias), so
      splitting them would barely change the projection.
    * Shared parameters are those that at least two terms reach (encoders, a classifier used
      by several terms); the projection uses one flattened vector over all of them, as in
      Yu et al.  A parameter that only one term reaches (a discriminator, an auxiliary head)
      gets that term's plain gradient.
    * ``reduction="sum"`` (default) adds the projected gradients, as Yu et al.; ``"mean"``
      averages them on the shared parameters, which is what the widely used PyTorch
      reimplementation always does (its ``"sum"`` branch is unreachable).
    * The random order over the other tasks is drawn from torch's global RNG (deterministic
      under the trainer's seeding), and only with more than two tasks, where it matters.
    * GMP's Table-4 "PCGrad" ablation (strategy ``gmp``, ``ablation="pcgrad"``) is different:
      two tasks (classification, domain), projected per modality encoder.

    Cost: one backward traversal per term.  Logs ``pcgrad/conflicts``: the fraction of
    ordered task pairs whose original gradients conflict (negative dot product).
    """

    name = "pcgrad"

    def __init__(self, reduction: str = "sum"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"PCGrad reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def backward(self, terms, model, params):
        if not terms:
            raise ValueError("PCGrad needs at least one term (objective)")
        losses = [t.loss if t.loss.dtype == torch.float64 else t.loss.float() for t in terms]
        g = [grads_of(loss, params, retain=i < len(losses) - 1) for i, loss in enumerate(losses)]
        n_tasks = len(g)
        shared = [j for j in range(len(params)) if sum(gi[j] is not None for gi in g) >= 2]
        single = [j for j in range(len(params)) if j not in set(shared)]
        write_grads([params[j] for j in single], add_grads(*[[gi[j] for j in single] for gi in g]))
        if not shared:
            return {}
        ps = [params[j] for j in shared]
        flats = [flat_grads([gi[j] for j in shared], ps, ps[0].device) for gi in g]
        order = None
        if n_tasks > 2:
            order = []
            for i in range(n_tasks):
                others = [j for j in range(n_tasks) if j != i]
                order.append([others[k] for k in torch.randperm(len(others)).tolist()])
        proj = pcgrad_project(flats, order)
        merged = torch.stack(proj).sum(0)
        if self.reduction == "mean":
            merged = merged / n_tasks
        views = merged.split([p.numel() for p in ps])
        write_grads(ps, [v.view_as(p) for v, p in zip(views, ps)])
        conflicts = [torch.dot(flats[i], flats[j]) < 0 for i in range(n_tasks) for j in range(n_tasks) if i != j]
        if not conflicts:
            return {}
        return {"pcgrad/conflicts": torch.stack(conflicts).float().mean().detach()}
