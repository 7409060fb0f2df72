"""Small gradient helpers shared by the strategies (GMP and the balancing baselines).

Strategies take gradients with ``torch.autograd.grad`` (never ``.backward()`` on a
partial loss, so nothing leaks into ``.grad``) and write the result with
:func:`accumulate_grad`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.model import MultimodalModel
from ..feature_stats import full_precision
from ..objectives.base import Term


def flat_grads(grads, params, device: torch.device) -> torch.Tensor:
    """Concatenate gradients (None -> zeros) into one 1-D vector on ``device``."""
    if not params:
        return torch.zeros(0, device=device)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def accumulate_grad(p: nn.Parameter, g: torch.Tensor) -> None:
    """Add ``g`` to ``p.grad`` (set it if there is none), in ``p``'s dtype."""
    if p.grad is None:
        p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
    else:
        p.grad.add_(g)


def total_loss(terms: list[Term], allow_empty: bool = False) -> torch.Tensor | None:
    """The sum of the terms' losses, in float32 (float64 stays float64, so a float64 check is not
    rounded).  No terms: None if ``allow_empty``, else a ValueError."""
    if not terms:
        if allow_empty:
            return None
        raise ValueError("a method needs at least one objective")
    return torch.stack([full_precision(t.loss) for t in terms]).sum()


def per_modality(groups: dict[str, list[nn.Parameter]]):
    """``(i, modality, params, slice)`` per modality, the slice locating its parameters in the
    concatenation of all groups' parameters (the order gradients are taken in)."""
    start = 0
    for i, (m, ps) in enumerate(groups.items()):
        yield i, m, ps, slice(start, start + len(ps))
        start += len(ps)


def split_params(model: MultimodalModel, params: list[nn.Parameter]):
    """(encoders, heads): trainable encoder parameters per modality, and every other parameter."""
    enc = model.encoder_parameters()
    ids = {id(p) for ps in enc.values() for p in ps}
    return enc, [p for p in params if id(p) not in ids]


def split_flat(model: MultimodalModel, params: list[nn.Parameter]):
    """(encoders, encoder parameters in modality order, those followed by the heads'): the order
    gradients are taken in by the strategies that slice them per modality."""
    enc, heads = split_params(model, params)
    enc_flat = [p for ps in enc.values() for p in ps]
    return enc, enc_flat, enc_flat + heads


def grads_of(loss: torch.Tensor | None, params: list[nn.Parameter], retain: bool) -> list:
    """d loss / d params (None where a parameter is unused, or for every one if ``loss`` is None)."""
    if loss is None or not params:
        return [None] * len(params)
    return list(torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True))


def add_grads(*grads):
    """Elementwise sum of gradient lists, keeping None where every list has None."""
    out = []
    for parts in zip(*grads):
        parts = [g for g in parts if g is not None]
        out.append(None if not parts else parts[0] if len(parts) == 1 else torch.stack(parts).sum(0))
    return out


def write_grads(params: list[nn.Parameter], grads) -> None:
    for p, g in zip(params, grads):
        if g is not None:
            accumulate_grad(p, g)


def class_confidence(terms: list[Term], who: str) -> dict[str, torch.Tensor]:
    """q^m of the fused classification term: the term named ``ce`` if present, else the first
    ``cls`` term with confidences (softmax of each modality's logit share at the true class)."""
    cls = [t for t in terms if t.kind == "cls" and t.confidence]
    if not cls:
        names = [f"{t.name} ({t.kind})" for t in terms]
        raise ValueError(f"{who} needs a 'cls' term with per-modality confidences (e.g. the 'ce' "
                         f"objective); this method's terms are {names}")
    return next((t for t in cls if t.name == "ce"), cls[0]).confidence

