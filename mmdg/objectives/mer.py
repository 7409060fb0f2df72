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

The diagnostics :func:`gaussian_entropy` and :func:`effective_rank` are not part of
the loss; they measure the feature distribution (Fusion-Overfitting analysis).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch
from ..models.heads import projector
from ..models.model import ModelOutput
from .base import Context, OBJECTIVES, Objective, Term, full_precision, no_autocast

EPS = 1e-4

__all__ = ["MER", "mer_loss", "mer_parts", "marginal_entropy_loss", "spectral_entropy_loss",
           "gaussian_entropy", "effective_rank"]


def _upcast(z: torch.Tensor) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a batch of vectors of shape (N, D), got {shape}")
    return full_precision(z)


def _check_eps(eps: float) -> float:
    if not isinstance(eps, (int, float)) or not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    return float(eps)


def _zero(z: torch.Tensor) -> torch.Tensor:
    """A zero scalar still attached to ``z``'s graph, so that ``backward`` works on it."""
    return z.sum() * 0.0


def _marginal(z: torch.Tensor, eps: float) -> torch.Tensor:
    if z.shape[0] < 2:
        # The unbiased variance of one sample is undefined (the released code would give NaN).
        return _zero(z)
    std = torch.sqrt(z.var(dim=0, correction=1) + eps)
    return F.relu(1.0 - std).mean()


def _spectral(z: torch.Tensor, eps: float) -> torch.Tensor:
    n, d = z.shape
    if n < 2 or d < 2:
        return _zero(z)
    std = z.std(dim=0, correction=0)            # biased; torch's backward is 0 where std == 0
    x = (z - z.mean(dim=0)) / torch.clamp(std + eps, min=eps)
    r = x.T @ x / (n - 1) + eps * torch.eye(d, dtype=z.dtype, device=z.device)
    return -torch.linalg.slogdet(r).logabsdet / d


def marginal_entropy_loss(z: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """VICReg variance floor ``mean_d max(0, 1 - sqrt(var_d + eps))`` (unbiased var); 0 if N < 2."""
    eps = _check_eps(eps)
    with no_autocast(z):
        return _marginal(_upcast(z), eps)


def spectral_entropy_loss(z: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``-(1/D) log|det R|`` of the eps-regularised batch correlation; 0 if N < 2 or D < 2.

    With N <= D the matrix ``X^T X`` has rank at most N - 1: the other D - N + 1
    eigenvalues of ``R`` are exactly ``eps`` and add the constant
    ``-(D - N + 1)/D * log(eps)`` (about 8.13 for N = 16, D = 128), which has no gradient.
    """
    eps = _check_eps(eps)
    with no_autocast(z):
        return _spectral(_upcast(z), eps)


def mer_parts(z: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_marg, L_spec)`` of a batch ``z`` of shape (N, D)."""
    eps = _check_eps(eps)
    with no_autocast(z):
        z = _upcast(z)
        return _marginal(z, eps), _spectral(z, eps)


def mer_loss(z: torch.Tensor, alpha_marg: float = 1.0, alpha_spec: float = 1.0,
             eps: float = EPS) -> torch.Tensor:
    """The released MER estimator: ``alpha_marg * L_marg(z) + alpha_spec * L_spec(z)``.

    A float32 (float64 for float64 input) scalar, also under autocast.  Minimising it
    raises each dimension's batch std towards 1 and decorrelates the batch.
    """
    marg, spec = mer_parts(z, eps)
    return alpha_marg * marg + alpha_spec * spec


def _cov(z: torch.Tensor) -> torch.Tensor:
    zc = z - z.mean(dim=0)
    return zc.T @ zc / max(z.shape[0] - 1, 1)


def gaussian_entropy(z: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Entropy (nats) of a Gaussian with ``z``'s unbiased batch covariance:
    ``1/2 log det(Sigma + eps I) + D/2 log(2 pi e)``.

    ``eps I`` keeps it finite for rank-deficient batches (N <= D or collapsed
    dimensions), where it is dominated by ``(D - rank)/2 log eps``; it depends on the
    feature scale, so compare it only between features of the same width and scale.
    """
    eps = _check_eps(eps)
    with no_autocast(z):
        z = _upcast(z)
        d = z.shape[1]
        sigma = _cov(z) + eps * torch.eye(d, dtype=z.dtype, device=z.device)
        return 0.5 * torch.linalg.slogdet(sigma).logabsdet + 0.5 * d * math.log(2 * math.pi * math.e)


def effective_rank(z: torch.Tensor, spectrum: str = "singular", center: bool = True) -> torch.Tensor:
    """Effective rank of a batch (Roy & Vetterli 2007): ``exp(-sum_k p_k log p_k)``.

    ``spectrum="singular"`` (default, Roy & Vetterli; also RankMe): ``p_k = s_k / sum s``
    with ``s_k`` the singular values of the (centred, if ``center``) batch matrix.
    ``spectrum="eigen"``: ``p_k = lambda_k / sum lambda`` with ``lambda_k = s_k^2/(N-1)``
    the covariance eigenvalues (the reading of MER-DG.md §2.4); it weights large
    directions more, so it is never above the singular-value version.  Both lie in
    ``[1, min(N - 1, D)]`` for a centred batch (``min(N, D)`` uncentred); a constant
    batch gives 0.
    """
    if spectrum not in ("singular", "eigen"):
        raise ValueError(f"effective_rank: spectrum must be 'singular' or 'eigen', got {spectrum!r}")
    with no_autocast(z):
        z = _upcast(z)
        if center:
            z = z - z.mean(dim=0)
        s = torch.linalg.svdvals(z)
        w = s if spectrum == "singular" else s * s
        total = w.sum()
        if not total > 0:
            return total * 0.0
        p = w / total
        return torch.exp(-torch.special.xlogy(p, p).sum())


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
        self.on, self.normalize, self.eps = on, bool(normalize), _check_eps(eps)
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
                    z = F.normalize(_upcast(z), dim=1)
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
