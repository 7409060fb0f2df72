"""Methods = objectives + a gradient strategy, with their hyperparameters declared here.

Each method is a small function from hyperparameters to
``(objectives, strategy)`` specs; :data:`METHODS` holds them with their
defaults, so every hyperparameter of every method lives in this file.
GMP plugs into a method by swapping its strategy (``strategy=gmp``);
MER-DG by adding the ``mer`` objective (``+mer``).  ``base+gmp+mer`` style names
compose: see :func:`resolve`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .data.base import Batch
from .models.model import ModelOutput, MultimodalModel
from .objectives import Context, Objective, Term, build_objective
from .strategies import Strategy, build_strategy

Spec = tuple[str, dict]


@dataclass
class MethodDef:
    name: str
    build: Callable[[dict], tuple[list[Spec], Spec]]
    hparams: dict = field(default_factory=dict)
    doc: str = ""


METHODS: dict[str, MethodDef] = {}


def method(name: str, doc: str, **hparams):
    def deco(fn):
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = MethodDef(name, fn, hparams, doc)
        return fn
    return deco


@method("erm", "Late fusion trained with cross-entropy only.")
def _erm(hp):
    return [("ce", {})], ("sum", {})


@method("base", "GMP's base: L = L_c + lambda * L_d, domain discriminator behind gradient reversal.",
        lambda_d=0.3, disc_hidden=0)
def _base(hp):
    return [("ce", {}), ("domain_adv", {"weight": hp["lambda_d"], "hidden": hp["disc_hidden"]})], ("sum", {})


# Plug-ins: a strategy swap or an added objective, applicable to any method.
PLUGINS: dict[str, tuple[Callable[[dict, list[Spec], Spec], tuple[list[Spec], Spec]], dict, str]] = {}


def plugin(name: str, doc: str, **hparams):
    def deco(fn):
        PLUGINS[name] = (fn, hparams, doc)
        return fn
    return deco


def method_names() -> list[str]:
    return sorted(METHODS) + [f"<method>+{p}" for p in sorted(PLUGINS)]


def resolve(name: str, overrides: dict | None = None) -> tuple[list[Spec], Spec, dict]:
    """Objectives, strategy and the full hyperparameters of ``name`` (e.g. ``"simmmdg+gmp+mer"``)."""
    base, *plugs = name.split("+")
    if base not in METHODS:
        raise KeyError(f"unknown method {base!r}; valid choices: {sorted(METHODS)} "
                       f"(optionally followed by +plugin, plugins: {sorted(PLUGINS)})")
    for p in plugs:
        if p not in PLUGINS:
            raise KeyError(f"unknown plugin {p!r} in method {name!r}; valid plugins: {sorted(PLUGINS)}")
    hp = dict(METHODS[base].hparams)
    for p in plugs:
        for k, v in PLUGINS[p][1].items():
            hp.setdefault(k, v)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(hp))
    if unknown:
        raise KeyError(f"method {name!r} has no hyperparameter(s) {unknown}; its hyperparameters: {sorted(hp)}")
    for k, v in overrides.items():
        default = hp[k]
        if default is not None and not isinstance(v, type(default)) and not (
                isinstance(default, float) and isinstance(v, int)):
            raise TypeError(f"hyperparameter {k!r} of method {name!r} expects {type(default).__name__}, "
                            f"got {v!r}")
        hp[k] = float(v) if isinstance(default, float) else v
    objectives, strategy = METHODS[base].build(hp)
    for p in plugs:
        objectives, strategy = PLUGINS[p][0](hp, objectives, strategy)
    return objectives, strategy, hp


class Method(nn.Module):
    """A model, its objectives (with their own modules) and a gradient strategy."""

    def __init__(self, model: MultimodalModel, objectives: list[Objective], strategy: Strategy):
        super().__init__()
        self.model = model
        self.objectives = nn.ModuleList(objectives)
        self.strategy = strategy

    def terms(self, batch: Batch) -> tuple[ModelOutput, list[Term]]:
        out = self.model(batch.inputs)
        return out, [obj(out, batch) for obj in self.objectives]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def backward(self, terms: list[Term]) -> dict[str, torch.Tensor]:
        return self.strategy.backward(terms, self.model, self.trainable_parameters())


def build_method(name: str, model: MultimodalModel, num_domains: int, overrides: dict | None = None) -> Method:
    objectives, (strategy, skw), _ = resolve(name, overrides)
    ctx = Context(model.modalities, {m: e.out_dim for m, e in model.encoders.items()},
                  model.classifier.out_dim, num_domains)
    objs = [build_objective(o, ctx, **kw) for o, kw in objectives]
    return Method(model, objs, build_strategy(strategy, **skw))
