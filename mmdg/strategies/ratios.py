"""Per-modality confidence ratios and their suppression coefficients (GMP Eqs. 8-10), shared by GMP,
GMP as released and OGM-GE (which uses rho with the "- 1" form)."""
from __future__ import annotations

import torch

#: Ratio denominators are clamped here (the authors add 1e-6).
RATIO_FLOOR = 1e-12


def detached_float(x: torch.Tensor) -> torch.Tensor:
    """Detached, at least float32 (float64 stays float64)."""
    x = x.detach()
    return x if x.dtype == torch.float64 else x.float()


def discrepancy_ratios(q_sums: torch.Tensor, c_sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rho, sigma (GMP Eq. 8) from per-modality confidence sums of shape (M,).

    "other" = mean over the other modalities; M == 1 gives rho = sigma = 1.
    """
    q_sums, c_sums = detached_float(q_sums), detached_float(c_sums)
    m = q_sums.numel()
    if m < 2:
        return torch.ones_like(q_sums), torch.ones_like(c_sums)
    others = 1.0 - torch.eye(m, dtype=q_sums.dtype, device=q_sums.device)   # sum the others directly
    q_other = (others @ q_sums) / (m - 1)                                     # (no total - own cancellation)
    c_other = (others.to(c_sums.dtype) @ c_sums) / (m - 1)
    rho = q_sums / q_other.clamp_min(RATIO_FLOOR)
    sigma = c_other / c_sums.clamp_min(RATIO_FLOOR)
    return rho, sigma


def task_strength(rho: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gamma = rho / sigma (GMP §CAGP), sigma clamped away from 0 so that it is never NaN.

    Only reported: the branch test uses the equivalent ``rho >= sigma`` (sigma > 0).
    """
    return rho / sigma.clamp_min(RATIO_FLOOR)


def suppression(ratio: torch.Tensor, alpha: float, ogm_form: bool = False) -> torch.Tensor:
    """1 - tanh(alpha * ratio) where ratio > 1, else 1 (GMP Eqs. 9-10), clamped to [0, 1].

    ``ogm_form``: 1 - tanh(alpha * (ratio - 1)) instead (OGM-GE's continuous form).
    """
    x = ratio - 1.0 if ogm_form else ratio
    coeff = (1.0 - torch.tanh(alpha * x)).clamp(0.0, 1.0)
    return torch.where(ratio > 1.0, coeff, torch.ones_like(coeff))
