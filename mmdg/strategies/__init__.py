"""Gradient strategies (sum, GMP, OGM-GE, PCGrad, ...)."""
from .base import STRATEGIES, Strategy, Sum, build_strategy, total_loss

__all__ = ["STRATEGIES", "Strategy", "Sum", "build_strategy", "total_loss"]
