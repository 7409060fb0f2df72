"""Methods = objectives + a gradient strategy, with their hyperparameters declared here.

Each method is a small function from hyperparameters to
``(objectives, strategy)`` specs; :data:`METHODS` holds them with their
defaults, so every hyperparameter of every method lives in this file.
GMP plugs into a method by swapping its strategy (``strategy=gmp``);
MER-DG by adding the ``mer`` objective (``+mer``).  ``base+gmp+mer`` style names
compose: see :func:`resolve`.
"""
from __future__ import annotations

import math
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


#: Hidden widths of projector / translator MLPs (the papers use 2048; smaller widths suit a CPU).
WIDTH_HPARAMS = ("con_hidden", "trans_hidden", "mer_hidden")


def width_overrides(name: str, hidden: int) -> dict:
    """``{hparam: hidden}`` for every projector/translator width that method ``name`` has."""
    return {k: hidden for k in WIDTH_HPARAMS if k in resolve(name)[2]}


def non_default(name: str, overrides: dict) -> dict:
    """``overrides`` without the entries equal to method ``name``'s defaults (checked by :func:`resolve`).

    Run ids hash the overrides as given, so spelling a default out would give the same run a new id.
    """
    resolve(name, overrides)
    defaults = resolve(name)[2]
    return {k: v for k, v in overrides.items() if defaults[k] != v}


#: Declared ranges of hyperparameters shared by several methods: name -> (low, high, kind), checked
#: by :func:`resolve` on every value (kind "int": an int; "num": a finite number); None: unbounded.
HP_RANGES: dict[str, tuple] = {
    "lambda_d": (0, None, "num"), "disc_hidden": (0, None, "int"),                   # base, gmp, baselines
    "alpha_k": (0, None, "num"), "alpha_p": (0, None, "num"), "unimodal_weight": (0, None, "num"),  # gmp
    "gmp_log_every": (0, None, "int"),
    "lambda_mer": (0, None, "num"), "mer_alpha_marg": (0, None, "num"), "mer_alpha_spec": (0, None, "num"),
    "mer_dim": (1, None, "int"), "mer_hidden": (1, None, "int"),                    # mer
    "ogm_alpha": (0, None, "num"), "modulation_starts": (0, None, "int"), "modulation_ends": (0, None, "int"),
    "uni_weight": (0, None, "num"), "mmpareto_gamma": (0, None, "num"), "agm_alpha": (0, None, "num"),
    "lambda_rna": (0, None, "num"),
}


def check_ranges(name: str, hp: dict) -> None:
    """A ValueError naming the first hyperparameter of method ``name`` outside :data:`HP_RANGES`."""
    for k, (low, high, kind) in HP_RANGES.items():
        if k not in hp:
            continue
        v = hp[k]
        ok = (not isinstance(v, bool) and isinstance(v, int if kind == "int" else (int, float))
              and math.isfinite(v) and (low is None or v >= low) and (high is None or v <= high))
        if not ok:
            bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
            raise ValueError(f"{name}: hyperparameter {k!r} must be {'an int' if kind == 'int' else 'a finite number'}"
                             f" in {bounds}, got {v!r}")


def resolve(name: str, overrides: dict | None = None) -> tuple[list[Spec], Spec, dict]:
    """Objectives, strategy and the full hyperparameters of ``name`` (e.g. ``"simmmdg+gmp+mer"``)."""
    base, *plugs = name.split("+")
    twice = sorted({p for p in plugs if plugs.count(p) > 1 or p == base})
    if twice:
        raise ValueError(f"method {name!r} applies the plugin(s) {twice} twice"
                         + (f" (method {base!r} already includes it)" if base in twice else ""))
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
    check_ranges(name, hp)
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
        self.train_options: dict = {}          # optimizer / sampler a method asks the trainer for
        for part in (strategy, *objectives):   # parts that need the model (e.g. DRB's initial weights)
            if hasattr(part, "bind"):
                part.bind(model, list(objectives))

    def terms(self, batch: Batch) -> tuple[ModelOutput, list[Term]]:
        out = self.model(batch.inputs)
        return out, [obj(out, batch) for obj in self.objectives]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def backward(self, terms: list[Term]) -> dict[str, torch.Tensor]:
        return self.strategy.backward(terms, self.model, self.trainable_parameters())


