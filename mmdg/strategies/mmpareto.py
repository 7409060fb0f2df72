"""MMPareto (Wei & Hu, ICML 2024): Pareto integration of multimodal and unimodal gradients.

Per modality encoder, with g_mm the gradient of the multimodal loss and g_uni that of the
modality's unimodal loss: if cos(g_mm, g_uni) > 0 the weights are 1/2, 1/2, otherwise the
two-task min-norm (MGDA) weights; the new gradient is ``2 (w1 g_mm + w2 g_uni)``, per
parameter tensor rescaled up to the norm of the plain summed gradient when it is smaller,
then multiplied by gamma.
"""
from __future__ import annotations

import torch

from ..hparams import HParam, Uniform
from ..registry import check_number
from ._grads import add_grads, flat_grads, grads_of, per_modality, split_flat, total_loss, write_grads
from .base import STRATEGIES, Strategy

# Hyperparameters of this part, declared once (the method registry, mmdg.methods, lists them).
MMPARETO_GAMMA = HParam("mmpareto_gamma", 1.5, "MMPareto: gradient scale on conflict", Uniform(1.0, 2.0), low=0)


def min_norm_weight(v1v1: torch.Tensor, v1v2: torch.Tensor, v2v2: torch.Tensor) -> torch.Tensor:
    """Weight c of x1 minimising |c x1 + (1 - c) x2|^2 over c in [0, 1], from the Gram scalars.

    Closed form c = (|x2|^2 - x1.x2) / |x1 - x2|^2.  At the ends of the interval it returns
    0.999 / 0.001, as the reference MGDA solver does (so neither task is dropped entirely).
    """
    denom = (v1v1 + v2v2 - 2 * v1v2).clamp_min(torch.finfo(v1v1.dtype).tiny)
    inner = (v2v2 - v1v2) / denom
    return torch.where(v1v2 >= v1v1, torch.full_like(inner, 0.999),
                       torch.where(v1v2 >= v2v2, torch.full_like(inner, 0.001), inner))


def pareto_weights(g_mm: torch.Tensor, g_uni: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w_mm, w_uni, cos) for two 1-D gradients: 1/2 each if cos > 0, else the min-norm weights."""
    v11, v12, v22 = torch.dot(g_mm, g_mm), torch.dot(g_mm, g_uni), torch.dot(g_uni, g_uni)
    cos = v12 / (v11.sqrt() * v22.sqrt()).clamp_min(1e-8)
    w = torch.where(cos > 0, torch.full_like(v11, 0.5), min_norm_weight(v11, v12, v22))
    return w, 1 - w, cos


def pareto_update(g_mm: torch.Tensor, g_uni: torch.Tensor, w_mm, w_uni, gamma: float) -> torch.Tensor:
    """One parameter tensor: ``gamma * s * 2 (w_mm g_mm + w_uni g_uni)`` with
    ``s = max(1, |g_mm + g_uni| / |new|)`` (s = 1 if the new gradient is zero)."""
    new = 2 * (w_mm * g_mm + w_uni * g_uni)
    norm_new, norm_sum = new.norm(), (g_mm + g_uni).norm()
    s = torch.where((norm_new > 0) & (norm_sum > norm_new), norm_sum / norm_new.clamp_min(1e-30),
                    torch.ones_like(norm_new))
    return gamma * s * new


@STRATEGIES.register("mmpareto")
class MMPareto(Strategy):
    """MMPareto as a gradient strategy.

    * Terms: the unimodal loss is the term(s) named in ``uni_terms`` (default
      ``unimodal_heads``, per-modality auxiliary heads as in the reference, or
      ``unimodal_ce``); the multimodal loss is every other ``cls`` term (the fused CE).
      For encoder m, g_uni is the unimodal term's gradient on theta^m, which is modality m's
      own unimodal CE (the other modalities' heads do not reach theta^m; with ``unimodal_ce``,
      a mean, it carries the factor 1/M).
    * Cosine and min-norm weights use one flattened vector per encoder; the norm floor and
      gamma act per parameter tensor, as in the reference.
    * Only encoders are changed.  Heads (classifier, auxiliary heads, discriminator) get the
      plain summed gradient of all terms, as in the reference.  Terms of kind ``dom`` or
      ``other`` (e.g. ``+mer``) are added unmodified to the encoders' new gradient; the
      reference has no such terms, and the norm floor uses g_mm + g_uni only.
    * The reference's MGDA solver is replaced by its closed form for two tasks
      (:func:`min_norm_weight`), which is what the solver returns for two vectors.

    Cost: one backward traversal per group: multimodal, unimodal, and the rest if the method
    has other terms (the reference takes four backward passes).  Logs ``mmpareto/cos_<m>``
    and ``mmpareto/w_mm_<m>``.
    """

    name = "mmpareto"

    def __init__(self, gamma: float = MMPARETO_GAMMA.default, uni_terms: tuple[str, ...] | list[str] = ("unimodal_heads",)):
        self.gamma = check_number("MMPareto", "gamma", gamma, strict=True)
        if isinstance(uni_terms, str) or not uni_terms or not all(isinstance(n, str) for n in uni_terms):
            raise ValueError(f"MMPareto uni_terms must be a non-empty list of term names, got {uni_terms!r}")
        self.uni_terms = tuple(uni_terms)

    def split_terms(self, terms):
        uni = [t for t in terms if t.name in self.uni_terms]
        mm = [t for t in terms if t.kind == "cls" and t.name not in self.uni_terms]
        rest = [t for t in terms if t.kind != "cls" and t.name not in self.uni_terms]
        names = [f"{t.name} ({t.kind})" for t in terms]
        if not uni:
            raise ValueError(f"MMPareto needs a unimodal term named one of {list(self.uni_terms)}; this "
                             f"method's terms are {names}")
        if not mm:
            raise ValueError(f"MMPareto needs a multimodal 'cls' term (e.g. 'ce'); this method's terms are {names}")
        return mm, uni, rest

    def backward(self, terms, model, params):
        mm, uni, rest = self.split_terms(terms)
        enc, enc_flat, allp = split_flat(model, params)
        mods = list(enc)
        l_rest = total_loss(rest, allow_empty=True)
        g_mm = grads_of(total_loss(mm, allow_empty=True), allp, retain=True)
        g_uni = grads_of(total_loss(uni, allow_empty=True), allp, retain=l_rest is not None)
        g_rest = grads_of(l_rest, allp, retain=False)
        n = len(enc_flat)
        write_grads(allp[n:], add_grads(g_mm[n:], g_uni[n:], g_rest[n:]))
        logs = {}
        for _, m, ps, sl in per_modality(enc):
            if not ps:
                continue
            a = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_mm[sl], ps)]
            b = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_uni[sl], ps)]
            w_mm, w_uni, cos = pareto_weights(flat_grads(a, ps, ps[0].device), flat_grads(b, ps, ps[0].device))
            new = [pareto_update(x, y, w_mm, w_uni, self.gamma) for x, y in zip(a, b)]
            write_grads(ps, add_grads(new, g_rest[sl]))
            logs[f"mmpareto/cos_{m}"] = cos.detach()
            logs[f"mmpareto/w_mm_{m}"] = w_mm.detach()
        return logs
