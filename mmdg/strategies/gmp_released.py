"""GMP as released by its first author: ``Action recognition/train_GMP.py`` of MMDG-Bench
(``lihongzhao99/MMDG_Benchmark``, arXiv 2605.06643), ``gmp_variant="released"``.

One step of the released code, as implemented here:

1. theta^m = the trainable encoder parameters of modality m *and* its unimodal classification
   head (the released ``video_modal_params`` are layer4 of both SlowFast paths plus ``cls_head``;
   here: the trainable encoder parameters plus modality m's head of the ``unimodal_heads``
   objective).
2. q^m, c^m: true-class / true-domain softmax confidences of modality m's own unimodal head
   and of the shared domain discriminator on modality m's projection (objective
   ``domain_adv_released``); rho, sigma and k = 1 - tanh(alpha_k rho) (rho > 1), p = 1 -
   tanh(alpha_p sigma) (sigma > 1) as in the paper (literal form, Eq. 8-10; the batch means of
   the released code give the same ratios as our sums).
3. g_c^m = d(3.0 * CE_m^uni)/d theta^m and g_d^m = d(0.5 * CE_m^dom)/d theta^m (reversed and
   scaled by 0.3 in the GRL), taken separately, scaled by k and p.
4. If g_c . g_d < 0: rho >= sigma projects g_c on the normal plane of g_d, otherwise g_d on that
   of g_c (the stronger task is projected, PCGrad-style; denominators + 1e-12 as released).  On
   head entries g_d does not exist: projecting g_d leaves it absent there (released), so the
   head keeps k g_c.
5. The ordinary backward of every other term (the fused classifier's CE, and e.g. ``+mer``)
   reaches all parameters, encoders included, unmodulated; G^m = g_c + g_d is added on top.

How it differs from the paper's GMP (``gmp_variant="paper"``, :class:`~mmdg.strategies.gmp.GMP`):
the modulated classification gradient is that of auxiliary unimodal heads (weight 3), not of
the fused classifier, whose gradient reaches the encoders unmodulated; the domain loss is one
discriminator shared by the modalities on per-modality 512-d projections (weight 0.5, GRL 0.3,
an effective lambda of 0.15), not one discriminator on the fused features; the unimodal heads
are modulated with their encoder.  And **the released discriminator is never trained**: the
domain losses are only differentiated with respect to theta^m, and ``backward()`` runs on the
fused CE alone, so the projections and the discriminator (although in the optimizer) never
receive a gradient and stay at their random initialisation (their BatchNorm statistics still
update); c^m is therefore measured by a fixed random network.  ``train_disc=False`` reproduces
this; ``train_disc=True`` gives them the plain gradient of the domain loss (the fix).
"""
from __future__ import annotations

import torch

from ._grads import flat_grads, grads_of, per_modality, total_loss, write_grads
from .base import STRATEGIES, Strategy
from .gmp import check_options
from .ratios import discrepancy_ratios, suppression

_EPS = 1e-12


def released_combine(gc: torch.Tensor, gd: torch.Tensor, rho: torch.Tensor, sigma: torch.Tensor,
                     enc_mask: torch.Tensor) -> tuple[torch.Tensor, str]:
    """One modality's G = g_c + g_d after the released conflict rule (modulated 1-D inputs).

    ``enc_mask`` marks the entries where g_d exists (encoder parameters); elsewhere g_d is 0
    and stays 0.
    """
    dot = torch.dot(gc, gd)
    if not dot < 0:
        return gc + gd, "none"
    if bool(rho >= sigma):
        return gc - dot / (torch.dot(gd, gd) + _EPS) * gd + gd, "project_cls"
    gd = torch.where(enc_mask, gd - dot / (torch.dot(gc, gc) + _EPS) * gc, torch.zeros_like(gd))
    return gc + gd, "project_dom"


