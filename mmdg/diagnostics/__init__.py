"""Fusion-Overfitting diagnostics (MER-DG.md §2.4): library functions, no plotting.

1. Unimodal probing of frozen encoders: :func:`probe_split`, :func:`probe_modalities`.
2. Entropy and effective rank of each encoder's features: :func:`feature_stats`, tracked
   per epoch with :class:`FeatureTracker` (``train(..., on_epoch_end=tracker)``).
3. Co-occurrence reliance: :func:`shuffle_reliance` (accuracy drop when one modality is
   re-paired within class and domain) and :func:`cross_modal_similarity` (linear CKA,
   canonical correlations), source vs target.

:func:`fusion_overfitting_report` runs all of them on a trained model and its split.
"""
from __future__ import annotations

from .features import (Features, FeatureTracker, canonical_correlations, cross_modal_similarity,
                       extract_features, feature_stats, linear_cka)
from .probing import LinearProbe, fit_linear_probe, probe_modalities, probe_split
from .reliance import co_occurrence_reliance, group_derangement, shuffle_reliance

__all__ = ["Features", "FeatureTracker", "LinearProbe", "canonical_correlations", "co_occurrence_reliance",
           "cross_modal_similarity", "extract_features", "feature_stats", "fit_linear_probe",
           "fusion_overfitting_report", "group_derangement", "linear_cka", "probe_modalities", "probe_split",
           "shuffle_reliance"]


def fusion_overfitting_report(model, split, device=None, amp: bool = False, repeats: int = 5,
                              seed: int = 0) -> dict:
    """All diagnostics of a trained model on a split: source train / source val / target.

    Returns ``{"probe": {modality: {"train", "val", "target"}}, "stats": {set: {modality: ...}},
    "cross": {set: {"a/b": ...}}, "reliance": {set: {modality: ...}}}`` with sets
    ``train``, ``val`` (source validation) and ``target``; accuracies in percent.
    """
    sets = {name: extract_features(model, data, device, amp=amp)
            for name, data in (("train", split.train), ("val", split.val), ("target", split.test))}
    multi = len(sets["train"].modalities) > 1
    return {"probe": probe_modalities(sets["train"], {"val": sets["val"], "target": sets["target"]}),
            "stats": {k: feature_stats(f) for k, f in sets.items()},
            "cross": {k: cross_modal_similarity(f) for k, f in sets.items()} if multi else {},
            "reliance": co_occurrence_reliance(model, sets, repeats=repeats, seed=seed)}
