"""Per-modality encoder features of a trained model, and statistics of their distribution.

Fusion Overfitting (MER-DG.md §2, §2.4) predicts that joint training lowers
the entropy / effective rank of each encoder's features and that MER keeps them high.
This module extracts the features (:func:`extract_features`), measures them
(:func:`feature_stats`, :func:`cross_modal_similarity`) and tracks the measures
during training (:class:`FeatureTracker`, an ``on_epoch_end`` hook of
:func:`mmdg.train.train`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
from torch.utils.data import Dataset

from ..data.base import Batch, make_loader
from ..feature_stats import effective_rank, gaussian_entropy, mer_parts
from ..models.model import MultimodalModel


@dataclass
class Features:
    """Encoder features per modality, ``(N, d_m)`` float32 on the CPU, with labels and domains ``(N,)``."""

    feats: dict[str, torch.Tensor]
    label: torch.Tensor
    domain: torch.Tensor

    def __post_init__(self):
        n = int(self.label.shape[0])
        for m, z in self.feats.items():
            if z.dim() != 2 or z.shape[0] != n:
                raise ValueError(f"Features: modality {m!r} must have shape ({n}, d), got {tuple(z.shape)}")
        if tuple(self.domain.shape) != (n,):
            raise ValueError(f"Features: domain must have shape ({n},), got {tuple(self.domain.shape)}")

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def modalities(self) -> list[str]:
        return list(self.feats)

    def subset(self, index: torch.Tensor) -> "Features":
        """The samples selected by ``index`` (indices or a boolean mask)."""
        return Features({m: z[index] for m, z in self.feats.items()}, self.label[index], self.domain[index])


def as_model(model) -> MultimodalModel:
    """The :class:`MultimodalModel` of a model or of a :class:`~mmdg.methods.Method` (``.model``)."""
    inner = getattr(model, "model", None)
    if isinstance(inner, MultimodalModel):
        return inner
    if isinstance(model, MultimodalModel):
        return model
    raise TypeError(f"expected a MultimodalModel or a Method, got {type(model).__name__}")


def model_device(model: MultimodalModel, device=None) -> torch.device:
    """``device`` (default: where the model's parameters are); an error if the model is elsewhere."""
    param = next(model.parameters(), None)
    here = param.device if param is not None else torch.device("cpu")
    if device is None:
        return here
    device = torch.device(device)
    if param is not None and (device.type, device.index or 0) != (here.type, here.index or 0):
        raise ValueError(f"device={str(device)!r} but the model's parameters are on {str(here)!r}; "
                         f"move the model first or pass device=None")
    return device


def _batches(data, batch_size: int) -> Iterable[Batch]:
    if isinstance(data, Dataset):
        return make_loader(data, batch_size)
    return data


@torch.no_grad()
def extract_features(model, data, device=None, batch_size: int = 256, amp: bool = False) -> Features:
    """Encoder features of every sample of ``data``, with its labels and domains.

    ``model``: a :class:`MultimodalModel` or a Method; it is run in eval mode (its
    previous mode is restored afterwards) without gradients.  ``data``: a dataset
    (batched in order, ``batch_size`` at a time) or an iterable of :class:`Batch`
    (e.g. a loader).  ``device``: where to run (default: the model's device).
    ``amp``: bf16 autocast on CUDA, as in :func:`mmdg.train.evaluate`.
    """
    model = as_model(model)
    device = model_device(model, device)
    was_training = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {m: [] for m in model.modalities}
    labels, domains = [], []
    try:
        for batch in _batches(data, batch_size):
            batch = batch.to(device)
            ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda"
                   else torch.autocast(device.type, enabled=False))
            with ctx:
                z = model.encode(batch.inputs)
            for m in model.modalities:
                feats[m].append(z[m].float().cpu())
            labels.append(batch.label.cpu())
            domains.append(batch.domain.cpu())
    finally:
        model.train(was_training)
    if not labels:
        raise ValueError("extract_features: data is empty")
    return Features({m: torch.cat(v) for m, v in feats.items()}, torch.cat(labels), torch.cat(domains))


def feature_stats(features: Features | Mapping[str, torch.Tensor], eps: float = 1e-4) -> dict[str, dict]:
    """Distribution measures of each modality's features (floats, JSON-ready).

    * ``entropy``: Gaussian entropy ``1/2 log det(Sigma + eps I) + D/2 log(2 pi e)`` (nats),
      and ``entropy_per_dim`` = entropy / D;
    * ``effective_rank`` (Roy & Vetterli, singular values of the centred features) and
      ``effective_rank_eig`` (normalised covariance eigenvalues);
    * ``mer_marg`` / ``mer_spec``: the two MER terms evaluated on the whole set
      (variance hinge; ``-1/D log det`` of the correlation matrix, a scale-free
      decorrelation measure when N >> D).

    Entropy depends on the feature scale and, when N <= D, mostly on ``eps``;
    compare it between models only at equal width and similar N.
    """
    feats = features.feats if isinstance(features, Features) else dict(features)
    out = {}
    for m, z in feats.items():
        z = z.detach().double()
        h = gaussian_entropy(z, eps).item()
        marg, spec = mer_parts(z, eps)
        out[m] = {"n": int(z.shape[0]), "dim": int(z.shape[1]), "entropy": h, "entropy_per_dim": h / z.shape[1],
                  "effective_rank": effective_rank(z).item(),
                  "effective_rank_eig": effective_rank(z, spectrum="eigen").item(),
                  "mer_marg": marg.item(), "mer_spec": spec.item()}
    return out


