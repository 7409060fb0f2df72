"""Optimizers a method may ask the trainer for: Adam (the default) and LARS (MER-DG's released default).

A method declares ``optimizer`` (and, for LARS, ``lars_eta``, ``lars_momentum``,
``lars_weight_decay``) among its hyperparameters; :func:`make_optimizer` builds it from the
method's ``train_options`` and the run's ``lr`` / ``weight_decay``.
"""
from __future__ import annotations

import torch

from .registry import check_number

OPTIMIZERS = ("adam", "lars")


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) with momentum, in its SimCLR/VICReg form.

    Per parameter tensor ``w`` with gradient ``g``::

        d = g + weight_decay * w
        d = d * eta * |w| / |d|        (trust ratio; 1 where |w| or |d| is 0)
        mu = momentum * mu + d
        w = w - lr * mu

    With ``exclude_bias_and_norm`` the 1-D tensors (biases, LayerNorm/BatchNorm scales) get
    neither weight decay nor the trust ratio: plain SGD with momentum.

    MER-DG's ``train_mer_dg.py`` imports ``LARS`` from an ``optimizer.py`` that is not in its
    repository; this is the standard form its call (``weight_decay=1e-6, momentum=0.9,
    eta=0.001, exclude_bias_n_norm=True``) names.  What it does at the released lr 1e-4 (no
    schedule): every non-excluded tensor moves by ``lr * eta * |w| = 1e-7 |w|`` per step before
    momentum (about 1e-6 |w| with momentum 0.9), whatever the gradient's size, so over a few
    thousand steps weights change by well under 1 % and a freshly initialised head barely learns.
    """

    def __init__(self, params, lr: float, weight_decay: float = 1e-6, momentum: float = 0.9,
                 eta: float = 0.001, exclude_bias_and_norm: bool = True):
        check_number("LARS", "lr", lr)
        check_number("LARS", "weight_decay", weight_decay)
        check_number("LARS", "eta", eta, strict=True)
        if not 0 <= momentum < 1:
            raise ValueError(f"LARS: momentum must be in [0, 1), got {momentum!r}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                                      exclude_bias_and_norm=exclude_bias_and_norm))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not (group["exclude_bias_and_norm"] and p.ndim == 1):
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = torch.norm(p), torch.norm(d)
                    one = torch.ones_like(w_norm)
                    trust = torch.where(w_norm > 0, torch.where(d_norm > 0, group["eta"] * w_norm / d_norm, one), one)
                    d = d.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(d)
                p.add_(mu, alpha=-group["lr"])
        return loss


def make_optimizer(params, lr: float, weight_decay: float, options: dict | None = None) -> torch.optim.Optimizer:
    """The optimizer ``options["optimizer"]`` names (default Adam with the run's lr and weight decay).

    LARS takes its weight decay from ``options["lars_weight_decay"]`` (the run's ``weight_decay``
    is Adam's).
    """
    options = dict(options or {})
    name = options.get("optimizer", "adam")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, weight_decay=options.get("lars_weight_decay", 1e-6),
                    momentum=options.get("lars_momentum", 0.9), eta=options.get("lars_eta", 0.001))
    raise ValueError(f"hyperparameter 'optimizer' must be one of {list(OPTIMIZERS)}, got {name!r}")