def build_method(name: str, model: MultimodalModel, num_domains: int, overrides: dict | None = None) -> Method:
    objectives, (strategy, skw), hp = resolve(name, overrides)
    ctx = Context(model.modalities, {m: e.out_dim for m, e in model.encoders.items()},
                  model.classifier.out_dim, num_domains)
    objs = [build_objective(o, ctx, **kw) for o, kw in objectives]
    method = Method(model, objs, build_strategy(strategy, **skw))
    method.train_options = {k: hp[k] for k in TRAIN_OPTIONS if k in hp}
    return method


# MER-DG (MER-DG.md §3): + lambda * sum_m MER(P_m(z^m)); mer_hidden=2048 is the paper's, smaller suits CPU.
@plugin("mer", "MER-DG: + lambda_mer * sum over modalities of the Gaussian-entropy surrogate "
        "(variance hinge + spectral log-det) on per-modality projector outputs (or the features).",
        lambda_mer=3.0, mer_alpha_marg=1.0, mer_alpha_spec=1.0, mer_dim=128, mer_hidden=2048, mer_on="projector")
def _mer_plugin(hp, objectives, strategy):
    return objectives + [("mer", {"weight": hp["lambda_mer"], "alpha_marg": hp["mer_alpha_marg"],
                                  "alpha_spec": hp["mer_alpha_spec"], "dim": hp["mer_dim"],
                                  "hidden": hp["mer_hidden"], "on": hp["mer_on"]})], strategy


@method("mer", "MER-DG variant A: late fusion (CE) + the MER plugin (same as 'erm+mer').", **PLUGINS["mer"][1])
def _mer(hp):
    return _mer_plugin(hp, *_erm(hp))


# GMP (GMP.md §2): swap the strategy for gradient modulation + projection; needs a 'dom' term.
# Table 4 ablations: gmp_ablation in mmdg.strategies.ABLATIONS ("igdm_only", "cagp_only", "unified",
# "no_k", "no_p", "proj_cls", "proj_dom", "pcgrad", "reverse_cagp", "base", "full"), or set
# gmp_modulate / gmp_project directly; gmp_variant="unimodal_heads" is the authors' later code path
# (auxiliary unimodal heads, weight unimodal_weight, supply the modulated classification gradient);
# gmp_variant="released" is that code as released (released_* hparams; see the block at the end).
@plugin("gmp", "GMP: per-modality decoupled modulation (k from rho, p from sigma) and conflict-adaptive "
        "projection of the classification and domain-adversarial encoder gradients; adds domain_adv "
        "if the method has no 'dom' objective.",
        lambda_d=0.3, disc_hidden=0, alpha_k=0.5, alpha_p=0.5, gmp_modulate="decoupled",
        gmp_project="adaptive", gmp_ablation="", gmp_ogm_form=False, gmp_variant="paper",
        unimodal_weight=3.0, gmp_engine="fast", gmp_log_every=0,
        released_dom_weight=0.5, released_grl=0.3, released_proj_dim=512, released_train_disc=False)
def _gmp_plugin(hp, objectives, strategy):
    from .objectives import OBJECTIVES
    if strategy[0] != "sum":
        raise ValueError(f"the gmp plugin replaces the 'sum' strategy; this method uses {strategy[0]!r}")
    if hp["gmp_variant"] == "released":      # the authors' released code: see the block at the end
        return _gmp_released_plugin(hp, objectives, strategy)
    objectives = list(objectives)
    if not any(OBJECTIVES.get(name).kind == "dom" for name, _ in objectives):
        objectives.append(("domain_adv", {"weight": hp["lambda_d"], "hidden": hp["disc_hidden"]}))
    if hp["gmp_variant"] == "unimodal_heads" and not any(name == "unimodal_heads" for name, _ in objectives):
        objectives.append(("unimodal_heads", {"weight": hp["unimodal_weight"]}))
    return objectives, ("gmp", {"alpha_k": hp["alpha_k"], "alpha_p": hp["alpha_p"],
                                "modulate": hp["gmp_modulate"], "project": hp["gmp_project"],
                                "ablation": hp["gmp_ablation"] or None,
                                "ogm_form": hp["gmp_ogm_form"], "variant": hp["gmp_variant"],
                                "engine": hp["gmp_engine"], "log_every": hp["gmp_log_every"]})


