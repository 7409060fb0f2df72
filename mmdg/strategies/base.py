"""Gradient strategies: how the objectives' gradients reach the parameters.

A strategy receives the step's terms and the model and leaves ``.grad`` set on
every trainable parameter (the model's, and the objectives' own modules, which
it finds through ``params``); the trainer then calls ``optimizer.step()``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.model import MultimodalModel
from ..objectives.base import Term
from ..registry import Registry

STRATEGIES = Registry("strategy")


class Strategy:
    """A strategy may also define ``epoch_end(epoch, method, row, val_loader)``: the trainer calls
    it after each epoch's evaluation, before the checkpoint (objectives may define it too)."""

    name = ""

    def backward(self, terms: list[Term], model: MultimodalModel,
                 params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
        """Set ``.grad`` of ``params`` (all trainable parameters); return detached logs."""
        raise NotImplementedError


def total_loss(terms: list[Term]) -> torch.Tensor:
    if not terms:
        raise ValueError("a method needs at least one objective")
    return torch.stack([t.loss.float() for t in terms]).sum()


@STRATEGIES.register("sum")
class Sum(Strategy):
    """Plain back-propagation of the summed objectives (GMP Eq. 3)."""

    name = "sum"

    def backward(self, terms, model, params):
        total_loss(terms).backward()
        return {}


def build_strategy(name: str, **kwargs) -> Strategy:
    return STRATEGIES.build(name, **kwargs)
