"""GMP: Gradient Modulation and Projection (Li et al., AAAI 2026).

Notation (GMP paper, Eqs. 2-15).  For every modality ``m`` with trainable encoder
parameters theta^m, and the two losses of the base objective L = L_c + lambda L_d:

* ``g_c^m = dL_c/dtheta^m`` and ``g_d^m = -lambda dL_d/dtheta^m`` (Eq. 2; the minus
  sign comes from the gradient-reversal layer, so the autograd gradient of the
  ``dom`` term with respect to the encoder already *is* g_d^m);
* semantic confidence q_i^m (Eq. 6) and domain confidence c_i^m (Eq. 7): the softmax
  probability of the true class / true source domain computed from modality m's share
  of the classifier / discriminator logits (constants: no gradient flows through them);
* discrepancy ratios over the mini-batch (Eq. 8), note the inverted direction of sigma::

      rho^m   = sum_i q_i^m / sum_i q_i^{other},
      sigma^m = sum_i c_i^{other} / sum_i c_i^m;

* IGDM coefficients (Eqs. 9-10), the *literal* formula (no "-1", as the paper and
  the authors' code write it; ``ogm_form=True`` gives OGM-GE's 1 - tanh(alpha (r - 1)))::

      k^m = 1 - tanh(alpha_k rho^m)   if rho^m > 1   else 1,
      p^m = 1 - tanh(alpha_p sigma^m) if sigma^m > 1 else 1;

* modulated gradients (Eq. 11): ``gh_c = k g_c``, ``gh_d = p g_d``;
* CAGP (Eqs. 12-15), only when ``gh_c . gh_d < 0``: with Gamma^m = rho^m / sigma^m,
  Gamma > 1 (classification is the stronger task) projects the classification gradient
  onto the normal plane of the domain gradient,
  ``gh_c <- gh_c - (gh_c.gh_d / |gh_d|^2) gh_d``; Gamma < 1 projects the domain gradient
  onto the normal plane of the classification gradient;
* the encoder update is ``G^m = gh_c + gh_d`` (Eqs. 13/15).

Readings and deviations (GMP.md §6), stated once here:

* Tie Gamma == 1 (unspecified in the paper) projects the classification gradient, as the
  authors' code does (``rho >= sigma``).  Ties only occur with identical confidence sums
  (e.g. a single modality, where rho = sigma = 1).
* Inner products and norms are over one flattened vector per modality (all trainable
  parameters of that encoder), as in the paper's theta^m and the authors' code.
* More than two modalities (the paper defines two): "other" is the *mean* of the other
  modalities' confidence sums (the authors' generalisation).  A single modality has
  rho = sigma = 1.
* Ratio denominators are clamped at 1e-12 (the authors add 1e-6); coefficients are
  clamped to [0, 1] as in the authors' code (a no-op for alpha >= 0).
* A projection whose denominator is zero is skipped (it cannot be reached in exact
  arithmetic: a negative dot product needs two non-zero vectors), so zero gradients
  never produce NaN.
* Table 4 ablations (:data:`ABLATIONS`).  ``modulate="unified"`` ("Unified Modulation: one
  coefficient for both gradients"): the paper gives no formula; we read it as the
  semantic coefficient k^m (from rho^m and alpha_k, i.e. OGM-GE applied to the whole
  gradient) scaling both g_c and g_d.  ``project="pcgrad"``: with two tasks PCGrad
  projects each gradient onto the normal plane of the *other original* (modulated)
  gradient, so G = g~_c + g~_d with both projected.  ``project="reverse"`` runs the
  opposite CAGP branch (protects the stronger task); ``"cls"`` / ``"dom"`` always project
  that gradient on conflict.
* Only the encoders' gradients are modulated; every other trainable parameter
  (classifier, fusion, discriminator, projectors, auxiliary heads) receives the plain
  summed gradient of all terms, so the discriminator minimises lambda L_d (GMP.md §6.9;
  the authors' code never trains its discriminator, which we treat as a bug).
* ``variant="unimodal_heads"`` (:class:`GMP`) is the authors' later code path, not the paper;
  ``variant="released"`` is that code as released (strategy ``gmp_released``, gmp_released.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..models.model import MultimodalModel
from ..objectives.base import Term
from ._grads import accumulate_grad, flat_grads, per_modality, split_params, total_loss
from .base import STRATEGIES, Strategy
from .ratios import discrepancy_ratios, suppression, task_strength
from .ratios import detached_float as _f  # the short name gmp_combine's source (printed in chapter 4) uses

MODULATE = ("decoupled", "unified", "k_only", "p_only", "none")
PROJECT = ("adaptive", "cls", "dom", "pcgrad", "reverse", "none")
VARIANTS = ("paper", "unimodal_heads", "released")   # "released": strategy gmp_released (gmp_released.py)
ENGINES = ("fast", "naive")
BRANCHES = ("none", "project_cls", "project_dom", "project_both")  # index = branch code

#: GMP Table 4 rows as (modulate, project).  The modulation rows are "without CAGP" and the
#: projection rows "without IGDM", as in the paper; "base" switches both off (= the sum strategy).
ABLATIONS: dict[str, tuple[str, str]] = {
    "full": ("decoupled", "adaptive"),       # GMP
    "igdm_only": ("decoupled", "none"),      # IGDM-only (= "Full IGDM")
    "cagp_only": ("none", "adaptive"),       # CAGP-only (= "Full CAGP")
    "unified": ("unified", "none"),          # Unified Modulation: one coefficient for both gradients
    "no_k": ("p_only", "none"),              # w/o k: domain modulation only
    "no_p": ("k_only", "none"),              # w/o p: semantic modulation only
    "proj_cls": ("none", "cls"),             # Fixed Proj-Class: always project g_c on conflict
    "proj_dom": ("none", "dom"),             # Fixed Proj-Domain: always project g_d on conflict
    "pcgrad": ("none", "pcgrad"),            # PCGrad: project both
    "reverse_cagp": ("none", "reverse"),     # Reverse CAGP: protect the stronger task
    "base": ("none", "none"),                # no modulation, no projection: plain sum
}


def ablation_options(name: str) -> dict[str, str]:
    """``{"modulate": ..., "project": ...}`` of a Table 4 row named in :data:`ABLATIONS`."""
    if name not in ABLATIONS:
        raise ValueError(f"GMP ablation {name!r} is not one of {list(ABLATIONS)}")
    modulate, project = ABLATIONS[name]
    return {"modulate": modulate, "project": project}


def _check(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"GMP option {name}={value!r} is not one of {list(choices)}")


def check_options(alpha_k: float, alpha_p: float, modulate: str = "decoupled", project: str = "adaptive",
                  ogm_form: bool = False) -> None:
    for name, a in (("alpha_k", alpha_k), ("alpha_p", alpha_p)):
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a < 0:
            raise ValueError(f"GMP {name} must be a finite number >= 0, got {a!r}")
    _check("modulate", modulate, MODULATE)
    _check("project", project, PROJECT)
    if not isinstance(ogm_form, bool):
        raise ValueError(f"GMP option ogm_form must be a bool, got {ogm_form!r}")


# ----------------------------------------------------------------------------- scalars
def modulation(rho: torch.Tensor, sigma: torch.Tensor, alpha_k: float, alpha_p: float,
               modulate: str = "decoupled", ogm_form: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, p): the coefficients applied to g_c and g_d under each Table 4 modulation option."""
    one = torch.ones_like(rho)
    k = suppression(rho, alpha_k, ogm_form) if modulate in ("decoupled", "unified", "k_only") else one
    if modulate == "decoupled" or modulate == "p_only":
        p = suppression(sigma, alpha_p, ogm_form)
    elif modulate == "unified":
        p = k
    else:
        p = one
    return k, p