@method("gmp", "GMP on its base (same as 'base+gmp'): L_c + lambda L_d with modulated, projected "
        "encoder gradients.", **{**PLUGINS["gmp"][1], **METHODS["base"].hparams})
def _gmp(hp):
    return _gmp_plugin(hp, *_base(hp))


# ------------------------------------------------------------------------------------------------
# SimMMDG and RNA-Net (mmdg/objectives/mmdg_methods.py).  Defaults are the released SimMMDG
# script's (SIMMMDG_PIPELINE_AND_PEERS.md §1.5/§1.6): alpha_contrast 3.0, temp 0.1 with SupCon's
# base_temperature left at 0.07 (loss scaled by 0.1/0.07; con_base_temp=0.0 removes the quirk),
# projector hidden 2048 / out 128 with BatchNorm, alpha_trans 0.1, trans_hidden_num 2048, dropout
# 0.5, explore_loss_coeff 0.7.  Hidden widths of 2048 are the paper's; smaller suit CPU.
# RNA-Net's weight (lambda_rna = 1.0) is not in the notes (no code released): a stated choice.

def _check_hp(method_name: str, hp: dict, positive=(), nonnegative=(), ints=()) -> None:
    for k in positive:
        if not hp[k] > 0:
            raise ValueError(f"{method_name}: hyperparameter {k!r} must be > 0, got {hp[k]!r}")
    for k in nonnegative:
        if not hp[k] >= 0:
            raise ValueError(f"{method_name}: hyperparameter {k!r} must be >= 0, got {hp[k]!r}")
    for k in ints:
        if not isinstance(hp[k], int) or hp[k] < 1:
            raise ValueError(f"{method_name}: hyperparameter {k!r} must be an int >= 1, got {hp[k]!r}")


@method("simmmdg", "SimMMDG: CE + alpha_con SupCon on projected shared halves + beta_dist (-MSE(shared, "
        "specific)) + alpha_trans cross-modal translation; strategy sum.",
        alpha_con=3.0, con_temp=0.1, con_base_temp=0.07, con_dim=128, con_hidden=2048, con_norm="batch",
        beta_dist=0.7, alpha_trans=0.1, trans_hidden=2048, trans_dropout=0.5)
def _simmmdg(hp):
    _check_hp("simmmdg", hp, positive=("con_temp",),
              nonnegative=("alpha_con", "con_base_temp", "beta_dist", "alpha_trans", "trans_dropout"),
              ints=("con_dim", "con_hidden", "trans_hidden"))
    if not hp["trans_dropout"] < 1:
        raise ValueError(f"simmmdg: hyperparameter 'trans_dropout' must be < 1, got {hp['trans_dropout']!r}")
    if hp["con_norm"] not in ("batch", "layer", "none"):
        raise ValueError(f"simmmdg: hyperparameter 'con_norm' must be 'batch', 'layer' or 'none', "
                         f"got {hp['con_norm']!r}")
    return [("ce", {}),
            ("supcon_shared", {"weight": hp["alpha_con"], "temperature": hp["con_temp"],
                               "base_temperature": hp["con_base_temp"] or None, "dim": hp["con_dim"],
                               "hidden": hp["con_hidden"], "norm": hp["con_norm"]}),
            ("ss_distance", {"weight": hp["beta_dist"]}),
            ("translation", {"weight": hp["alpha_trans"], "hidden": hp["trans_hidden"],
                             "dropout": hp["trans_dropout"]})], ("sum", {})


@method("rna", "RNA-Net: CE + lambda_rna (mean|f_a| / mean|f_b| - 1)^2 on the encoder features; strategy sum.",
        lambda_rna=1.0)
def _rna(hp):
    _check_hp("rna", hp, nonnegative=("lambda_rna",))
    return [("ce", {}), ("rna", {"weight": hp["lambda_rna"]})], ("sum", {})


