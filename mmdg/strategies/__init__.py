"""Gradient strategies (sum, GMP, OGM-GE, PCGrad, ...)."""
from .base import STRATEGIES, Strategy, Sum, build_strategy, total_loss
from .gmp import ABLATIONS, GMP, gmp_combine  # registers gmp

__all__ = ["ABLATIONS", "GMP", "STRATEGIES", "Strategy", "Sum", "build_strategy", "gmp_combine", "total_loss"]
