"""Methods = objectives + a gradient strategy, with their hyperparameters declared here.

Each method is a small function from hyperparameters to ``(objectives, strategy)`` specs.
:data:`HPARAMS` declares every hyperparameter once (default, valid range, search distribution, doc
line); :data:`METHODS` and :data:`PLUGINS` name the declarations each method uses, so every
hyperparameter of every method lives in this file.  :func:`hparam_space` and
:func:`sample_hparams` serve a hyperparameter search.
GMP plugs into a method by swapping its strategy (``strategy=gmp``);
MER-DG by adding the ``mer`` objective (``+mer``).  ``base+gmp+mer`` style names
compose: see :func:`resolve`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .data.base import Batch
from .data.samplers import SAMPLERS
from .hparams import HParam, LogUniform, Uniform, trial_rng
from .models.model import ModelOutput, MultimodalModel
from .objectives import Context, Objective, Term, build_objective
from .optim import OPTIMIZERS
from .registry import Registry
from .strategies import Strategy, build_strategy

Spec = tuple[str, dict]
Build = Callable[[dict], tuple[list[Spec], Spec]]
Apply = Callable[[dict, list[Spec], Spec], tuple[list[Spec], Spec]]


def _decl(*rows) -> dict[str, HParam]:
    return {h.name: h for h in (HParam(*row[:3], **(row[3] if len(row) > 3 else {})) for row in rows)}


_W = {"low": 0}                                       # a weight: a finite number >= 0
_POS = {"low": 0, "strict": True}                     # a temperature or rate: > 0
_WIDTH = {"low": 1}                                   # a layer width or count: an int >= 1
_FRACTION = {"low": 0, "high": 1, "below": True}      # in [0, 1)

#: Every hyperparameter, declared once: name, default, doc, then its valid range and search
#: distribution.  Methods list the names they use (:func:`method`); where a method's default differs
#: it says so there.  Weights search log-uniformly over two decades around the default; widths,
#: switches and schedule lengths are not searched.
HPARAMS: dict[str, HParam] = _decl(
    # GMP's base (GMP.md §2) and the domain term the baselines can add
    ("lambda_d", 0.3, "weight of the domain-adversarial loss (0: none)", {**_W, "search": LogUniform(0.03, 3.0)}),
    ("disc_hidden", 0, "hidden width of the domain discriminator (0: linear)", {"low": 0}),
    # MER-DG (MER-DG.md §3)
    ("lambda_mer", 3.0, "weight of the MER loss", {**_W, "search": LogUniform(0.3, 30.0)}),
    ("mer_alpha_marg", 1.0, "weight of MER's variance hinge", {**_W, "search": LogUniform(0.1, 10.0)}),
    ("mer_alpha_spec", 1.0, "weight of MER's spectral log-det", {**_W, "search": LogUniform(0.1, 10.0)}),
    ("mer_dim", 128, "output width of the MER projectors", _WIDTH),
    ("mer_hidden", 2048, "hidden width of the MER projectors (the paper's 2048; smaller suits a CPU)", _WIDTH),
    ("mer_on", "projector", "MER on the projector outputs or on the encoder features",
     {"choices": ("projector", "features")}),
    # GMP (GMP.md §2): IGDM and CAGP
    ("alpha_k", 0.5, "IGDM: scale of the classification-gradient suppression", {**_W, "search": Uniform(0.1, 1.0)}),
    ("alpha_p", 0.5, "IGDM: scale of the domain-gradient suppression", {**_W, "search": Uniform(0.1, 1.0)}),
    ("gmp_modulate", "decoupled", "GMP modulation form (see mmdg.strategies.gmp)"),
    ("gmp_project", "adaptive", "GMP projection form (see mmdg.strategies.gmp)"),
    ("gmp_ablation", "", "a Table 4 ablation from mmdg.strategies.ABLATIONS ('': none)"),
    ("gmp_ogm_form", False, "use OGM-GE's 1 - tanh form for the coefficients"),
    ("gmp_variant", "paper", "GMP as in the paper, with unimodal heads, or as released",
     {"choices": ("paper", "unimodal_heads", "released")}),
    ("unimodal_weight", 3.0, "weight of the unimodal heads' CE (unimodal_heads and released variants)",
     {**_W, "search": LogUniform(0.3, 10.0)}),
    ("gmp_engine", "fast", "GMP's gradient engine (see mmdg.strategies.gmp)"),
    ("gmp_log_every", 0, "log GMP's coefficients every n steps (0: never)", {"low": 0}),
    ("released_dom_weight", 0.5, "released GMP: weight of the per-modality domain CE",
     {**_W, "search": LogUniform(0.05, 5.0)}),
    ("released_grl", 0.3, "released GMP: gradient-reversal coefficient", {**_W, "search": LogUniform(0.03, 3.0)}),
    ("released_proj_dim", 512, "released GMP: width of the domain projections", _WIDTH),
    ("released_train_disc", False, "released GMP: train the domain discriminator (the release does not)"),
    # SimMMDG (SIMMMDG_PIPELINE_AND_PEERS.md §1.5/§1.6, the released script's values)
    ("alpha_con", 3.0, "weight of SupCon on the projected shared halves", {**_W, "search": LogUniform(0.3, 30.0)}),
    ("con_temp", 0.1, "SupCon temperature", {**_POS, "search": LogUniform(0.03, 0.5)}),
    ("con_base_temp", 0.07, "SupCon base temperature (0: equal to con_temp)", _W),
    ("con_dim", 128, "output width of the contrastive projectors", _WIDTH),
    ("con_hidden", 2048, "hidden width of the contrastive projectors (the paper's 2048)", _WIDTH),
    ("con_norm", "batch", "normalisation in the projectors", {"choices": ("batch", "layer", "none")}),
    ("beta_dist", 0.7, "weight of the shared/specific distance", {**_W, "search": LogUniform(0.07, 7.0)}),
    ("alpha_trans", 0.1, "weight of the cross-modal translation", {**_W, "search": LogUniform(0.01, 1.0)}),
    ("trans_hidden", 2048, "hidden width of the translators (the paper's 2048)", _WIDTH),
    ("trans_dropout", 0.5, "dropout in the translators", {**_FRACTION, "search": Uniform(0.0, 0.7)}),
    # RNA-Net (no released code: lambda_rna = 1.0 is a stated choice)
    ("lambda_rna", 1.0, "weight of the relative norm alignment", {**_W, "search": LogUniform(0.1, 10.0)}),
    # OGM-GE, PCGrad, MMPareto, AGM, Gradient-Blending
    ("ogm_alpha", 0.1, "OGM-GE modulation strength", {**_W, "search": LogUniform(0.01, 1.0)}),
    ("ogm_ge", True, "OGM-GE: add the Gaussian noise (GE)"),
    ("ogm_conv_only", False, "OGM-GE: modulate only weights of rank >= 4 (the release's conv layers)"),
    ("modulation_starts", 0, "OGM-GE: first modulated epoch", {"low": 0}),
    ("modulation_ends", 50, "OGM-GE: last modulated epoch", {"low": 0}),
    ("ogm_literal", False, "OGM-GE: the released code's literal ratio"),
    ("uni_weight", 1.0, "weight of the unimodal CE terms (PCGrad, MMPareto)",
     {**_POS, "search": LogUniform(0.1, 10.0)}),
    ("pcgrad_reduction", "sum", "PCGrad: how the projected task gradients combine"),
    ("mmpareto_gamma", 1.5, "MMPareto: gradient scale on conflict", {**_W, "search": Uniform(1.0, 2.0)}),
    ("agm_alpha", 1.0, "AGM modulation strength", {**_W, "search": LogUniform(0.1, 10.0)}),
    ("gb_heads", "aux", "Gradient-Blending's unimodal heads: auxiliary heads or logit shares",
     {"choices": ("aux", "shares")}),
    # CMRF (the released runs)
    ("cmrf_alpha_con", 3.0, "CMRF: SupCon weight", {**_W, "search": LogUniform(0.3, 30.0)}),
    ("cmrf_distill", 3.0, "CMRF: distillation weight", {**_W, "search": LogUniform(0.3, 30.0)}),
    ("cmrf_uni", 2.0, "CMRF: unimodal CE weight", {**_W, "search": LogUniform(0.2, 20.0)}),
    ("cmrf_temp", 0.1, "CMRF: SupCon temperature", {**_POS, "search": LogUniform(0.03, 0.5)}),
    ("cmrf_base_temp", 0.07, "CMRF: SupCon base temperature (0: equal to cmrf_temp)", _W),
    ("cmrf_mix_alpha", 0.1, "CMRF: Beta(a, a) mixing parameter", {**_POS, "search": LogUniform(0.05, 1.0)}),
    ("cmrf_sma_start", 400, "CMRF: step at which the SMA teacher starts averaging", {"low": 0}),
    ("cmrf_dim", 128, "CMRF: projection width", _WIDTH),
    ("cmrf_down", "audio", "CMRF: comma-separated modalities whose CE and distillation are down-weighted"),
    ("cmrf_down_weight", 0.5, "CMRF: the down-weighting factor", {**_W, "search": Uniform(0.25, 1.0)}),
    # MOOSA (its argparse)
    ("ent_temp", 1.0, "MOOSA: entropy-weighting temperature", {**_POS, "search": LogUniform(0.3, 3.0)}),
    ("ent_min", 0.001, "MOOSA: entropy-minimisation weight", {**_W, "search": LogUniform(1e-4, 1e-2)}),
    ("jigsaw_weight", 1.0, "MOOSA: jigsaw weight", {**_W, "search": LogUniform(0.1, 10.0)}),
    ("jigsaw_splits", 4, "MOOSA: jigsaw chunks per modality", _WIDTH),
    ("jigsaw_perms", 128, "MOOSA: jigsaw permutations", _WIDTH),
    ("jigsaw_hidden", 512, "MOOSA: jigsaw classifier width", _WIDTH),
    ("mask_ratio", 0.3, "MOOSA: masked-translation mask ratio", {**_FRACTION, "search": Uniform(0.1, 0.5)}),
    # CGGM, DRB, BALGRAD (issue 18)
    ("cggm_rho", 1.3, "CGGM: modulation strength rho", {**_W, "search": Uniform(1.0, 2.0)}),
    ("cggm_lambda", 0.05, "CGGM: weight of the direction term L_gm", {**_W, "search": LogUniform(0.005, 0.5)}),
    ("cggm_clip", 0.8, "CGGM: gradient-norm clip", {**_W, "search": Uniform(0.5, 1.0)}),
    ("cggm_heads_weight", 1.0, "CGGM: weight of the per-modality classifiers' CE",
     {**_W, "search": LogUniform(0.1, 10.0)}),
    ("drb_lambda", 3.0, "DRB: re-initialisation strength", {**_W, "search": LogUniform(0.3, 30.0)}),
    ("drb_every", 20, "DRB: epochs between re-initialisations", _WIDTH),
    ("drb_times", 3, "DRB: most re-initialisations", _WIDTH),
    ("balgrad_uni_weight", 1.0, "BALGRAD: unimodal CE weight", {**_W, "search": LogUniform(0.1, 10.0)}),
    ("balgrad_kl_weight", 1.0, "BALGRAD: symmetric KL weight", {**_W, "search": LogUniform(0.1, 10.0)}),
    ("balgrad_weighting", "loss", "BALGRAD: how the KL encoder gradients are reweighted"),
    # trainer options of MER-DG as released (TRAIN_OPTIONS)
    ("optimizer", "adam", "the trainer's optimizer", {"choices": OPTIMIZERS}),
    ("lars_eta", 0.001, "LARS trust coefficient", {**_POS, "search": LogUniform(1e-4, 1e-2)}),
    ("lars_momentum", 0.9, "LARS momentum", {"low": 0, "high": 1, "below": True}),
    ("lars_weight_decay", 1e-6, "LARS weight decay", {**_W, "search": LogUniform(1e-7, 1e-5)}),
    ("sampler", "shuffle", "the trainer's training sampler", {"choices": SAMPLERS}),
)

#: The baselines' domain term: off by default, and off in a search.
_BASELINE_DOMAIN = (HPARAMS["lambda_d"].but(default=0.0, search=None), "disc_hidden")


def _space(*parts, **defaults) -> dict[str, HParam]:
    """Declarations by name (str), as given (HParam) or a whole space (dict); ``defaults`` change some."""
    space: dict[str, HParam] = {}
    for part in parts:
        if isinstance(part, dict):
            space.update(part)
        elif isinstance(part, str):
            space[part] = HPARAMS[part]
        else:
            space[part.name] = part
    for k, v in defaults.items():
        space[k] = space[k].but(default=v)
    return space


@dataclass(frozen=True)
class MethodDef:
    """A method (``build(hp) -> (objectives, strategy)``) or a plug-in, a strategy swap or an added
    objective applicable to any method (``build(hp, objectives, strategy) -> (objectives, strategy)``)."""
    name: str
    build: Build | Apply
    hparams: dict[str, HParam]
    doc: str


METHODS = Registry("method")
PLUGINS = Registry("plugin")


def _registrar(registry: Registry):
    def register(name: str, doc: str, *hparams, **defaults):
        """Register ``name`` with its doc line and hyperparameters (``hparams``/``defaults`` as in :func:`_space`)."""
        def deco(fn):
            registry.add(name, MethodDef(name, fn, _space(*hparams, **defaults), doc))
            return fn
        return deco
    return register


method, plugin = _registrar(METHODS), _registrar(PLUGINS)


def hparam_space(name: str) -> dict[str, HParam]:
    """The declarations of method ``name`` (e.g. ``"simmmdg+gmp+mer"``: its plug-ins' too)."""
    base, plugs = _parse(name)
    space = dict(METHODS.get(base).hparams)
    for p in plugs:
        for k, h in PLUGINS.get(p).hparams.items():
            space.setdefault(k, h)
    return space


def sample_hparams(name: str, trial: int) -> dict:
    """Trial 0: the defaults of method ``name``; trial >= 1: a seeded draw of every searched
    hyperparameter (one generator per method, trial and hyperparameter)."""
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise ValueError(f"sample_hparams: trial must be an int >= 0, got {trial!r}")
    space = hparam_space(name)
    if trial == 0:
        return {k: h.default for k, h in space.items()}
    return {k: h.sample(trial_rng(name, trial, k)) for k, h in space.items()}


#: Hidden widths of projector / translator MLPs (the papers use 2048; smaller widths suit a CPU).
WIDTH_HPARAMS = ("con_hidden", "trans_hidden", "mer_hidden")


def width_overrides(name: str, hidden: int) -> dict:
    """``{hparam: hidden}`` for every projector/translator width that method ``name`` has."""
    return {k: hidden for k in WIDTH_HPARAMS if k in hparam_space(name)}


def non_default(name: str, overrides: dict) -> dict:
    """``overrides`` without the entries equal to method ``name``'s defaults (checked by :func:`resolve`).

    Run ids hash the overrides as given, so spelling a default out would give the same run a new id.
    """
    resolve(name, overrides)
    space = hparam_space(name)
    return {k: v for k, v in overrides.items() if space[k].default != v}


def _parse(name: str) -> tuple[str, list[str]]:
    base, *plugs = name.split("+")
    twice = sorted({p for p in plugs if plugs.count(p) > 1 or p == base})
    if twice:
        raise ValueError(f"method {name!r} applies the plugin(s) {twice} twice"
                         + (f" (method {base!r} already includes it)" if base in twice else ""))
    if base not in METHODS:
        raise KeyError(f"unknown method {base!r}; valid choices: {METHODS.names()} "
                       f"(optionally followed by +plugin, plugins: {PLUGINS.names()})")
    for p in plugs:
        if p not in PLUGINS:
            raise KeyError(f"unknown plugin {p!r} in method {name!r}; valid plugins: {PLUGINS.names()}")
    return base, plugs


def resolve(name: str, overrides: dict | None = None) -> tuple[list[Spec], Spec, dict]:
    """Objectives, strategy and the full hyperparameters of ``name`` (e.g. ``"simmmdg+gmp+mer"``)."""
    base, plugs = _parse(name)
    space = hparam_space(name)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(space))
    if unknown:
        raise KeyError(f"method {name!r} has no hyperparameter(s) {unknown}; its hyperparameters: {sorted(space)}")
    hp = {k: h.default for k, h in space.items()}
    for k, v in overrides.items():
        hp[k] = space[k].check(v, name)
    objectives, strategy = METHODS.get(base).build(hp)
    for p in plugs:
        objectives, strategy = PLUGINS.get(p).build(hp, objectives, strategy)
    return objectives, strategy, hp


