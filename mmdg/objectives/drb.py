"""DRB: Diagnosing & Re-learning for balanced multimodal learning (Wei, Li, Feng & Hu, ECCV 2024).

GMP's Table 2 lists "DRB" without a reference we could read; the closest match we found is
this paper ("Diagnosing and Re-learning for Balanced Multimodal Learning", code
``GeWu-Lab/Diagnosing_Relearning_ECCV2024``), whose method we implement from its released
``code/ours.py``.  Every ``every`` epochs (at most ``times`` times):

1. *Diagnose*: for each modality m, cluster its encoder features of the training set and of
   the (source) validation set with k-means (K = number of classes, after scaling each feature
   to [-1, 1]), and take the purity P of each clustering against the labels; the learning
   state is the purity gap ``g^m = |P_train^m - P_val^m|``.
2. *Re-learn*: softly re-initialise the encoder,
   ``theta^m <- alpha^m theta^m_init + (1 - alpha^m) theta^m`` with ``alpha^m = tanh(lam g^m)``.

Between re-initialisations training is plain (the method's strategy, ``sum`` by default, so
``+gmp`` composes).  The objective adds no loss (a zero attached to the graph).

Deviations (stated): the training-set features are those computed during the re-init epoch's
own training steps (train mode, weights changing within the epoch), not a separate eval-mode
pass over the training set after it (the trainer does not hand the training set to objectives);
k-means is a torch k-means++/Lloyd (no scikit-learn here), seeded with 0 like the released
``KMeans(random_state=0)``; theta^m is every trainable encoder parameter (the released code
re-initialises all parameters of its audio and visual networks), and the optimizer's state is
left as it is (as released).
"""
from __future__ import annotations

import math
import re

import torch

from ..data.base import Batch
from ..hparams import HParam, LogUniform
from ..models.model import ModelOutput
from .base import OBJECTIVES, Context, Objective, Term

# Hyperparameters of this part, declared once (the method registry, mmdg.methods, lists them).
DRB_LAMBDA = HParam("drb_lambda", 3.0, "DRB: re-initialisation strength", LogUniform(0.3, 30.0), low=0)
DRB_EVERY = HParam("drb_every", 20, "DRB: epochs between re-initialisations", low=1)
DRB_TIMES = HParam("drb_times", 3, "DRB: most re-initialisations", low=1)


def minmax_scale(x: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Scale each column to [low, high]; a constant column maps to ``low`` (scikit-learn's MinMaxScaler)."""
    lo, hi = x.min(0).values, x.max(0).values
    rng = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return (x - lo) / rng * (high - low) + low


def kmeans(x: torch.Tensor, k: int, iters: int = 100, seed: int = 0) -> torch.Tensor:
    """Cluster labels of the rows of ``x`` (N, D): k-means++ seeding, then Lloyd iterations."""
    n = x.shape[0]
    if k < 1 or n < 1:
        raise ValueError(f"kmeans needs k >= 1 and at least one point, got k={k}, n={n}")
    k = min(k, n)
    x = x.double()
    g = torch.Generator().manual_seed(seed)
    centers = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centers)).min(1).values ** 2
        if not d2.sum() > 0:                        # fewer distinct points than k
            centers.append(x[torch.randint(n, (1,), generator=g)].squeeze(0))
            continue
        centers.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centers)
    labels = torch.cdist(x, c).argmin(1)
    for _ in range(iters):
        for j in range(k):
            members = labels == j
            if members.any():
                c[j] = x[members].mean(0)
        new = torch.cdist(x, c).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def purity(labels: torch.Tensor, clusters: torch.Tensor) -> float:
    """Fraction of samples whose label is the majority label of their cluster."""
    labels, clusters = labels.long(), clusters.long()
    if labels.numel() == 0:
        raise ValueError("purity of an empty set")
    hits = 0
    for c in clusters.unique():
        hits += int(torch.bincount(labels[clusters == c]).max())
    return hits / labels.numel()


def learning_state(train_feats: torch.Tensor, train_y: torch.Tensor, val_feats: torch.Tensor,
                   val_y: torch.Tensor, k: int, seed: int = 0) -> tuple[float, float]:
    """(purity on the training features, purity on the validation features); each set scaled on its own."""
    p_train = purity(train_y, kmeans(minmax_scale(train_feats.double()), k, seed=seed))
    p_val = purity(val_y, kmeans(minmax_scale(val_feats.double()), k, seed=seed))
    return p_train, p_val


