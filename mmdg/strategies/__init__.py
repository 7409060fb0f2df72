"""Gradient strategies (sum, GMP, OGM-GE, PCGrad, MMPareto, AGM) and Gradient-Blending."""
from .base import STRATEGIES, Strategy, Sum, build_strategy, total_loss
from .gmp import ABLATIONS, GMP, gmp_combine  # registers gmp
from .agm import AGM  # registers agm
from .grad_blending import GradBlending  # registers the grad_blending objective
from .mmpareto import MMPareto  # registers mmpareto
from .ogm_ge import OGMGE  # registers ogm_ge
from .pcgrad import PCGrad  # registers pcgrad

__all__ = ["ABLATIONS", "AGM", "GMP", "GradBlending", "MMPareto", "OGMGE", "PCGrad", "STRATEGIES", "Strategy",
           "Sum", "build_strategy", "gmp_combine", "total_loss"]
