"""Objectives (losses) a method is composed of."""
from . import core  # noqa: F401  (registers ce, domain_adv, unimodal_ce)
from .base import OBJECTIVES, Context, Objective, Term, build_objective, true_class_prob

__all__ = ["OBJECTIVES", "Context", "Objective", "Term", "build_objective", "true_class_prob"]