# ------------------------------------------------------------------------------------------------
# Gradient-balancing baselines (GMP Table 2; SIMMMDG_PIPELINE_AND_PEERS.md §4): mmdg/strategies/
# ogm_ge.py, pcgrad.py, mmpareto.py, agm.py, grad_blending.py.  Each is the original method on
# cross-entropy; lambda_d > 0 adds GMP's domain-adversarial term (GMP's "Base" + the method).
# Defaults: OGM-GE alpha 0.1 and epochs 0-50 (its README), GE on; MMPareto gamma 1.5 with
# unimodal heads of weight 1; PCGrad sum (Yu et al.); AGM alpha 1.0 (not in our notes: a stated
# choice).  +gmp needs the 'sum' strategy and refuses all but grad_blending (an objective weighting,
# which +gmp then modulates like any 'cls' term).

def _with_domain(name: str, hp: dict, objectives: list[Spec]) -> list[Spec]:
    _check_hp(name, hp, nonnegative=("lambda_d",))
    if hp["lambda_d"] > 0:
        return objectives + [("domain_adv", {"weight": hp["lambda_d"], "hidden": hp["disc_hidden"]})]
    return objectives


@method("ogm_ge", "OGM-GE: CE; the dominant modality's encoder gradient is scaled by "
        "1 - tanh(alpha (rho - 1)) from the logit-share confidence ratio, plus Gaussian noise (GE).",
        ogm_alpha=0.1, ogm_ge=True, ogm_conv_only=False, modulation_starts=0, modulation_ends=50,
        ogm_literal=False, lambda_d=0.0, disc_hidden=0)
def _ogm_ge(hp):
    return _with_domain("ogm_ge", hp, [("ce", {})]), ("ogm_ge", {
        "alpha": hp["ogm_alpha"], "ge": hp["ogm_ge"], "conv_only": hp["ogm_conv_only"],
        "modulation_starts": hp["modulation_starts"], "modulation_ends": hp["modulation_ends"],
        "literal": hp["ogm_literal"]})


@method("pcgrad", "PCGrad across the terms (fused CE, unimodal CE on the logit shares): conflicting "
        "task gradients projected onto each other's normal plane on the shared parameters.",
        uni_weight=1.0, pcgrad_reduction="sum", lambda_d=0.0, disc_hidden=0)
def _pcgrad(hp):
    _check_hp("pcgrad", hp, positive=("uni_weight",))
    return (_with_domain("pcgrad", hp, [("ce", {}), ("unimodal_ce", {"weight": hp["uni_weight"]})]),
            ("pcgrad", {"reduction": hp["pcgrad_reduction"]}))


@method("mmpareto", "MMPareto: CE + unimodal heads; per encoder, Pareto (min-norm) integration of "
        "the multimodal and unimodal gradients when they conflict, norm floor, times gamma.",
        uni_weight=1.0, mmpareto_gamma=1.5, lambda_d=0.0, disc_hidden=0)
def _mmpareto(hp):
    _check_hp("mmpareto", hp, positive=("uni_weight",))
    return (_with_domain("mmpareto", hp, [("ce", {}), ("unimodal_heads", {"weight": hp["uni_weight"]})]),
            ("mmpareto", {"gamma": hp["mmpareto_gamma"], "uni_terms": ["unimodal_heads"]}))


@method("agm", "AGM: CE; each encoder's classification gradient scaled by exp(alpha (opt - ratio)) "
        "from Shapley-style mono-modal responses against their running average.",
        agm_alpha=1.0, lambda_d=0.0, disc_hidden=0)
def _agm(hp):
    return _with_domain("agm", hp, [("ce", {})]), ("agm", {"alpha": hp["agm_alpha"]})


@method("grad_blending", "Gradient-Blending: fused + unimodal heads' CE weighted by dG/dO^2 estimated "
        "each epoch from train vs source-validation losses (strategy sum).",
        gb_heads="aux")