@method("erm", "Late fusion trained with cross-entropy only.")
def _erm(hp):
    return [("ce", {})], ("sum", {})


@method("base", "GMP's base: L = L_c + lambda * L_d, domain discriminator behind gradient reversal.",
        "lambda_d", "disc_hidden")
def _base(hp):
    return [("ce", {}), ("domain_adv", {"weight": hp["lambda_d"], "hidden": hp["disc_hidden"]})], ("sum", {})


class Method(nn.Module):
    """A model, its objectives (with their own modules) and a gradient strategy."""

    def __init__(self, model: MultimodalModel, objectives: list[Objective], strategy: Strategy):
        super().__init__()
        self.model = model
        self.objectives = nn.ModuleList(objectives)
        self.strategy = strategy
        self.train_options: dict = {}          # optimizer / sampler a method asks the trainer for
        for part in (strategy, *objectives):   # parts that need the model (e.g. DRB's initial weights)
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
        "lambda_mer", "mer_alpha_marg", "mer_alpha_spec", "mer_dim", "mer_hidden", "mer_on")
def _mer_plugin(hp, objectives, strategy):
    return objectives + [("mer", {"weight": hp["lambda_mer"], "alpha_marg": hp["mer_alpha_marg"],
                                  "alpha_spec": hp["mer_alpha_spec"], "dim": hp["mer_dim"],
                                  "hidden": hp["mer_hidden"], "on": hp["mer_on"]})], strategy


