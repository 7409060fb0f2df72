"""A 2-D t-SNE of features (van der Maaten & Hinton 2008), exact, for figures of a few thousand points.

GMP's Fig. 3 shows t-SNE maps of features; scikit-learn is not a dependency, so this is a small
exact implementation: Gaussian affinities calibrated per point to a perplexity by bisection on
the precision, symmetrised ``P = (P_j|i + P_i|j) / 2N``, Student-t affinities ``Q`` in the map,
gradient descent on ``KL(P || Q)`` with early exaggeration (x12 for the first 250 iterations),
momentum 0.5 then 0.8 and the per-coordinate gains of the original paper.  Cost O(N^2) memory and
time per iteration (float64): fine up to ~3,000 points.  Deterministic given ``seed``.
"""
from __future__ import annotations

import math

import torch


def _check(x: torch.Tensor, perplexity: float) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"tsne: x must be a (N, D) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"tsne: needs at least 4 points, got {n}")
    if not (isinstance(perplexity, (int, float)) and 1.0 <= perplexity < n - 1):
        raise ValueError(f"tsne: perplexity must be in [1, N - 1) = [1, {n - 1}), got {perplexity!r}")
    if not torch.isfinite(x).all():
        raise ValueError("tsne: x has non-finite values")


def conditional_affinities(x: torch.Tensor, perplexity: float = 30.0, tol: float = 1e-5,
                           max_iter: int = 100) -> torch.Tensor:
    """``P_j|i`` (rows sum to 1, zero diagonal) with each row's entropy = log(perplexity), float64.

    Row ``i`` is ``softmax_j(-beta_i |x_i - x_j|^2)`` over ``j != i``; ``beta_i`` is found by
    bisection (in log space) so that the row's Shannon entropy (nats) is ``log(perplexity)``.
    """
    _check(x, perplexity)
    x = x.detach().double()
    d2 = torch.cdist(x, x).pow(2)
    n = d2.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    target = math.log(perplexity)
    lo = torch.full((n,), -50.0, dtype=torch.float64)
    hi = torch.full((n,), 50.0, dtype=torch.float64)
    scale = d2.masked_fill(eye, float("inf")).min(1).values.clamp_min(1e-12)  # per-row distance scale
    for _ in range(max_iter):
        log_beta = (lo + hi) / 2
        logits = (-(log_beta.exp() / scale)[:, None] * d2).masked_fill(eye, float("-inf"))
        p = torch.softmax(logits, dim=1)
        h = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
        too_flat = h > target              # entropy too high: sharpen (raise beta)
        lo = torch.where(too_flat, log_beta, lo)
        hi = torch.where(too_flat, hi, log_beta)
        if (h - target).abs().max() < tol:
            break
    return p


def tsne(x: torch.Tensor, perplexity: float = 30.0, iterations: int = 750, learning_rate: float | None = None,
         seed: int = 0) -> torch.Tensor:
    """2-D t-SNE embedding (N, 2) of ``x`` (N, D); ``learning_rate`` defaults to max(N / 12, 50)."""
    _check(x, perplexity)
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"tsne: iterations must be an int >= 1, got {iterations!r}")
    n = x.shape[0]
    lr = max(n / 12.0, 50.0) if learning_rate is None else float(learning_rate)
    p = joint_affinities(x, perplexity)
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64) * 1e-4
    velocity = torch.zeros_like(y)
    gains = torch.ones_like(y)
    for it in range(iterations):
        exaggeration, momentum = (12.0, 0.5) if it < 250 else (1.0, 0.8)
        grad = kl_gradient(exaggeration * p, y)
        same = torch.sign(grad) == torch.sign(velocity)
        gains = torch.where(same, gains * 0.8, gains + 0.2).clamp_min(0.01)
        velocity = momentum * velocity - lr * gains * grad
        y = y + velocity
        y = y - y.mean(0)
    return y.float()


def kl_gradient(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``dKL(P || Q)/dy_i = 4 sum_j (p_ij - q_ij) (1 + |y_i - y_j|^2)^-1 (y_i - y_j)`` for joint ``p``."""
    num = 1.0 / (1.0 + torch.cdist(y, y).pow(2))
    num.fill_diagonal_(0.0)
    q = (num / num.sum()).clamp_min(1e-12)
    w = (p - q) * num
    return 4.0 * (w.sum(1, keepdim=True) * y - w @ y)


def joint_affinities(x: torch.Tensor, perplexity: float = 30.0) -> torch.Tensor:
    """Symmetrised ``P = (P_j|i + P_i|j) / 2N`` (sums to 1), float64."""
    p = conditional_affinities(x, perplexity)
    return ((p + p.T) / (2 * x.shape[0])).clamp_min(1e-12)


def kl_divergence(x: torch.Tensor, y: torch.Tensor, perplexity: float = 30.0) -> float:
    """``KL(P || Q)`` of an embedding ``y`` of ``x`` (the quantity t-SNE minimises)."""
    n = x.shape[0]
    p = joint_affinities(x, perplexity)
    num = 1.0 / (1.0 + torch.cdist(y.double(), y.double()).pow(2))
    num.fill_diagonal_(0.0)
    q = (num / num.sum()).clamp_min(1e-12)
    off = ~torch.eye(n, dtype=torch.bool)
    return float((p[off] * torch.log(p[off] / q[off])).sum())
