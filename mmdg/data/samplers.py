"""Training loaders a method may ask for: shuffled batches (default) or MER-DG's balanced domains.

``sampler="balanced_domain"`` is the ``BalancedDomainSampler`` of MER-DG's released
``train_mer_dg.py``: every batch holds ``batch_size / D`` samples of each of the D source
domains (in the order the domains first appear), each domain shuffled once per epoch; an
epoch is ``min_d |domain d| // (batch_size / D)`` batches (the rest of the larger domains is
left out that epoch), and the last incomplete batch is dropped.  The shuffle depends only on
``(seed, epoch)`` (the released code seeds with ``seed + epoch``; here ``seed * 100_003 +
epoch``, as the other loaders of this package), so resumed runs see the same batches.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from .base import Batch, TensorDataset, WithDomain, collate, make_loader

SAMPLERS = ("shuffle", "balanced_domain")


def domain_labels(dataset: Dataset) -> torch.Tensor:
    """The domain label of every sample of a training set built by :func:`~mmdg.data.protocol.make_split`."""
    if isinstance(dataset, TensorDataset):
        return dataset.domain
    if isinstance(dataset, ConcatDataset) and all(isinstance(p, WithDomain) for p in dataset.datasets):
        return torch.cat([torch.full((len(p),), p.domain_id, dtype=torch.long) for p in dataset.datasets])
    raise TypeError(f"sampler 'balanced_domain' needs a TensorDataset or a ConcatDataset of WithDomain parts, "
                    f"got {type(dataset).__name__}")


class BalancedDomainLoader:
    """Batches with the same number of samples from every source domain (see the module docstring)."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, num_workers: int = 0,
                 pin_memory: bool = False):
        dom = domain_labels(dataset)
        order = list(dict.fromkeys(dom.tolist()))
        if not order:
            raise ValueError("sampler 'balanced_domain': the training set is empty")
        if batch_size % len(order):
            raise ValueError(f"sampler 'balanced_domain': batch_size ({batch_size}) must be divisible by the "
                             f"number of source domains ({len(order)})")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.per_domain = batch_size // len(order)
        self.indices = [torch.nonzero(dom == d).squeeze(1) for d in order]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return min(len(ix) for ix in self.indices) // self.per_domain

    def batches(self) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        shuffled = [ix[torch.randperm(len(ix), generator=g)] for ix in self.indices]
        k = self.per_domain
        return [torch.cat([s[b * k:(b + 1) * k] for s in shuffled]) for b in range(len(self))]

    def __iter__(self) -> Iterator[Batch]:
        batches = self.batches()
        if isinstance(self.dataset, TensorDataset):
            for ix in batches:
                yield self.dataset.batch(ix)
            return
        yield from DataLoader(self.dataset, batch_sampler=[ix.tolist() for ix in batches], collate_fn=collate,
                              num_workers=self.num_workers, pin_memory=self.pin_memory)


def make_train_loader(dataset: Dataset, batch_size: int, seed: int, sampler: str = "shuffle",
                      num_workers: int = 0, pin_memory: bool = False):
    """The training loader ``sampler`` names: ``"shuffle"`` (shuffled, drop_last) or ``"balanced_domain"``."""
    if sampler == "shuffle":
        return make_loader(dataset, batch_size, shuffle=True, drop_last=True, seed=seed,
                           num_workers=num_workers, pin_memory=pin_memory)
    if sampler == "balanced_domain":
        return BalancedDomainLoader(dataset, batch_size, seed, num_workers, pin_memory)
    raise ValueError(f"hyperparameter 'sampler' must be one of {list(SAMPLERS)}, got {sampler!r}")
