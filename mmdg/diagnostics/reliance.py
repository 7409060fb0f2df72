"""Co-occurrence reliance: how much the fused prediction needs the modalities' sample-level pairing.

Our own test of Fusion Overfitting (MER-DG.md §2.4.3; not in the paper or its code).
Each sample's features of one modality are swapped with those of *another sample of
the same class and domain*.  Every modality still carries a correct, in-domain
class signal, only the instance-level co-occurrence of the modalities is broken.
A fusion that classifies from each modality's class evidence loses little; one
that relies on cross-modal co-occurrences (e.g. the agreement of nuisance
factors shared by the modalities in the source recordings) loses a lot.  Comparing
the drop on source and target shows whether such reliance transfers.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from .features import Features, as_model, model_device

Classifier = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def group_derangement(groups: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A permutation of ``range(N)`` that moves every sample to another sample of its group.

    ``groups`` (N,) or (N, k) integer keys (rows are keys).  Within each group of size
    >= 2, a random cyclic shift of a random order, so no sample keeps its own
    position; singleton groups stay in place.
    """
    if groups.dim() == 1:
        groups = groups[:, None]
    if groups.dim() != 2:
        raise ValueError(f"groups must have shape (N,) or (N, k), got {tuple(groups.shape)}")
    _, inverse = torch.unique(groups.cpu(), dim=0, return_inverse=True)
    perm = torch.arange(groups.shape[0])
    for g in range(int(inverse.max()) + 1 if len(inverse) else 0):
        idx = (inverse == g).nonzero().squeeze(1)
        if len(idx) > 1:
            order = idx[torch.randperm(len(idx), generator=generator)]
            perm[order] = order.roll(1)
    return perm


def _classifier(model) -> Classifier:
    """A ``feats -> logits`` function: a model's fusion + classifier, or ``model`` itself if callable."""
    try:
        net = as_model(model)
    except TypeError:
        if callable(model):
            return model
        raise
    device = model_device(net)

    def classify(feats):
        was = net.training
        net.eval()
        try:
            return net.classify({m: feats[m].to(device) for m in net.modalities}, shares=False)[0]
        finally:
            net.train(was)
    return classify


@torch.no_grad()
def _accuracy(classify: Classifier, feats: dict[str, torch.Tensor], label: torch.Tensor, chunk: int) -> float:
    n, correct = len(label), 0
    for s in range(0, n, chunk):
        logits = classify({m: z[s:s + chunk] for m, z in feats.items()})
        correct += (logits.argmax(1).cpu() == label[s:s + chunk]).sum().item()
    return 100.0 * correct / n


def shuffle_reliance(model, features: Features, modalities: list[str] | None = None, repeats: int = 5,
                     seed: int = 0, within_domain: bool = True, chunk: int = 4096) -> dict[str, dict[str, float]]:
    """Accuracy drop of the fused prediction when one modality is re-paired within (class, domain).

    ``model``: a MultimodalModel / Method (its fusion and classifier are applied to
    ``features``, e.g. from :func:`~mmdg.diagnostics.features.extract_features`), or
    any callable ``feats -> logits``.  For each modality m (default all), over
    ``repeats`` random derangements: ``{"acc": intact %, "acc_shuffled": mean %,
    "drop": acc - acc_shuffled, "drop_std": std over repeats, "repaired": fraction of
    samples actually given another partner}``.  ``within_domain=False`` groups by class only.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    if len(features) == 0:
        raise ValueError("shuffle_reliance: features are empty")
    classify = _classifier(model)
    mods = list(modalities or features.modalities)
    unknown = [m for m in mods if m not in features.feats]
    if unknown:
        raise KeyError(f"shuffle_reliance: modalities {unknown} not in the features ({features.modalities})")
    groups = torch.stack([features.label, features.domain], 1) if within_domain else features.label
    base = _accuracy(classify, features.feats, features.label, chunk)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in mods:
        accs, moved = [], 0.0
        for _ in range(repeats):
            perm = group_derangement(groups, g)
            moved = (perm != torch.arange(len(perm))).double().mean().item()
            shuffled = {k: (z[perm] if k == m else z) for k, z in features.feats.items()}
            accs.append(_accuracy(classify, shuffled, features.label, chunk))
        a = torch.tensor(accs, dtype=torch.float64)
        out[m] = {"acc": base, "acc_shuffled": a.mean().item(), "drop": base - a.mean().item(),
                  "drop_std": a.std(correction=0).item(), "repaired": moved}
    return out


def co_occurrence_reliance(model, sets: Mapping[str, Features], **kwargs) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`shuffle_reliance` on each named feature set (e.g. ``{"source": val, "target": test}``)."""
    return {name: shuffle_reliance(model, f, **kwargs) for name, f in sets.items()}
