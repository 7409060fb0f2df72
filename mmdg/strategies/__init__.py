"""Gradient strategies (sum, GMP, OGM-GE, PCGrad, MMPareto, AGM, CGGM, BALGRAD)."""
from .base import STRATEGIES, Strategy, Sum, build_strategy, total_loss
from .gmp import ABLATIONS, GMP, gmp_combine  # registers gmp
from .agm import AGM  # registers agm
from .mmpareto import MMPareto  # registers mmpareto
from .ogm_ge import OGMGE  # registers ogm_ge
from .pcgrad import PCGrad  # registers pcgrad
from .balgrad import BalGrad  # registers balgrad
from .cggm import CGGM  # registers cggm
from .gmp_released import GMPReleased  # registers gmp_released (gmp_variant="released")

__all__ = ["ABLATIONS", "AGM", "BalGrad", "CGGM", "GMP", "GMPReleased", "MMPareto", "OGMGE", "PCGrad", "STRATEGIES", "Strategy",
           "Sum", "build_strategy", "gmp_combine", "total_loss"]
