"""Statistics of a batch of features, in full precision: the Gaussian entropy surrogates MER-DG
minimises (the released code's estimator, see :mod:`mmdg.objectives.mer`) and the Gaussian entropy
and effective rank the diagnostics report.  Shared by the MER objective and mmdg.diagnostics.

Deviations from the released code (stated): with a single sample (N < 2) the unbiased variance is
undefined and the released hinge returns NaN; here both terms return a zero that is still attached
to the graph.  ``eps`` must be > 0 (with ``eps = 0`` a collapsed batch gives ``log 0``).
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

EPS = 1e-4


def no_autocast(z: torch.Tensor):
    """A context that switches autocast off on ``z``'s device (losses computed in full precision)."""
    try:
        return torch.autocast(device_type=z.device.type, enabled=False)
    except RuntimeError:  # a device type without autocast support
        return nullcontext()


def full_precision(z: torch.Tensor) -> torch.Tensor:
    """``z`` as float32, or float64 if it already is (losses never run in half precision)."""
    return z.to(torch.float64 if z.dtype == torch.float64 else torch.float32)


def feature_batch(z: torch.Tensor) -> torch.Tensor:
    """``z`` in full precision, or a ValueError unless it is a batch of vectors (N, D)."""
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a batch of vectors of shape (N, D), got {shape}")
    return full_precision(z)


def check_eps(eps: float) -> float:
    """``eps`` as a float if it is a finite number > 0, else a ValueError."""
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
    eps = check_eps(eps)
    with no_autocast(z):
        return _marginal(feature_batch(z), eps)


def spectral_entropy_loss(z: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``-(1/D) log|det R|`` of the eps-regularised batch correlation; 0 if N < 2 or D < 2.

    With N <= D the matrix ``X^T X`` has rank at most N - 1: the other D - N + 1
    eigenvalues of ``R`` are exactly ``eps`` and add the constant
    ``-(D - N + 1)/D * log(eps)`` (about 8.13 for N = 16, D = 128), which has no gradient.
    """
    eps = check_eps(eps)
    with no_autocast(z):
        return _spectral(feature_batch(z), eps)


def mer_parts(z: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_marg, L_spec)`` of a batch ``z`` of shape (N, D)."""
    eps = check_eps(eps)
    with no_autocast(z):
        z = feature_batch(z)
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
    eps = check_eps(eps)
    with no_autocast(z):
        z = feature_batch(z)
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
        z = feature_batch(z)
        if center:
            z = z - z.mean(dim=0)
        s = torch.linalg.svdvals(z)
        w = s if spectrum == "singular" else s * s
        total = w.sum()
        if not total > 0:
            return total * 0.0
        p = w / total
        return torch.exp(-torch.special.xlogy(p, p).sum())
