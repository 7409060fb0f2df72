"""BALGRAD (Kwon, Kim, Lee, Choi & Kim, NAACL 2025, "See-Saw Modality Balance"; arXiv 2503.13834).

What the sources we could read give (abstract, Figure 3 and its caption; no released code
found): the fused classifier is trained with the target-task CE gradient g_T; each encoder
gets g_T, the gradient of its own unimodal CE (g_T^m) and that of a KL divergence between the
modalities' predictions (g_kl^m); *inter-modality gradient reweighting* scales g_kl^m "based on
each modality's contribution" / "learning status" into g_kl; *inter-task gradient projection*
replaces g_T by its projection on the normal plane of g_kl when they conflict (g_T . g_kl < 0).

The weighting formula was not in those sources.  Our reading, used here and labelled as such:
the learning status of modality m is its unimodal CE loss L_m (detached) and
``w_m = M L_m / sum_j L_j`` -- the worse-learnt modality (higher loss) takes the larger share of
the KL gradient (it is pulled towards the other modality's predictions), the weights average 1.
``weighting="none"`` sets every w_m = 1 (projection only).

Terms: the fused ``cls`` terms give g_T; the term named ``uni_term`` (default
``unimodal_heads``, weight 1) gives g_T^m and L_m (its logs ``uni_ce_<m>``); the term named
``kl_term`` (``modality_kl``) gives g_kl^m.  The projection uses one vector over all encoders'
parameters (g_kl is zero on the heads, so the heads' part of g_T is unchanged).  Heads get the
plain sum of all gradients; other terms (``+mer``) reach every parameter unchanged.
"""
from __future__ import annotations

import torch

from ._grads import add_grads, flat_grads, grads_of, split_flat, total_loss, write_grads
from .base import STRATEGIES, Strategy
from ..hparams import HParam

# Hyperparameters of this part, declared once (the method registry, mmdg.methods, lists them).
BALGRAD_WEIGHTING = HParam("balgrad_weighting", "loss", "BALGRAD: how the KL encoder gradients are reweighted")

WEIGHTINGS = ("loss", "none")


def balgrad_weights(losses: torch.Tensor) -> torch.Tensor:
    """w_m = M L_m / sum_j L_j (ones if the losses sum to 0)."""
    total = losses.sum()
    return torch.where(total > 0, losses.numel() * losses / total.clamp_min(torch.finfo(losses.dtype).tiny),
                       torch.ones_like(losses))


def project_task(g_t: torch.Tensor, g_kl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g_T^perp, dot): g_T minus its component along g_kl if g_T . g_kl < 0, else g_T."""
    dot, nk = torch.dot(g_t, g_kl), torch.dot(g_kl, g_kl)
    coef = torch.where((dot < 0) & (nk > 0), dot / nk.clamp_min(torch.finfo(nk.dtype).tiny), torch.zeros_like(dot))
    return g_t - coef * g_kl, dot


@STRATEGIES.register("balgrad")
class BalGrad(Strategy):
    name = "balgrad"

    def __init__(self, uni_term: str = "unimodal_heads", kl_term: str = "modality_kl", weighting: str = BALGRAD_WEIGHTING.default):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"BALGRAD: hyperparameter 'balgrad_weighting' must be one of {list(WEIGHTINGS)}, "
                             f"got {weighting!r}")
        self.uni_term, self.kl_term, self.weighting = uni_term, kl_term, weighting

    def split_terms(self, terms):
        names = [f"{t.name} ({t.kind})" for t in terms]
        uni = [t for t in terms if t.name == self.uni_term]
        kl = [t for t in terms if t.name == self.kl_term]
        task = [t for t in terms if t.kind == "cls" and t.name not in (self.uni_term, self.kl_term)]
        rest = [t for t in terms if not any(t is u for u in uni + kl + task)]
        if not uni or not kl or not task:
            raise ValueError(f"BALGRAD needs a fused 'cls' term, {self.uni_term!r} and {self.kl_term!r}; this "
                             f"method's terms are {names}")
        return task, uni, kl, rest

    def backward(self, terms, model, params):
        task, uni, kl, rest = self.split_terms(terms)
        enc, enc_flat, allp = split_flat(model, params)
        mods = list(enc)
        l_rest = total_loss(rest, allow_empty=True)
        g_t = grads_of(total_loss(task, allow_empty=True), allp, retain=True)
        g_u = grads_of(total_loss(uni, allow_empty=True), allp, retain=True)
        g_k = grads_of(total_loss(kl, allow_empty=True), allp, retain=l_rest is not None)
        g_r = grads_of(l_rest, allp, retain=False)
        n = len(enc_flat)
        write_grads(allp[n:], add_grads(g_t[n:], g_u[n:], g_k[n:], g_r[n:]))
        if not enc_flat:
            return {}
        dev = enc_flat[0].device
        losses = torch.stack([uni[0].logs[f"uni_ce_{m}"].detach().to(dev) for m in mods]).double()
        w = balgrad_weights(losses) if self.weighting == "loss" else torch.ones_like(losses)
        # g_kl: the reweighted KL gradients of all encoders, as one vector
        sizes = [sum(p.numel() for p in enc[m]) for m in mods]
        kl_vec = flat_grads(g_k[:n], enc_flat, dev)
        scale = torch.cat([torch.full((s,), float(w[i]), device=dev, dtype=kl_vec.dtype) for i, s in enumerate(sizes)])
        g_kl = kl_vec * scale
        t_vec = flat_grads(g_t[:n], enc_flat, dev)
        t_perp, dot = project_task(t_vec, g_kl)
        new = t_perp + g_kl
        views = [v.view_as(p) for v, p in zip(new.split([p.numel() for p in enc_flat]), enc_flat)]
        write_grads(enc_flat, add_grads(views, g_u[:n], g_r[:n]))
        denom = (t_vec.norm() * g_kl.norm()).clamp_min(1e-30)
        logs = {f"balgrad/w_{m}": w[i].float() for i, m in enumerate(mods)}
        logs["balgrad/cos"] = (dot / denom).float().detach()
        logs["balgrad/conflict"] = (dot < 0).float()
        return logs
