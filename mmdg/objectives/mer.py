"""MER-DG: modality-entropy regularisation (Yarici & AlRegib, ICML 2026).

The estimator is the released code's Gaussian, batch-statistics surrogate of a
feature distribution's entropy (MER-DG.md §3.1).  For a Gaussian,
``H(z) = D/2 log(2 pi e) + sum_d log sigma_d + 1/2 log det R``: marginal
entropies plus (minus) total correlation.  MER bounds the first with a VICReg
variance hinge and the second with the log-determinant of the batch correlation:

* ``L_marg(Z) = mean_d max(0, 1 - sqrt(s_d^2 + eps))``, ``s_d^2`` the unbiased
  batch variance;
* ``L_spec(Z) = -(1/D) log|det R|``, ``R = X^T X / (N - 1) + eps I``, ``X`` the batch
  standardised with the *biased* std (``(Z - mu) / max(std + eps, eps)``), so the
  diagonal of ``R`` is ``N / (N - 1)``, as in the released code;
* ``MER(Z) = alpha_marg L_marg + alpha_spec L_spec``.

Everything is computed in float32 (float64 when given float64), with autocast off.

Deviations from the released code (stated): with a single sample (N < 2) the
unbiased variance is undefined and the released hinge returns NaN; here both
terms return a zero that is still attached to the graph.  ``eps`` must be > 0
(with ``eps = 0`` a collapsed batch gives ``log 0``).

The estimators live in :mod:`mmdg.feature_stats`, next to the diagnostics
(:func:`~mmdg.feature_stats.gaussian_entropy`, :func:`~mmdg.feature_stats.effective_rank`) that
measure the feature distribution (Fusion-Overfitting analysis) and are not part of the loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch
from ..feature_stats import EPS, check_eps, feature_batch, mer_parts
from ..models.heads import projector
from ..models.model import ModelOutput
from .base import Context, OBJECTIVES, Objective, Term

@OBJECTIVES.register("mer")
class MER(Objective):
    """``lambda * sum_m MER(P_m(z^m))``: MER-DG's per-modality entropy regulariser (kind "other").

    Variant A of the released code: each modality gets its own projector
    ``P_m`` (Linear-LayerNorm-ReLU-Linear-LayerNorm-ReLU-Linear to ``dim`` = 128,
    hidden 2048), whose output is *not* normalised; only MER trains it, and its
    gradient reaches the encoder through it.  The per-modality terms are summed,
    not averaged.  The projectors are submodules of this objective, hence of the
    :class:`~mmdg.methods.Method`, so the trainer's optimizer updates them.
    ``on="features"`` applies MER to the encoder features directly (no projector).
    ``norm="batch"`` with ``normalize=True`` (L2-normalised outputs) gives variant
    B's projector form (SimMMDG + MER, MER-DG.md §3.2 B), for when SimMMDG's shared
    and specific halves exist.

    Caveats:

    * **Rank N - 1.** The log-det only sees the batch: with batch 16 and 128 dims,
      ``R`` has rank 15 plus ``eps I``; the other 113 eigenvalues equal ``eps`` and
      contribute a constant (about 8.13) with no gradient.  At small batch the
      spectral term therefore spreads the samples within the batch (equalises the
      15 non-zero eigenvalues of the Gram matrix) rather than decorrelating all
      128 dimensions, and absolute values are not comparable across batch sizes.
    * **Optimizer (stated deviation).** The authors' variant-A script defaults to
      LARS at lr 1e-4 without schedule (steps too small to train, MER-DG.md §4);
      here the trainer's optimizer (Adam) is used, except by the method ``mer_released``
      (the released recipe: LARS, balanced per-domain batches; ``mmdg.methods.RECIPES``).
    """

    kind = "other"

    def __init__(self, ctx: Context, weight: float = 3.0, alpha_marg: float = 1.0, alpha_spec: float = 1.0,
                 dim: int = 128, hidden: int = 2048, on: str = "projector", norm: str = "layer",
                 normalize: bool = False, eps: float = EPS):
        super().__init__("mer", weight)
        if on not in ("projector", "features"):
            raise ValueError(f"mer: on must be 'projector' or 'features', got {on!r}")
        for name, value in (("weight", weight), ("alpha_marg", alpha_marg), ("alpha_spec", alpha_spec)):
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"mer: {name} must be a number >= 0, got {value!r}")
        for name, value in (("dim", dim), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"mer: {name} must be an int >= 1, got {value!r}")
        if not ctx.modalities:
            raise ValueError("mer: the model has no modalities")
        self.modalities = list(ctx.modalities)
        self.alpha_marg, self.alpha_spec = float(alpha_marg), float(alpha_spec)
        self.on, self.normalize, self.eps = on, bool(normalize), check_eps(eps)
        self.projectors = nn.ModuleDict(
            {m: projector(ctx.feat_dims[m], dim, hidden, norm) for m in self.modalities}
            if on == "projector" else {})

    def embed(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The vectors MER is computed on, per modality."""
        out = {}
        for m in self.modalities:
            z = self.projectors[m](feats[m]) if self.on == "projector" else feats[m]
            if self.normalize:
                with no_autocast(z):
                    z = F.normalize(feature_batch(z), dim=1)
            out[m] = z
        return out

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        total, logs = None, {}
        for m, z in self.embed(out.feats).items():
            marg, spec = mer_parts(z, self.eps)
            value = self.alpha_marg * marg + self.alpha_spec * spec
            total = value if total is None else total + value
            logs[f"mer_marg_{m}"], logs[f"mer_spec_{m}"] = marg.detach(), spec.detach()
        logs["mer"] = total.detach()
        return Term(self.name, self.kind, self.weight * total, None, logs)