# ------------------------------------------------------------------- reference (literal)
def gmp_combine(g_c: dict[str, torch.Tensor], g_d: dict[str, torch.Tensor],
                q: dict[str, torch.Tensor], c: dict[str, torch.Tensor],
                alpha_k: float, alpha_p: float, *, modulate: str = "decoupled", project: str = "adaptive",
                ogm_form: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """GMP's per-modality combination, written literally after the paper (§2.3-2.4).

    ``g_c[m]``, ``g_d[m]``: flattened 1-D gradients of modality m (``g_d`` includes the
    ``-lambda`` of the reversal); ``q[m]``, ``c[m]``: per-sample confidences (N,).
    Returns ``G`` (modality -> combined 1-D gradient) and ``info`` (modality ->
    {rho, sigma, k, p, Gamma, dot (of the modulated gradients), branch}), where
    ``branch`` is one of ``"none"``, ``"project_cls"``, ``"project_dom"`` and
    ``"project_both"`` (PCGrad).  This is the readable reference (used by the naive
    engine); it synchronises with the host on the conflict test.  The strategy's fast
    engine computes the same update from per-modality Gram scalars without host syncs.

    Options (GMP Table 4): ``modulate`` in {"decoupled" (IGDM), "unified" (k^m scales both
    gradients), "k_only" (w/o p), "p_only" (w/o k), "none" (CAGP-only)}; ``project`` in
    {"adaptive" (CAGP), "cls" (always project g_c), "dom" (always project g_d), "pcgrad"
    (both), "reverse" (opposite branch of CAGP), "none" (IGDM-only)}; ``ogm_form``.
    """
    check_options(alpha_k, alpha_p, modulate, project, ogm_form)
    mods = list(g_c)
    if set(g_d) != set(mods):
        raise ValueError(f"g_c has modalities {sorted(g_c)} but g_d has {sorted(g_d)}")
    missing = [m for m in mods if m not in q or m not in c]
    if missing:
        raise KeyError(f"confidences missing for modalities {missing}")
    rho, sigma = discrepancy_ratios(torch.stack([_f(q[m]).sum() for m in mods]),
                                    torch.stack([_f(c[m]).sum() for m in mods]))
    k, p = modulation(rho, sigma, alpha_k, alpha_p, modulate, ogm_form)
    gamma = task_strength(rho, sigma)
    G, info = {}, {}
    for i, m in enumerate(mods):
        gc = k[i].to(g_c[m]) * g_c[m]
        gd = p[i].to(g_d[m]) * g_d[m]
        dot = torch.dot(gc, gd)
        branch = "none"
        if project != "none" and dot < 0:
            cls_stronger = bool(rho[i] >= sigma[i])           # Gamma >= 1
            branch = {"adaptive": "project_cls" if cls_stronger else "project_dom",
                      "reverse": "project_dom" if cls_stronger else "project_cls",
                      "cls": "project_cls", "dom": "project_dom", "pcgrad": "project_both"}[project]
        new_c, new_d = gc, gd
        if branch in ("project_cls", "project_both"):
            nd = torch.dot(gd, gd)
            if nd > 0:
                new_c = gc - (dot / nd) * gd
        if branch in ("project_dom", "project_both"):
            nc = torch.dot(gc, gc)
            if nc > 0:
                new_d = gd - (dot / nc) * gc
        G[m] = new_c + new_d
        info[m] = {"rho": rho[i], "sigma": sigma[i], "k": k[i], "p": p[i], "Gamma": gamma[i],
                   "dot": dot, "branch": branch}
    return G, info


# ------------------------------------------------------------------ vectorised (fast)
def plan(q_sums: torch.Tensor, c_sums: torch.Tensor, dot: torch.Tensor, nc: torch.Tensor, nd: torch.Tensor,
         alpha_k: float, alpha_p: float, modulate: str = "decoupled", project: str = "adaptive",
         ogm_form: bool = False) -> dict[str, torch.Tensor]:
    """The same update for all modalities at once, from Gram scalars of the raw gradients.

    Inputs are (M,) tensors: confidence sums, ``dot = g_c.g_d``, ``nc = |g_c|^2``,
    ``nd = |g_d|^2``.  Every branch of :func:`gmp_combine` is a linear combination
    ``G^m = a^m g_c^m + b^m g_d^m``; this returns ``a``, ``b`` and the diagnostics
    (rho, sigma, k, p, Gamma, dot_hat, branch code indexing :data:`BRANCHES`).
    Branches are chosen with ``torch.where`` on the device (no host sync).
    """
    rho, sigma = discrepancy_ratios(q_sums, c_sums)
    k, p = modulation(rho, sigma, alpha_k, alpha_p, modulate, ogm_form)
    dot_h, nc_h, nd_h = k * p * dot, k * k * nc, p * p * nd
    conflict = dot_h < 0
    cls_stronger = rho >= sigma
    if project == "none":
        proj_c = proj_d = torch.zeros_like(conflict)
    elif project == "cls":
        proj_c, proj_d = conflict, torch.zeros_like(conflict)
    elif project == "dom":
        proj_c, proj_d = torch.zeros_like(conflict), conflict
    elif project == "pcgrad":
        proj_c = proj_d = conflict
    elif project == "adaptive":
        proj_c, proj_d = conflict & cls_stronger, conflict & ~cls_stronger
    else:  # reverse
        proj_c, proj_d = conflict & ~cls_stronger, conflict & cls_stronger
    zero = torch.zeros_like(dot_h)
    # g~_c = gh_c - (dot_h / nd_h) gh_d = k g_c - (dot_h / nd_h) p g_d   (Eq. 12)
    coef_c = torch.where(proj_c & (nd_h > 0), dot_h / nd_h.clamp_min(torch.finfo(nd_h.dtype).tiny), zero)
    # g~_d = gh_d - (dot_h / nc_h) gh_c = p g_d - (dot_h / nc_h) k g_c   (Eq. 14)
    coef_d = torch.where(proj_d & (nc_h > 0), dot_h / nc_h.clamp_min(torch.finfo(nc_h.dtype).tiny), zero)
    a = k - coef_d * k
    b = p - coef_c * p
    branch = proj_c.long() + 2 * proj_d.long()
    return {"rho": rho, "sigma": sigma, "k": k, "p": p, "Gamma": task_strength(rho, sigma), "dot_hat": dot_h,
            "branch": branch, "a": a, "b": b}


# ------------------------------------------------------------------------- strategy
@STRATEGIES.register("gmp")
class GMP(Strategy):
    """GMP as a gradient strategy (plugs into any method that has a ``dom`` term).

    Terms are grouped by kind: the modulated classification loss L_c is the sum of the
    ``cls`` terms selected by ``variant`` / ``cls_terms``; L_d is the sum of the ``dom``
    terms (weighted by lambda, behind gradient reversal); ``other`` terms (and unselected
    ``cls`` terms) reach every parameter unmodulated (GMP.md §6.12).  q comes from the
    first selected ``cls`` term with a confidence, c from the first ``dom`` term with one.

    Only encoder parameters (``model.encoder_parameters()``: theta^m, trainable ones) are
    modulated and projected.  Every other trainable parameter (classifier, fusion,
    discriminator, auxiliary heads, projectors) gets the plain gradient of the summed
    terms, so the discriminator minimises lambda L_d (deviation from the authors' code,
    whose discriminator is never trained).

    Args:
        alpha_k, alpha_p: suppression strengths of Eqs. 9-10 (>= 0; 0 switches one off).
        modulate, project, ogm_form: see :func:`gmp_combine`.
        ablation: a GMP Table 4 row from :data:`ABLATIONS` (e.g. ``"igdm_only"``,
            ``"pcgrad"``); it sets ``modulate`` and ``project``, which must then be left
            at their defaults.
        variant:
          * ``"paper"``: L_c is the fused classifier's CE (all ``cls`` terms), q its
            logit-share confidences (Eqs. 5-6).
          * ``"unimodal_heads"``: the authors' later code (MMDG-Bench ``train_GMP.py``,
            GMP.md §7): per-modality auxiliary heads' CE (objective ``unimodal_heads``,
            weight 3.0 there) gives q and the modulated classification gradient, while the
            fused CE reaches the encoders unmodulated.  Unlike that code, the auxiliary heads
            are treated as heads (plain gradient), and the domain term stays our fused,
            trained discriminator (the authors use a shared, untrained discriminator on
            per-modality projections).
        cls_terms: explicit names of the modulated ``cls`` terms (overrides the variant's
            default: all ``cls`` terms for "paper", ``("unimodal_heads",)`` otherwise).
        engine: ``"fast"`` (default) takes one ``autograd.grad`` of L_c and one of L_d over
            all trainable parameters (the floor: two backward traversals of the graph above
            the frozen trunk, plus one for unmodulated terms if the method has any), reduces
            each modality to three Gram scalars (g_c.g_d, |g_c|^2, |g_d|^2), decides the
            branches on the device (no host sync) and writes ``G^m = a g_c + b g_d`` in place
            in the flat buffers.  ``"naive"`` follows the paper's pseudocode: one
            ``autograd.grad`` per modality and loss, then :func:`gmp_combine`.  Both give the
            same gradients (up to float rounding).
        log_every: > 0 returns detached diagnostics every that many steps (keys
            ``gmp/<stat>_<modality>``: rho, sigma, k, p, Gamma, ``cos`` of the raw (g_c, g_d),
            ``norm_c`` / ``norm_d`` of the raw gradients, ``norm_G`` of the combined GMP
            gradient (without unmodulated terms), ``dot_hat`` (modulated dot product),
            ``conflict`` (1 if dot_hat < 0) and ``branch`` (index into :data:`BRANCHES`)).
            The trainer averages them per epoch over the steps that logged them and, with
            ``RunConfig(trace=True)``, keeps them per step.  0 (default) computes nothing.
    """

    name = "gmp"

    def __init__(self, alpha_k: float = 0.5, alpha_p: float = 0.5, modulate: str = "decoupled",
                 project: str = "adaptive", ogm_form: bool = False, variant: str = "paper",
                 cls_terms: tuple[str, ...] | list[str] | None = None, engine: str = "fast",
                 log_every: int = 0, ablation: str | None = None):
        if ablation:
            if (modulate, project) != ("decoupled", "adaptive"):
                raise ValueError(f"GMP ablation={ablation!r} sets modulate and project; leave them at their "
                                 f"defaults (got modulate={modulate!r}, project={project!r})")
            opts = ablation_options(ablation)
            modulate, project = opts["modulate"], opts["project"]
        check_options(alpha_k, alpha_p, modulate, project, ogm_form)
        _check("variant", variant, VARIANTS)
        if variant == "released":
            raise ValueError("GMP variant 'released' is its own strategy, 'gmp_released' (the gmp plugin picks it)")
        _check("engine", engine, ENGINES)
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 0:
            raise ValueError(f"GMP log_every must be an int >= 0, got {log_every!r}")
        if cls_terms is not None and (isinstance(cls_terms, str) or not all(isinstance(n, str) for n in cls_terms)):
            raise ValueError(f"GMP cls_terms must be a list of term names, got {cls_terms!r}")
        self.alpha_k, self.alpha_p = float(alpha_k), float(alpha_p)
        self.modulate, self.project, self.ogm_form = modulate, project, ogm_form
        self.ablation = ablation or None
        self.variant, self.engine, self.log_every = variant, engine, log_every
        if cls_terms is None:
            cls_terms = None if variant == "paper" else ("unimodal_heads",)
        self.cls_terms = None if cls_terms is None else tuple(cls_terms)
        self._step = 0

    @property
    def options(self) -> dict:
        return {"modulate": self.modulate, "project": self.project, "ogm_form": self.ogm_form}

    # -- term grouping -------------------------------------------------------------
    def split_terms(self, terms: list[Term]):
        cls = [t for t in terms if t.kind == "cls" and (self.cls_terms is None or t.name in self.cls_terms)]
        dom = [t for t in terms if t.kind == "dom"]
        rest = [t for t in terms if not any(t is u for u in cls + dom)]
        names = [f"{t.name} ({t.kind})" for t in terms]
        if not dom:
            raise ValueError("GMP needs a domain term (kind 'dom', e.g. the 'domain_adv' objective) to "
                             f"decouple; this method's terms are {names}. Use the 'gmp' plugin, which "
                             "adds domain_adv.")
        if not cls:
            want = "a 'cls' term" if self.cls_terms is None else f"'cls' term(s) named {list(self.cls_terms)}"
            raise ValueError(f"GMP (variant {self.variant!r}) needs {want}; this method's terms are {names}")
        q = next((t.confidence for t in cls if t.confidence), None)
        c = next((t.confidence for t in dom if t.confidence), None)
        if q is None or c is None:
            raise ValueError("GMP needs per-modality confidences from its cls and dom terms "
                             "(Term.confidence); got none for " + ("cls" if q is None else "dom"))
        return cls, dom, rest, q, c

    # -- main ----------------------------------------------------------------------
    def backward(self, terms: list[Term], model: MultimodalModel,
                 params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
        cls, dom, rest, q, c = self.split_terms(terms)
        enc, heads = split_params(model, params)
        mods = list(enc)
        missing = [m for m in mods if m not in q or m not in c]
        if missing:
            raise KeyError(f"GMP: no confidence for modalities {missing} (q has {sorted(q)}, c has {sorted(c)})")
        losses = (total_loss(cls, allow_empty=True), total_loss(dom, allow_empty=True), total_loss(rest, allow_empty=True))
        self._step += 1
        want_logs = bool(self.log_every) and (self._step - 1) % self.log_every == 0
        run = self._fast if self.engine == "fast" else self._naive
        try:
            stats = run(losses, enc, heads, q, c, want_logs)
        except RuntimeError as e:
            if "donated buffer" not in str(e):
                raise
            raise RuntimeError("GMP back-propagates through the graph twice (retain_graph=True), which "
                               "torch.compile's donated buffers forbid; set "
                               "torch._functorch.config.donated_buffer = False before compiling") from e
        if not want_logs:
            return {}
        return {f"gmp/{k}_{m}": v[i].detach() for k, v in stats.items() for i, m in enumerate(mods)}

    def _fast(self, losses, enc, heads, q, c, want_logs: bool) -> dict[str, torch.Tensor]:
        l_c, l_d, l_o = losses
        mods = list(enc)
        enc_flat = [p for m in mods for p in enc[m]]
        allp = enc_flat + heads
        dev = enc_flat[0].device if enc_flat else l_c.device
        g_c = torch.autograd.grad(l_c, allp, retain_graph=True, allow_unused=True)
        g_d = torch.autograd.grad(l_d, allp, retain_graph=l_o is not None, allow_unused=True)
        g_o = torch.autograd.grad(l_o, allp, allow_unused=True) if l_o is not None else (None,) * len(allp)
        # one flat vector per modality and loss, and its Gram scalars
        flats_c, flats_d, grams = [], [], []
        for _, m, ps, sl in per_modality(enc):
            fc, fd = flat_grads(g_c[sl], ps, dev), flat_grads(g_d[sl], ps, dev)
            flats_c.append(fc)
            flats_d.append(fd)
            grams.append(torch.stack([torch.dot(fc, fd), torch.dot(fc, fc), torch.dot(fd, fd)]).to(dev))
        gram = torch.stack(grams)                                    # (M, 3): dot, |g_c|^2, |g_d|^2
        sums_q = torch.stack([_f(q[m]).sum().to(dev) for m in mods])
        sums_c = torch.stack([_f(c[m]).sum().to(dev) for m in mods])
        pl = plan(sums_q, sums_c, gram[:, 0], gram[:, 1], gram[:, 2],
                  self.alpha_k, self.alpha_p, **self.options)
        a, b = pl["a"].to(gram.dtype), pl["b"].to(gram.dtype)
        for i, m, ps, sl in per_modality(enc):
            go = g_o[sl]
            if not ps:
                continue
            # G^m = a g_c + b g_d, in place in the flat buffers (no copy per parameter)
            G = flats_c[i].mul_(a[i]).add_(flats_d[i].mul_(b[i]))
            views = [v.view_as(p) for v, p in zip(G.split([p.numel() for p in ps]), ps)]
            for p, v, g in zip(ps, views, go):
                accumulate_grad(p, v if g is None else v.add_(g))
        for j, p in enumerate(heads, start=len(enc_flat)):
            parts = [g for g in (g_c[j], g_d[j], g_o[j]) if g is not None]
            if parts:
                accumulate_grad(p, parts[0] if len(parts) == 1 else torch.stack(parts).sum(0))
        if not want_logs:
            return {}
        dot, nc, nd = gram.unbind(1)
        norm_g2 = a * a * nc + b * b * nd + 2 * a * b * dot
        return self._stats(pl, dot, nc, nd, norm_g2.clamp_min(0).sqrt())

    def _naive(self, losses, enc, heads, q, c, want_logs: bool) -> dict[str, torch.Tensor]:
        l_c, l_d, l_o = losses
        mods = list(enc)
        enc_flat = [p for m in mods for p in enc[m]]
        dev = enc_flat[0].device if enc_flat else l_c.device
        g_c, g_d = {}, {}
        for m in mods:                                # Eq. 2, one autograd call per modality and loss
            ps = enc[m]
            gc = torch.autograd.grad(l_c, ps, retain_graph=True, allow_unused=True) if ps else ()
            gd = torch.autograd.grad(l_d, ps, retain_graph=True, allow_unused=True) if ps else ()
            g_c[m], g_d[m] = flat_grads(gc, ps, dev), flat_grads(gd, ps, dev)
        G, info = gmp_combine(g_c, g_d, q, c, self.alpha_k, self.alpha_p, **self.options)
        total = l_c + l_d + (l_o if l_o is not None else 0.0)
        if heads:                                     # heads: plain gradient of all terms
            for p, g in zip(heads, torch.autograd.grad(total, heads, retain_graph=True, allow_unused=True)):
                if g is not None:
                    accumulate_grad(p, g)
        g_o = torch.autograd.grad(l_o, enc_flat, allow_unused=True) if l_o is not None and enc_flat else None
        j = 0
        for m in mods:
            off = 0
            for p in enc[m]:
                g = G[m][off:off + p.numel()].view_as(p).clone()
                off += p.numel()
                if g_o is not None and g_o[j] is not None:
                    g = g + g_o[j]
                j += 1
                accumulate_grad(p, g)
        if not want_logs:
            return {}
        dot = torch.stack([torch.dot(g_c[m], g_d[m]) for m in mods])
        nc = torch.stack([torch.dot(g_c[m], g_c[m]) for m in mods])
        nd = torch.stack([torch.dot(g_d[m], g_d[m]) for m in mods])
        pl = {key: torch.stack([info[m][key].to(dot) for m in mods]) for key in ("rho", "sigma", "k", "p", "Gamma")}
        pl["dot_hat"] = torch.stack([info[m]["dot"] for m in mods])
        pl["branch"] = torch.tensor([BRANCHES.index(info[m]["branch"]) for m in mods])
        return self._stats(pl, dot, nc, nd, torch.stack([G[m].norm() for m in mods]))

    @staticmethod
    def _stats(pl, dot, nc, nd, norm_g) -> dict[str, torch.Tensor]:
        norm_c, norm_d = nc.sqrt(), nd.sqrt()
        denom = norm_c * norm_d
        cos = torch.where(denom > 0, dot / denom.clamp_min(torch.finfo(denom.dtype).tiny), torch.zeros_like(dot))
        return {"rho": pl["rho"], "sigma": pl["sigma"], "k": pl["k"], "p": pl["p"], "Gamma": pl["Gamma"],
                "cos": cos, "norm_c": norm_c, "norm_d": norm_d, "norm_G": norm_g, "dot_hat": pl["dot_hat"],
                "conflict": (pl["dot_hat"] < 0).to(dot.dtype), "branch": pl["branch"].to(dot.dtype)}
