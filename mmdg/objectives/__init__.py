"""Objectives (losses) a method is composed of."""
from . import core  # noqa: F401  (registers ce, domain_adv, unimodal_ce)
from . import unimodal_heads  # noqa: F401  (registers unimodal_heads, GMP's authors' variant)
from ..feature_stats import marginal_entropy_loss, mer_loss, mer_parts, spectral_entropy_loss  # noqa: F401  (MER-DG)
from .mer import MER  # noqa: F401
from . import rna, simmmdg  # noqa: F401  (registers supcon_shared, ss_distance, translation; rna)
from . import cmrf  # noqa: F401  (registers cmrf_unimodal, cmrf_flatten)
from . import moosa  # noqa: F401  (registers moosa_heads, moosa_jigsaw, masked_translation)
from . import drb, peers  # noqa: F401  (registers drb, cggm_heads, modality_kl, domain_adv_released)
from .grad_blending import GradBlending  # noqa: F401  (registers grad_blending)
from .base import OBJECTIVES, Context, Objective, Term, build_objective, true_class_prob

__all__ = ["OBJECTIVES", "Context", "GradBlending", "Objective", "Term", "build_objective", "true_class_prob",
           "MER", "mer_loss", "mer_parts", "marginal_entropy_loss", "spectral_entropy_loss"]