def _grad_blending(hp):
    # no lambda_d here: it would override the gmp plugin's default (0.3) in 'grad_blending+gmp'
    if hp["gb_heads"] not in ("aux", "shares"):
        raise ValueError(f"grad_blending: hyperparameter 'gb_heads' must be 'aux' or 'shares', got {hp['gb_heads']!r}")
    return [("grad_blending", {"heads": hp["gb_heads"]})], ("sum", {})


# ------------------------------------------------------------------------------------------------
# >>> issue 18 (branch i18a): CMRF and MOOSA (GMP Table 3).  Objectives in mmdg/objectives/cmrf.py
# and mmdg/objectives/moosa.py, which state their deviations from the released code.
# CMRF defaults (SIMMMDG_PIPELINE_AND_PEERS.md §4, the released runs): SupCon 3.0 at temperature 0.1
# (reference base temperature 0.07), distillation 3.0, unimodal CE 2.0, Beta(0.1, 0.1) mixing, SMA
# from step 400, projectors 2048 -> 128 with BatchNorm, audio's CE and distillation weighted 1/2.
# MOOSA defaults (its argparse): SimMMDG's losses and widths, entropy-weighting temperature 1.0,
# entropy minimisation 0.001, jigsaw weight 1.0 with 4 chunks per modality, 128 permutations and a
# 512-unit classifier, masked translation 0.1 with mask ratio 0.3.

@method("cmrf", "CMRF: CE + unimodal CE (static down-weighting of cmrf_down) + SupCon on projections + "
        "distillation toward Beta-mixed cross-modal features of an SMA teacher of all weights; strategy sum.",
        cmrf_alpha_con=3.0, cmrf_distill=3.0, cmrf_uni=2.0, cmrf_temp=0.1, cmrf_base_temp=0.07,
        cmrf_mix_alpha=0.1, cmrf_sma_start=400, cmrf_dim=128, con_hidden=2048, cmrf_down="audio",
        cmrf_down_weight=0.5)
def _cmrf(hp):
    _check_hp("cmrf", hp, positive=("cmrf_temp", "cmrf_mix_alpha"),
              nonnegative=("cmrf_alpha_con", "cmrf_distill", "cmrf_uni", "cmrf_base_temp", "cmrf_down_weight"),
              ints=("cmrf_dim", "con_hidden"))
    if not isinstance(hp["cmrf_sma_start"], int) or hp["cmrf_sma_start"] < 0:
        raise ValueError(f"cmrf: hyperparameter 'cmrf_sma_start' must be an int >= 0, got {hp['cmrf_sma_start']!r}")
    down = tuple(m for m in hp["cmrf_down"].split(",") if m)
    return [("ce", {}),
            ("cmrf_unimodal", {"weight": hp["cmrf_uni"], "down": down, "down_weight": hp["cmrf_down_weight"]}),
            ("cmrf_flatten", {"alpha_con": hp["cmrf_alpha_con"], "distill": hp["cmrf_distill"],
                              "temperature": hp["cmrf_temp"], "base_temperature": hp["cmrf_base_temp"] or None,
                              "mix_alpha": hp["cmrf_mix_alpha"], "sma_start": hp["cmrf_sma_start"],
                              "dim": hp["cmrf_dim"], "hidden": hp["con_hidden"], "down": down,
                              "down_weight": hp["cmrf_down_weight"]})], ("sum", {})


@method("moosa", "MOOSA (closed-set DG): entropy-weighted CE of unimodal + fused heads, entropy minimisation, "
        "multimodal jigsaw, masked cross-modal translation, and SimMMDG's SupCon + distance; strategy sum.",
        **METHODS["simmmdg"].hparams,
        ent_temp=1.0, ent_min=0.001, jigsaw_weight=1.0, jigsaw_splits=4, jigsaw_perms=128, jigsaw_hidden=512,
        mask_ratio=0.3)
