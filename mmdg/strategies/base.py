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
from ._grads import total_loss

STRATEGIES = Registry("strategy")


class Strategy:
    """How the terms' gradients reach the parameters; :meth:`bind` and :meth:`epoch_end` are hooks
    (no-ops here) that a strategy overrides when it needs the model or an epoch's results."""

    name = ""

    def bind(self, model: MultimodalModel, objectives: list) -> None:
        """Called once by :class:`~mmdg.methods.Method` with the model and the method's objectives."""

    def epoch_end(self, epoch: int, method, row: dict, val_loader) -> None:
        """Called by the trainer after each epoch's evaluation, before the checkpoint (``row``: the
        epoch's record row, which the hook may add to)."""

    def backward(self, terms: list[Term], model: MultimodalModel,
                 params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
        """Set ``.grad`` of ``params`` (all trainable parameters); return detached logs."""
        raise NotImplementedError


@STRATEGIES.register("sum")
class Sum(Strategy):
    """Plain back-propagation of the summed objectives (GMP Eq. 3)."""

    name = "sum"

    def backward(self, terms, model, params):
        total_loss(terms).backward()
        return {}


def build_strategy(name: str, **kwargs) -> Strategy:
    return STRATEGIES.build(name, **kwargs)