@method("mer", "MER-DG variant A: late fusion (CE) + the MER plugin (same as 'erm+mer').", PLUGINS.get("mer").hparams)
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
        "lambda_d", "disc_hidden", "alpha_k", "alpha_p", "gmp_modulate", "gmp_project", "gmp_ablation",
        "gmp_ogm_form", "gmp_variant", "unimodal_weight", "gmp_engine", "gmp_log_every",
        "released_dom_weight", "released_grl", "released_proj_dim", "released_train_disc")
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
        "encoder gradients.", PLUGINS.get("gmp").hparams, METHODS.get("base").hparams)
def _gmp(hp):
    return _gmp_plugin(hp, *_base(hp))


# ------------------------------------------------------------------------------------------------
# SimMMDG and RNA-Net (mmdg/objectives/simmmdg.py, rna.py).  Defaults are the released SimMMDG
# script's (SIMMMDG_PIPELINE_AND_PEERS.md §1.5/§1.6): alpha_contrast 3.0, temp 0.1 with SupCon's
# base_temperature left at 0.07 (loss scaled by 0.1/0.07; con_base_temp=0.0 removes the quirk),
# projector hidden 2048 / out 128 with BatchNorm, alpha_trans 0.1, trans_hidden_num 2048, dropout
# 0.5, explore_loss_coeff 0.7.  Hidden widths of 2048 are the paper's; smaller suit CPU.
# RNA-Net's weight (lambda_rna = 1.0) is not in the notes (no code released): a stated choice.