def _moosa(hp):
    _check_hp("moosa", hp, positive=("ent_temp",), nonnegative=("ent_min", "jigsaw_weight", "mask_ratio"),
              ints=("jigsaw_splits", "jigsaw_perms", "jigsaw_hidden"))
    if not hp["mask_ratio"] < 1:
        raise ValueError(f"moosa: hyperparameter 'mask_ratio' must be < 1, got {hp['mask_ratio']!r}")
    simmmdg, _ = _simmmdg(hp)
    shared = [spec for spec in simmmdg if spec[0] in ("supcon_shared", "ss_distance")]
    return [("moosa_heads", {"temperature": hp["ent_temp"], "ent_weight": hp["ent_min"]}), *shared,
            ("moosa_jigsaw", {"weight": hp["jigsaw_weight"], "splits": hp["jigsaw_splits"],
                              "perms": hp["jigsaw_perms"], "hidden": hp["jigsaw_hidden"]}),
            ("masked_translation", {"weight": hp["alpha_trans"], "hidden": hp["trans_hidden"],
                                    "dropout": hp["trans_dropout"], "mask_ratio": hp["mask_ratio"]})], ("sum", {})
# <<< issue 18 (branch i18a)


# ================================================================================================
# Issue 18 (CGGM, DRB, BALGRAD, GMP as released, MER-DG as released).  Sources and deviations are
# in the docstrings of mmdg/strategies/{cggm,balgrad,gmp_released}.py, mmdg/objectives/{drb,peers}.py,
# mmdg/optim.py and mmdg/data/samplers.py.  +gmp swaps the 'sum' strategy, so it applies to drb
# and mer_released only (cggm and balgrad are strategies of their own); +mer applies to all.
# ================================================================================================

#: Hyperparameters a method hands to the trainer (optimizer and training sampler), not to its parts.
TRAIN_OPTIONS = ("optimizer", "lars_eta", "lars_momentum", "lars_weight_decay", "sampler")

#: Run settings (RunConfig fields) of the released recipes; the methods of the same names carry the
#: rest.  GMP: MMDG-Bench train_GMP.py (Adam 1e-4, no weight decay, batch 16, 15 epochs, fused MLP
#: head 512 with dropout 0.5).  MER-DG: train_mer_dg.py (lr 1e-4 with LARS, batch 16, 20 epochs,
#: fused MLP head 512 with dropout 0.5).
RECIPES = {
    "gmp_released": {"epochs": 15, "batch_size": 16, "lr": 1e-4, "weight_decay": 0.0,
                     "head_hidden": 512, "head_dropout": 0.5},
    "mer_released": {"epochs": 20, "batch_size": 16, "lr": 1e-4, "head_hidden": 512, "head_dropout": 0.5},
}

_RELEASED_IGNORES = {"gmp_modulate": "decoupled", "gmp_project": "adaptive", "gmp_ablation": "",
                     "gmp_ogm_form": False, "gmp_engine": "fast"}


def _gmp_released_plugin(hp, objectives, strategy):
    from .objectives import OBJECTIVES
    for k, default in _RELEASED_IGNORES.items():
        if hp[k] != default:
            raise ValueError(f"gmp_variant='released' has no hyperparameter {k!r} (got {hp[k]!r}); leave it at "
                             f"{default!r}")
    _check_hp("gmp (released)", hp, nonnegative=("unimodal_weight", "released_dom_weight", "released_grl"),
              ints=("released_proj_dim",))
    dom = [name for name, _ in objectives if OBJECTIVES.get(name).kind == "dom"]
    if dom:
        raise ValueError(f"gmp_variant='released' brings its own domain objective (domain_adv_released); this "
                         f"method already has {dom}")
    objectives = list(objectives)
    if not any(name == "unimodal_heads" for name, _ in objectives):
        objectives.append(("unimodal_heads", {"weight": hp["unimodal_weight"]}))
    objectives.append(("domain_adv_released", {"weight": hp["released_dom_weight"], "grl": hp["released_grl"],
                                               "proj_dim": hp["released_proj_dim"]}))
    return objectives, ("gmp_released", {"alpha_k": hp["alpha_k"], "alpha_p": hp["alpha_p"],
                                         "train_disc": hp["released_train_disc"], "log_every": hp["gmp_log_every"]})


@method("gmp_released", "GMP as released (MMDG-Bench train_GMP.py): late fusion CE, unimodal heads' CE x3.0 "
        "and per-modality domain CE x0.5 (shared, untrained discriminator on 512-d projections, GRL 0.3) "
        "decoupled on each encoder + its head, stronger one projected on conflict, added to the fused CE's "
        "backward; alpha_p 0.1 (its sweep config).  Recipe: RECIPES['gmp_released'].",
        **{**PLUGINS["gmp"][1], "gmp_variant": "released", "alpha_p": 0.1})
