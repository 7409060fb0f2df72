"""Evaluations of a trained method beyond the trainer's accuracies (missing modalities)."""
from .missing import FILLS, flat_missing, missing_for_epoch, missing_modality_eval, translator_of

__all__ = ["FILLS", "flat_missing", "missing_for_epoch", "missing_modality_eval", "translator_of"]