@method("simmmdg", "SimMMDG: CE + alpha_con SupCon on projected shared halves + beta_dist (-MSE(shared, "
        "specific)) + alpha_trans cross-modal translation; strategy sum.",
        "alpha_con", "con_temp", "con_base_temp", "con_dim", "con_hidden", "con_norm", "beta_dist",
        "alpha_trans", "trans_hidden", "trans_dropout")
def _simmmdg(hp):
    return [("ce", {}),
            ("supcon_shared", {"weight": hp["alpha_con"], "temperature": hp["con_temp"],
                               "base_temperature": hp["con_base_temp"] or None, "dim": hp["con_dim"],
                               "hidden": hp["con_hidden"], "norm": hp["con_norm"]}),
            ("ss_distance", {"weight": hp["beta_dist"]}),
            ("translation", {"weight": hp["alpha_trans"], "hidden": hp["trans_hidden"],
                             "dropout": hp["trans_dropout"]})], ("sum", {})


@method("rna", "RNA-Net: CE + lambda_rna (mean|f_a| / mean|f_b| - 1)^2 on the encoder features; strategy sum.",
        "lambda_rna")
def _rna(hp):
    return [("ce", {}), ("rna", {"weight": hp["lambda_rna"]})], ("sum", {})


# ------------------------------------------------------------------------------------------------
# Gradient-balancing baselines (GMP Table 2; SIMMMDG_PIPELINE_AND_PEERS.md §4): mmdg/strategies/
# ogm_ge.py, pcgrad.py, mmpareto.py, agm.py and mmdg/objectives/grad_blending.py.  Each is the original method on
# cross-entropy; lambda_d > 0 adds GMP's domain-adversarial term (GMP's "Base" + the method).
# Defaults: OGM-GE alpha 0.1 and epochs 0-50 (its README), GE on; MMPareto gamma 1.5 with
# unimodal heads of weight 1; PCGrad sum (Yu et al.); AGM alpha 1.0 (not in our notes: a stated
# choice).  +gmp needs the 'sum' strategy and refuses all but grad_blending (an objective weighting,
# which +gmp then modulates like any 'cls' term).

