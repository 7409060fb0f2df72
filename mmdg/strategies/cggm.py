"""CGGM: Classifier-Guided Gradient Modulation (Guo, Jin, Chen & Zhao, NeurIPS 2024).

Written after the released code (``zrguo/CGGM``, ``src/foodtrain.py``): per step, with the
batch accuracies eps_m^t of the modality classifiers f_m (objective ``cggm_heads``, trained on
detached features) and their change ``d_m = eps_m^t - eps_m^{t-1}`` (eps^0 = 0)::

    B_m  = (sum_j d_j - d_m) / (sum_j d_j + 1e-8)          (magnitude: the modality that
                                                           improved least gets the larger B)
    L_gm = (sum_m |B_m| - sum_m B_m cos(W_m, W_F^m)) / M    (direction)
    loss = L_task + lam * L_gm;  encoder m's gradient *= rho * B_m;  clip |grad| of the model to ``clip``

Readings and deviations (stated):

* ``cos`` compares the *weights* of f_m's output layer with the fused classifier's output
  layer, as the released code does (it passes the parameters, not their ``.grad``); the paper
  describes it as guiding gradient directions.  Our fused head sees the concatenated
  features, so W_F^m is its column block of modality m (same shape as W_m); this needs a
  linear head (``head_hidden=0``) on ``concat`` fusion, otherwise ``cggm_lambda`` must be 0.
  f_m's weights enter as constants (the released code clears the classifiers' gradient of
  L_gm before their own step).
* The released code adds the previous step's L_gm (its graph kept from the previous step)
  to the current loss; here L_gm is computed on the current weights with the current B.
* The modulation multiplies the encoder's whole gradient (with ``+mer`` the MER gradient too),
  as the released code multiplies ``.grad``.
* B can be large or negative when the accuracies' changes nearly cancel (the released rule);
  the released gradient clipping (``clip``, 0.8) bounds the step.  ``clip=0`` switches it off.
* More than two modalities: the released formula is written for any M; the L_gm of its
  two-modality scripts is the M = 2 case of the form above.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.fusion import ConcatFusion
from ..registry import check_number
from ._grads import total_loss
from .base import STRATEGIES, Strategy


def cggm_coefficients(acc: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """B_m = (sum d - d_m) / (sum d + 1e-8), d = acc - prev (per modality, shape (M,))."""
    d = acc - prev
    s = d.sum() + 1e-8
    return (s - d) / s


def direction_loss(coeff: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """L_gm = (sum |B| - sum B cos) / M."""
    return (coeff.abs().sum() - (coeff * cos).sum()) / coeff.numel()


@STRATEGIES.register("cggm")
class CGGM(Strategy, nn.Module):
    """CGGM as a gradient strategy: one backward of the terms plus lam L_gm, then the encoders'
    gradients are scaled by rho B_m and the model's gradient norm is clipped.

    Needs the ``cggm_heads`` objective (its accuracies and classifiers).  Logs ``cggm/B_<m>``
    and ``cggm/cos_<m>``.  The previous accuracies travel with checkpoints.
    """

    name = "cggm"

    def __init__(self, rho: float = 1.3, lam: float = 0.05, clip: float = 0.8):
        nn.Module.__init__(self)
        self.rho = check_number("CGGM", "rho", rho)
        self.lam = check_number("CGGM", "lam", lam)
        self.clip = check_number("CGGM", "clip", clip)
        self.prev: torch.Tensor | None = None
        self._heads: list = []

    def bind(self, model, objectives) -> None:
        heads = [o for o in objectives if o.name == "cggm_heads"]
        if not heads:
            raise ValueError(f"the cggm strategy needs the 'cggm_heads' objective; this method's objectives are "
                             f"{[o.name for o in objectives]}")
        if self.lam > 0 and (model.classifier.hidden or not isinstance(model.fusion, ConcatFusion)):
            raise ValueError("cggm: hyperparameter 'cggm_lambda' (the direction term) needs a linear head "
                             "(head_hidden=0) on 'concat' fusion; set cggm_lambda=0 for other heads")
        self._heads = [heads[0].heads]

    def get_extra_state(self):
        return {"prev": None if self.prev is None else self.prev.cpu()}

    def set_extra_state(self, state):
        self.prev = state["prev"]

    def _cosines(self, model) -> torch.Tensor:
        w = model.classifier.net.weight
        out, start = [], 0
        for m in model.modalities:
            d = model.fusion.dims[m]
            w_m = self._heads[0][m].weight.detach()
            dt = torch.float64 if w.dtype == torch.float64 else torch.float32
            out.append(F.cosine_similarity(w_m.reshape(-1).to(dt), w[:, start:start + d].reshape(-1).to(dt), dim=0))
            start += d
        return torch.stack(out)

    def backward(self, terms, model, params):
        term = next((t for t in terms if t.name == "cggm_heads"), None)
        if term is None:
            raise ValueError(f"the cggm strategy needs the 'cggm_heads' term; got {[t.name for t in terms]}")
        mods = model.modalities
        acc = torch.stack([term.logs[f"cggm_acc_{m}"].detach() for m in mods])
        prev = torch.zeros_like(acc) if self.prev is None else self.prev.to(acc)
        coeff = cggm_coefficients(acc, prev)
        self.prev = acc.detach()
        loss = total_loss(terms)
        logs = {f"cggm/B_{m}": coeff[i].detach() for i, m in enumerate(mods)}
        if self.lam > 0:
            cos = self._cosines(model)
            loss = loss + self.lam * direction_loss(coeff, cos)
            logs.update({f"cggm/cos_{m}": cos[i].detach() for i, m in enumerate(mods)})
        loss.backward()
        for i, (m, ps) in enumerate(model.encoder_parameters().items()):
            for p in ps:
                if p.grad is not None:
                    p.grad.mul_((self.rho * coeff[i]).to(p.grad.dtype))
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], self.clip)
        return logs