@STRATEGIES.register("gmp_released")
class GMPReleased(Strategy):
    """See the module docstring.  Logs ``gmp/{rho,sigma,k,p,branch}_<m>`` every ``log_every`` steps."""

    name = "gmp_released"

    def __init__(self, alpha_k: float = 0.5, alpha_p: float = 0.1, train_disc: bool = False,
                 uni_term: str = "unimodal_heads", dom_term: str = "domain_adv_released", log_every: int = 0):
        check_options(alpha_k, alpha_p)
        if not isinstance(train_disc, bool):
            raise ValueError(f"GMP (released): hyperparameter 'released_train_disc' must be a bool, got {train_disc!r}")
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 0:
            raise ValueError(f"GMP (released): log_every must be an int >= 0, got {log_every!r}")
        self.alpha_k, self.alpha_p, self.train_disc = float(alpha_k), float(alpha_p), train_disc
        self.uni_term, self.dom_term, self.log_every = uni_term, dom_term, log_every
        self._uni: dict[str, list] = {}
        self._dom: list = []
        self._step = 0

    def bind(self, model, objectives) -> None:
        names = [o.name for o in objectives]
        uni = [o for o in objectives if o.name == self.uni_term]
        dom = [o for o in objectives if o.name == self.dom_term]
        if not uni or not dom:
            raise ValueError(f"gmp_variant='released' needs the {self.uni_term!r} and {self.dom_term!r} objectives; "
                             f"this method's objectives are {names}")
        self._uni = {m: [p for p in uni[0].heads[m].parameters() if p.requires_grad] for m in model.modalities}
        self._dom = [p for p in dom[0].parameters() if p.requires_grad]

    def backward(self, terms, model, params):
        cls = [t for t in terms if t.name == self.uni_term]
        dom = [t for t in terms if t.name == self.dom_term]
        if not cls or not dom:
            raise ValueError(f"gmp_variant='released' needs the terms {self.uni_term!r} and {self.dom_term!r}; "
                             f"got {[t.name for t in terms]}")
        rest = [t for t in terms if t.name not in (self.uni_term, self.dom_term)]
        enc = model.encoder_parameters()
        mods = list(enc)
        theta = {m: enc[m] + self._uni[m] for m in mods}
        q, c = cls[0].confidence, dom[0].confidence
        rho, sigma = discrepancy_ratios(torch.stack([q[m].float().sum() for m in mods]),
                                        torch.stack([c[m].float().sum() for m in mods]))
        k, p = suppression(rho, self.alpha_k), suppression(sigma, self.alpha_p)
        flat = [x for m in mods for x in theta[m]]
        l_rest = total_loss(rest, allow_empty=True)
        g_c = grads_of(total_loss(cls, allow_empty=True), flat, retain=True)
        g_d = grads_of(total_loss(dom, allow_empty=True), flat + (self._dom if self.train_disc else []), retain=l_rest is not None)
        g_r = grads_of(l_rest, params, retain=False)
        write_grads(params, g_r)                            # the ordinary backward of the other terms
        if self.train_disc:
            write_grads(self._dom, g_d[len(flat):])
        branches = []
        for i, m, ps, sl in per_modality(theta):
            if not ps:
                branches.append(0)
                continue
            dev = ps[0].device
            gc = k[i].to(dev) * flat_grads(g_c[sl], ps, dev)
            gd = p[i].to(dev) * flat_grads(g_d[sl], ps, dev)
            mask = torch.cat([torch.full((x.numel(),), j < len(enc[m]), device=dev) for j, x in enumerate(ps)])
            G, branch = released_combine(gc, gd, rho[i], sigma[i], mask)
            write_grads(ps, [v.view_as(x) for v, x in zip(G.split([x.numel() for x in ps]), ps)])
            branches.append(["none", "project_cls", "project_dom"].index(branch))
        self._step += 1
        if not self.log_every or (self._step - 1) % self.log_every:
            return {}
        logs = {}
        for i, m in enumerate(mods):
            logs.update({f"gmp/rho_{m}": rho[i], f"gmp/sigma_{m}": sigma[i], f"gmp/k_{m}": k[i],
                         f"gmp/p_{m}": p[i], f"gmp/branch_{m}": torch.tensor(float(branches[i]))})
        return logs