def _with_domain(hp: dict, objectives: list[Spec]) -> list[Spec]:
    if hp["lambda_d"] > 0:
        return objectives + [("domain_adv", {"weight": hp["lambda_d"], "hidden": hp["disc_hidden"]})]
    return objectives


@method("ogm_ge", "OGM-GE: CE; the dominant modality's encoder gradient is scaled by "
        "1 - tanh(alpha (rho - 1)) from the logit-share confidence ratio, plus Gaussian noise (GE).",
        "ogm_alpha", "ogm_ge", "ogm_conv_only", "modulation_starts", "modulation_ends", "ogm_literal",
        *_BASELINE_DOMAIN)
def _ogm_ge(hp):
    return _with_domain(hp, [("ce", {})]), ("ogm_ge", {
        "alpha": hp["ogm_alpha"], "ge": hp["ogm_ge"], "conv_only": hp["ogm_conv_only"],
        "modulation_starts": hp["modulation_starts"], "modulation_ends": hp["modulation_ends"],
        "literal": hp["ogm_literal"]})


@method("pcgrad", "PCGrad across the terms (fused CE, unimodal CE on the logit shares): conflicting "
        "task gradients projected onto each other's normal plane on the shared parameters.",
        "uni_weight", "pcgrad_reduction", *_BASELINE_DOMAIN)