# ---------------------------------------------------------------- cross-modal similarity

def _centred(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 2:
        raise ValueError(f"expected features of shape (N, d), got {tuple(x.shape)}")
    x = x.detach().double()
    return x - x.mean(0)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two feature sets of the same samples.

    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``: 1 for features that are an
    orthogonal transform / isotropic rescaling of each other, near 0 for independent
    features (biased estimator: about ``sqrt(d_x d_y) / N`` for independent Gaussians).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: x and y must have the same number of samples, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    xc, yc = _centred(x), _centred(y)
    den = torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)
    if den == 0:
        return 0.0
    return (torch.linalg.matrix_norm(yc.T @ xc) ** 2 / den).item()


def _top_components(xc: torch.Tensor, k: int | None) -> torch.Tensor:
    if k is None or k >= min(xc.shape):
        return xc
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    return xc @ vh[:k].T


def _inv_sqrt(c: torch.Tensor, reg: float) -> torch.Tensor:
    c = c + reg * (torch.trace(c) / c.shape[0]).clamp(min=1e-12) * torch.eye(c.shape[0], dtype=c.dtype)
    w, v = torch.linalg.eigh(c)
    return v @ torch.diag(w.clamp(min=1e-12).rsqrt()) @ v.T


def canonical_correlations(x: torch.Tensor, y: torch.Tensor, n_components: int | None = None,
                           reg: float = 1e-6) -> torch.Tensor:
    """Canonical correlations of two feature sets (descending, ``min(d_x, d_y)`` of them).

    ``n_components`` first keeps each set's top principal components (SVCCA, Raghu et
    al. 2017): with d comparable to N, plain CCA finds spurious correlations near 1.
    ``reg`` adds ``reg * mean eigenvalue`` to each covariance (ridge), so constant or
    collinear dimensions do not break the whitening.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"canonical_correlations: x and y must have the same number of samples, got "
                         f"{x.shape[0]} and {y.shape[0]}")
    if n_components is not None and n_components < 1:
        raise ValueError(f"n_components must be None or >= 1, got {n_components!r}")
    xc, yc = _top_components(_centred(x), n_components), _top_components(_centred(y), n_components)
    n = max(xc.shape[0] - 1, 1)
    m = _inv_sqrt(xc.T @ xc / n, reg) @ (xc.T @ yc / n) @ _inv_sqrt(yc.T @ yc / n, reg)
    return torch.linalg.svdvals(m).clamp(0.0, 1.0)


def cross_modal_similarity(features: Features | Mapping[str, torch.Tensor], n_components: int | None = 10,
                           reg: float = 1e-6) -> dict[str, dict[str, float]]:
    """For every pair of modalities ``"a/b"``: linear CKA and the mean (and top) canonical correlation.

    Fusion Overfitting reading (MER-DG.md §2.4.3): encoders that rely on source
    co-occurrences have cross-modal dependence on the source that the target does not share.
    """
    feats = features.feats if isinstance(features, Features) else dict(features)
    out = {}
    for a, b in itertools.combinations(list(feats), 2):
        cc = canonical_correlations(feats[a], feats[b], n_components, reg)
        out[f"{a}/{b}"] = {"cka": linear_cka(feats[a], feats[b]), "cca_mean": cc.mean().item(),
                           "cca_top": cc[0].item()}
    return out


# ---------------------------------------------------------------- tracking during training

class FeatureTracker:
    """An ``on_epoch_end`` hook for :func:`mmdg.train.train`: feature measures on fixed data every epoch.

    ``sets`` maps a name to a dataset (e.g. ``{"train": split.train, "target": split.test}``;
    :func:`mmdg.train.build_run` rebuilds the run's split deterministically).  Each
    epoch it extracts the features and stores ``{name: {"stats": feature_stats,
    "cross": cross_modal_similarity}}`` in ``self.history`` and in the epoch's
    record row under ``row["features"]`` (so it is checkpointed and written with the run).
    ``max_samples`` uses the first samples of each set only (speed).
    """

    def __init__(self, sets: Mapping[str, Dataset], device=None, max_samples: int | None = None,
                 cross: bool = True, batch_size: int = 256, amp: bool = False):
        if not sets:
            raise ValueError("FeatureTracker: sets must name at least one dataset")
        if max_samples is not None and max_samples < 2:
            raise ValueError(f"FeatureTracker: max_samples must be None or >= 2, got {max_samples!r}")
        self.sets, self.device, self.max_samples = dict(sets), device, max_samples
        self.cross, self.batch_size, self.amp = cross, batch_size, amp
        self.history: list[dict] = []

    def measure(self, model) -> dict[str, dict]:
        out = {}
        for name, data in self.sets.items():
            f = extract_features(model, data, self.device, self.batch_size, self.amp)
            if self.max_samples is not None and len(f) > self.max_samples:
                f = f.subset(torch.arange(self.max_samples))
            out[name] = {"stats": feature_stats(f)}
            if self.cross and len(f.modalities) > 1:
                out[name]["cross"] = cross_modal_similarity(f)
        return out

    def __call__(self, epoch: int, method, row: dict) -> None:
        measures = self.measure(method)
        self.history.append({"epoch": epoch, **measures})
        row["features"] = measures