def _gmp_released(hp):
    return _gmp_plugin(hp, *_erm(hp))


@method("cggm", "CGGM: CE; per-modality classifiers on detached features; encoder gradients scaled by "
        "rho B_m from their accuracy gains, + lambda L_gm (classifier/fused-head weight cosines), clip 0.8.",
        cggm_rho=1.3, cggm_lambda=0.05, cggm_clip=0.8, cggm_heads_weight=1.0, lambda_d=0.0, disc_hidden=0)
def _cggm(hp):
    _check_hp("cggm", hp, nonnegative=("cggm_rho", "cggm_lambda", "cggm_clip", "cggm_heads_weight"))
    return (_with_domain("cggm", hp, [("ce", {}), ("cggm_heads", {"weight": hp["cggm_heads_weight"]})]),
            ("cggm", {"rho": hp["cggm_rho"], "lam": hp["cggm_lambda"], "clip": hp["cggm_clip"]}))


@method("drb", "DRB (Diagnosing & Re-learning, ECCV 2024): CE; every drb_every epochs (at most drb_times) each "
        "encoder is softly re-initialised by tanh(drb_lambda * |train - val k-means purity|); strategy sum.",
        drb_lambda=3.0, drb_every=20, drb_times=3)
def _drb(hp):
    _check_hp("drb", hp, nonnegative=("drb_lambda",), ints=("drb_every", "drb_times"))
    return [("ce", {}), ("drb", {"lam": hp["drb_lambda"], "every": hp["drb_every"], "times": hp["drb_times"]})], \
        ("sum", {})


@method("balgrad", "BALGRAD: CE + unimodal heads' CE + symmetric KL between their predictions; KL encoder "
        "gradients reweighted by unimodal loss share (our reading), fused-CE gradient projected off the "
        "KL gradient on conflict.", balgrad_uni_weight=1.0, balgrad_kl_weight=1.0, balgrad_weighting="loss",
        lambda_d=0.0, disc_hidden=0)
def _balgrad(hp):
    _check_hp("balgrad", hp, nonnegative=("balgrad_uni_weight", "balgrad_kl_weight"))
    return (_with_domain("balgrad", hp, [("ce", {}), ("unimodal_heads", {"weight": hp["balgrad_uni_weight"]}),
                                          ("modality_kl", {"weight": hp["balgrad_kl_weight"]})]),
            ("balgrad", {"weighting": hp["balgrad_weighting"]}))


@method("mer_released", "MER-DG as released (train_mer_dg.py): late fusion CE + lambda_mer 3 * MER on "
        "LayerNorm projectors (hidden 2048), LARS (eta 1e-3, momentum 0.9, wd 1e-6, bias/norm excluded), "
        "balanced per-domain batches.  Recipe: RECIPES['mer_released']; its selection is the oracle "
        "(final['oracle_test_acc']).",
        **{**PLUGINS["mer"][1], "optimizer": "lars", "lars_eta": 0.001, "lars_momentum": 0.9,
           "lars_weight_decay": 1e-6, "sampler": "balanced_domain"})
def _mer_released(hp):
    from .data.samplers import SAMPLERS
    from .optim import OPTIMIZERS
    if hp["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"mer_released: hyperparameter 'optimizer' must be one of {list(OPTIMIZERS)}, "
                         f"got {hp['optimizer']!r}")
    if hp["sampler"] not in SAMPLERS:
        raise ValueError(f"mer_released: hyperparameter 'sampler' must be one of {list(SAMPLERS)}, got {hp['sampler']!r}")
    _check_hp("mer_released", hp, positive=("lars_eta",), nonnegative=("lars_weight_decay",))
    if not 0 <= hp["lars_momentum"] < 1:
        raise ValueError(f"mer_released: hyperparameter 'lars_momentum' must be in [0, 1), got {hp['lars_momentum']!r}")
    return _mer_plugin(hp, *_erm(hp))