def _pcgrad(hp):
    return (_with_domain(hp, [("ce", {}), ("unimodal_ce", {"weight": hp["uni_weight"]})]),
            ("pcgrad", {"reduction": hp["pcgrad_reduction"]}))


@method("mmpareto", "MMPareto: CE + unimodal heads; per encoder, Pareto (min-norm) integration of "
        "the multimodal and unimodal gradients when they conflict, norm floor, times gamma.",
        "uni_weight", "mmpareto_gamma", *_BASELINE_DOMAIN)
def _mmpareto(hp):
    return (_with_domain(hp, [("ce", {}), ("unimodal_heads", {"weight": hp["uni_weight"]})]),
            ("mmpareto", {"gamma": hp["mmpareto_gamma"], "uni_terms": ["unimodal_heads"]}))


@method("agm", "AGM: CE; each encoder's classification gradient scaled by exp(alpha (opt - ratio)) "
        "from Shapley-style mono-modal responses against their running average.",
        "agm_alpha", *_BASELINE_DOMAIN)
def _agm(hp):
    return _with_domain(hp, [("ce", {})]), ("agm", {"alpha": hp["agm_alpha"]})


@method("grad_blending", "Gradient-Blending: fused + unimodal heads' CE weighted by dG/dO^2 estimated "
        "each epoch from train vs source-validation losses (strategy sum).",
        "gb_heads")
