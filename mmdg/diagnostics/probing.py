"""Unimodal linear probing of frozen encoders (MER-DG.md §2.3, §2.4.1).

Fusion Overfitting predicts that an encoder trained through the fusion is a worse
*standalone* feature extractor on the target than it could be, and that MER helps.
The test: freeze the encoders, fit a probe on each modality's source-train
features, and report its accuracy on source validation and on the target.

Stated deviation from the authors' ``evaluate_modality_features.py`` (an MLP probe
Linear(d, 512)-ReLU-Dropout-Linear, or a linear one with ``--classifier-hidden-dim 0``,
trained with Adam lr 1e-3 for 25 epochs at batch 256): the probe here is an
L2-regularised multinomial logistic regression on standardised features, fitted
full-batch with L-BFGS from zero weights.  The problem is convex and the fit has no
randomness, so a probe accuracy is a property of the features alone (not of a seed
or an epoch count).  Accuracies are percentages, as in :func:`mmdg.train.evaluate`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from .features import Features, extract_features


@dataclass
class LinearProbe:
    """``softmax(W (x - mean) / scale + b)``; float64, CPU."""

    weight: torch.Tensor   # (C, d)
    bias: torch.Tensor     # (C,)
    mean: torch.Tensor     # (d,)
    scale: torch.Tensor    # (d,)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"probe expects features of shape (N, {self.weight.shape[1]}), got {tuple(x.shape)}")
        return ((x.double().cpu() - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Percentage of correct predictions."""
        if len(y) == 0:
            raise ValueError("probe accuracy of an empty set")
        return 100.0 * (self.predict(x) == y.cpu()).double().mean().item()


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
                     weight_decay: float = 1e-3, max_iter: int = 300, standardize: bool = True) -> LinearProbe:
    """Multinomial logistic regression ``CE + weight_decay/2 ||W||^2``, full-batch L-BFGS from zero.

    ``x`` (N, d) features, ``y`` (N,) class indices in ``[0, num_classes)`` (default
    ``max(y) + 1``).  ``standardize`` z-scores each feature with the training mean
    and std (constant features are left unscaled).  Deterministic.
    """
    if x.dim() != 2 or y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"fit_linear_probe: x must be (N, d) and y (N,) with N >= 1, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if weight_decay < 0 or max_iter < 1:
        raise ValueError(f"fit_linear_probe: weight_decay must be >= 0 and max_iter >= 1, got {weight_decay!r} "
                         f"and {max_iter!r}")
    x, y = x.detach().double().cpu(), y.detach().long().cpu()
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"fit_linear_probe: labels must lie in [0, {k}), got [{int(y.min())}, {int(y.max())}]")
    d = x.shape[1]
    if standardize:
        mean, scale = x.mean(0), x.std(0, correction=0)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    else:
        mean, scale = torch.zeros(d, dtype=x.dtype), torch.ones(d, dtype=x.dtype)
    xs = (x - mean) / scale
    w = torch.zeros(k, d, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(k, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w.T + b, y) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(w.detach(), b.detach(), mean, scale)


def probe_modalities(train: Features, evals: Mapping[str, Features] | None = None,
                     modalities: list[str] | None = None, concat: bool = True,
                     num_classes: int | None = None, **probe_kwargs) -> dict[str, dict[str, float]]:
    """One probe per modality (and one on all modalities concatenated, key ``"concat"``).

    Fitted on ``train``; returns ``{modality: {"train": acc, <eval name>: acc, ...}}``
    (percent) for every set in ``evals`` (e.g. ``{"val": ..., "target": ...}``).
    """
    evals = dict(evals or {})
    mods = list(modalities or train.modalities)
    missing = [m for m in mods if m not in train.feats or any(m not in e.feats for e in evals.values())]
    if missing:
        raise KeyError(f"probe_modalities: modalities {missing} missing from the features "
                       f"(train has {train.modalities})")
    k = num_classes if num_classes is not None else int(max([train.label.max()] +
                                                            [e.label.max() for e in evals.values()])) + 1
    groups = {m: [m] for m in mods}
    if concat and len(mods) > 1:
        groups["concat"] = mods
    out = {}
    for key, ms in groups.items():
        def cat(f: Features) -> torch.Tensor:
            return torch.cat([f.feats[m] for m in ms], dim=1)
        probe = fit_linear_probe(cat(train), train.label, k, **probe_kwargs)
        out[key] = {"train": probe.accuracy(cat(train), train.label)}
        out[key].update({name: probe.accuracy(cat(f), f.label) for name, f in evals.items()})
    return out


def probe_split(model, split, device=None, amp: bool = False, **probe_kwargs) -> dict[str, dict[str, float]]:
    """Unimodal probes of a trained model's frozen encoders on a :class:`~mmdg.data.protocol.DGSplit`.

    Fitted on the source-train features; reports ``train``, ``val`` (source
    validation) and ``target`` accuracy per modality and for the concatenation.
    """
    train, val, target = (extract_features(model, d, device, amp=amp) for d in (split.train, split.val, split.test))
    return probe_modalities(train, {"val": val, "target": target}, **probe_kwargs)