def reinit_strength(p_train: float, p_val: float, lam: float) -> float:
    """alpha = tanh(lam * |P_train - P_val|)."""
    return math.tanh(lam * abs(p_train - p_val))


@OBJECTIVES.register("drb")
class DRB(Objective):
    """Diagnosing & Re-learning as an objective with an epoch hook (see the module docstring).

    Args: ``lam`` (the released ``move_lambda``, 3), ``every`` (``reinit_epoch``, 20: re-init
    after epochs ``every``, ``2 every``, ... counted from 0), ``times`` (``reinit_num``, 3).
    """

    kind = "other"

    def __init__(self, ctx: Context, lam: float = DRB_LAMBDA.default, every: int = DRB_EVERY.default,
                 times: int = DRB_TIMES.default):
        super().__init__("drb", 0.0)
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"drb: lam must be a finite number >= 0, got {lam!r}")
        for name, v in (("every", every), ("times", times)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"drb: {name} must be an int >= 1, got {v!r}")
        self.lam, self.every, self.times = float(lam), every, times
        self.num_classes = ctx.num_classes
        self.done = 0
        self.collecting = False
        self._feats: dict[str, list[torch.Tensor]] = {}
        self._labels: list[torch.Tensor] = []
        self._names: dict[str, list[str]] = {}

    @staticmethod
    def _key(m: str, i: int) -> str:
        return f"init_{re.sub(r'[^0-9a-zA-Z_]', '_', m)}_{i}"

    def bind(self, model, objectives) -> None:
        """Keep a copy of the initial trainable encoder weights (buffers, so checkpoints carry them)."""
        for m, ps in model.encoder_parameters().items():
            self._names[m] = [self._key(m, i) for i in range(len(ps))]
            for key, p in zip(self._names[m], ps):
                self.register_buffer(key, p.detach().clone())

    def get_extra_state(self):
        return {"done": self.done, "collecting": self.collecting}

    def set_extra_state(self, state):
        self.done, self.collecting = int(state["done"]), bool(state["collecting"])

    def reinit_after(self, epoch: int) -> bool:
        """Whether the re-initialisation runs after ``epoch`` (released: ``epoch % every == 0 and epoch > 0``)."""
        return epoch > 0 and epoch % self.every == 0 and self.done < self.times

    def forward(self, out: ModelOutput, batch: Batch) -> Term:
        if self.collecting:
            for m, z in out.feats.items():
                self._feats.setdefault(m, []).append(z.detach().float().cpu())
            self._labels.append(batch.label.detach().cpu())
        zero = sum(z.sum() for z in out.feats.values()) * 0.0
        return Term(self.name, self.kind, zero, None, {})

    @torch.no_grad()
    def _val_features(self, model, val_loader) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        was = model.training
        model.eval()
        dev = next(model.parameters()).device
        feats: dict[str, list[torch.Tensor]] = {}
        labels = []
        for batch in val_loader:
            batch = batch.to(dev)
            for m, z in model.encode(batch.inputs).items():
                feats.setdefault(m, []).append(z.float().cpu())
            labels.append(batch.label.cpu())
        model.train(was)
        return {m: torch.cat(v) for m, v in feats.items()}, torch.cat(labels)

    def epoch_end(self, epoch, method, row, val_loader) -> None:
        if self.reinit_after(epoch) and self._labels:
            model = method.model
            train_y = torch.cat(self._labels)
            val_feats, val_y = self._val_features(model, val_loader)
            enc = model.encoder_parameters()
            info = {}
            for m, ps in enc.items():
                p_train, p_val = learning_state(torch.cat(self._feats[m]), train_y, val_feats[m], val_y,
                                                self.num_classes)
                alpha = reinit_strength(p_train, p_val, self.lam)
                with torch.no_grad():
                    for key, p in zip(self._names[m], ps):
                        p.mul_(1.0 - alpha).add_(getattr(self, key).to(p), alpha=alpha)
                info[m] = {"purity_train": p_train, "purity_val": p_val, "alpha": alpha}
            row["drb"] = info
            self.done += 1
        self._feats, self._labels = {}, []
        self.collecting = self.reinit_after(epoch + 1)