def _grad_blending(hp):
    # no lambda_d here: it would override the gmp plugin's default (0.3) in 'grad_blending+gmp'
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
        "cmrf_alpha_con", "cmrf_distill", "cmrf_uni", "cmrf_temp", "cmrf_base_temp", "cmrf_mix_alpha",
        "cmrf_sma_start", "cmrf_dim", "con_hidden", "cmrf_down", "cmrf_down_weight")
def _cmrf(hp):
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
        METHODS.get("simmmdg").hparams, "ent_temp", "ent_min", "jigsaw_weight", "jigsaw_splits", "jigsaw_perms",
        "jigsaw_hidden", "mask_ratio")
def _moosa(hp):
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
        PLUGINS.get("gmp").hparams, gmp_variant="released", alpha_p=0.1)
def _gmp_released(hp):
    return _gmp_plugin(hp, *_erm(hp))


@method("cggm", "CGGM: CE; per-modality classifiers on detached features; encoder gradients scaled by "
        "rho B_m from their accuracy gains, + lambda L_gm (classifier/fused-head weight cosines), clip 0.8.",
        "cggm_rho", "cggm_lambda", "cggm_clip", "cggm_heads_weight", *_BASELINE_DOMAIN)
def _cggm(hp):
    return (_with_domain(hp, [("ce", {}), ("cggm_heads", {"weight": hp["cggm_heads_weight"]})]),
            ("cggm", {"rho": hp["cggm_rho"], "lam": hp["cggm_lambda"], "clip": hp["cggm_clip"]}))


@method("drb", "DRB (Diagnosing & Re-learning, ECCV 2024): CE; every drb_every epochs (at most drb_times) each "
        "encoder is softly re-initialised by tanh(drb_lambda * |train - val k-means purity|); strategy sum.",
        "drb_lambda", "drb_every", "drb_times")
def _drb(hp):
    return [("ce", {}), ("drb", {"lam": hp["drb_lambda"], "every": hp["drb_every"], "times": hp["drb_times"]})], \
        ("sum", {})


@method("balgrad", "BALGRAD: CE + unimodal heads' CE + symmetric KL between their predictions; KL encoder "
        "gradients reweighted by unimodal loss share (our reading), fused-CE gradient projected off the "
        "KL gradient on conflict.", "balgrad_uni_weight", "balgrad_kl_weight", "balgrad_weighting", *_BASELINE_DOMAIN)
def _balgrad(hp):
    return (_with_domain(hp, [("ce", {}), ("unimodal_heads", {"weight": hp["balgrad_uni_weight"]}),
                                          ("modality_kl", {"weight": hp["balgrad_kl_weight"]})]),
            ("balgrad", {"weighting": hp["balgrad_weighting"]}))


@method("mer_released", "MER-DG as released (train_mer_dg.py): late fusion CE + lambda_mer 3 * MER on "
        "LayerNorm projectors (hidden 2048), LARS (eta 1e-3, momentum 0.9, wd 1e-6, bias/norm excluded), "
        "balanced per-domain batches.  Recipe: RECIPES['mer_released']; its selection is the oracle "
        "(final['oracle_test_acc']).",
        PLUGINS.get("mer").hparams, "optimizer", "lars_eta", "lars_momentum", "lars_weight_decay", "sampler",
        optimizer="lars", sampler="balanced_domain")
def _mer_released(hp):
    return _mer_plugin(hp, *_erm(hp))
