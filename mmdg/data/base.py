"""Multimodal multi-domain datasets and the benchmark interface.

One sample is ``{"inputs": {modality: Tensor}, "label": int, "domain": int}``.
A batch is a :class:`Batch` with stacked tensors.  Benchmarks that fit in memory
return :class:`TensorDataset`, which batches by slicing (no per-item collate);
file-backed benchmarks (EPIC-Kitchens, HAC) return ordinary map-style datasets.
"""
from __future__ import annotations

import inspect

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ..registry import Registry

SPLITS = ("train", "test")


@dataclass
class Batch:
    """Stacked inputs per modality, class labels (N,) and domain labels (N,)."""

    inputs: dict[str, torch.Tensor]
    label: torch.Tensor
    domain: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "Batch":
        return Batch(
            {m: x.to(device, non_blocking=non_blocking) for m, x in self.inputs.items()},
            self.label.to(device, non_blocking=non_blocking),
            self.domain.to(device, non_blocking=non_blocking),
        )

    def __len__(self) -> int:
        return int(self.label.shape[0])


def collate(samples: Sequence[dict]) -> Batch:
    """Stack a list of sample dicts into a :class:`Batch`."""
    mods = samples[0]["inputs"].keys()
    return Batch(
        {m: torch.stack([s["inputs"][m] for s in samples]) for m in mods},
        torch.as_tensor([int(s["label"]) for s in samples], dtype=torch.long),
        torch.as_tensor([int(s["domain"]) for s in samples], dtype=torch.long),
    )


class TensorDataset(Dataset):
    """An in-memory multimodal dataset: ``inputs[m]`` has shape (N, ...)."""

    def __init__(self, inputs: Mapping[str, torch.Tensor], label: torch.Tensor, domain: torch.Tensor):
        n = int(label.shape[0])
        for m, x in inputs.items():
            if x.shape[0] != n:
                raise ValueError(f"modality {m!r} has {x.shape[0]} samples, labels have {n}")
        if domain.shape != label.shape:
            raise ValueError(f"domain shape {tuple(domain.shape)} != label shape {tuple(label.shape)}")
        self.inputs = dict(inputs)
        self.label = label.long()
        self.domain = domain.long()

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {
            "inputs": {m: x[i] for m, x in self.inputs.items()},
            "label": int(self.label[i]),
            "domain": int(self.domain[i]),
        }

    def batch(self, index: torch.Tensor) -> Batch:
        return Batch({m: x[index] for m, x in self.inputs.items()}, self.label[index], self.domain[index])

    def with_domain(self, domain_id: int) -> "TensorDataset":
        return TensorDataset(self.inputs, self.label, torch.full_like(self.label, domain_id))

    def map_inputs(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> "TensorDataset":
        return TensorDataset({m: fn(m, x) for m, x in self.inputs.items()}, self.label, self.domain)

    @staticmethod
    def concat(parts: Sequence["TensorDataset"]) -> "TensorDataset":
        if not parts:
            raise ValueError("TensorDataset.concat needs at least one part")
        mods = list(parts[0].inputs)
        return TensorDataset(
            {m: torch.cat([p.inputs[m] for p in parts]) for m in mods},
            torch.cat([p.label for p in parts]),
            torch.cat([p.domain for p in parts]),
        )


class WithDomain(Dataset):
    """Wrap a map-style dataset so that every sample carries ``domain_id``."""

    def __init__(self, dataset: Dataset, domain_id: int):
        self.dataset, self.domain_id = dataset, domain_id

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.dataset[i])
        sample["domain"] = self.domain_id
        return sample


def relabel_and_concat(parts: Sequence[Dataset], domain_ids: Sequence[int]) -> Dataset:
    """Concatenate datasets, giving part ``j`` the domain label ``domain_ids[j]``."""
    if all(isinstance(p, TensorDataset) for p in parts):
        return TensorDataset.concat([p.with_domain(d) for p, d in zip(parts, domain_ids)])
    return ConcatDataset([WithDomain(p, d) for p, d in zip(parts, domain_ids)])


class TensorLoader:
    """Mini-batches of a :class:`TensorDataset` by index slicing.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run sees
    the same batches as an uninterrupted one.
    """

    def __init__(self, dataset: TensorDataset, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0):
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        for k in range(len(self)):
            yield self.dataset.batch(order[k * self.batch_size:(k + 1) * self.batch_size])


class EpochLoader:
    """A torch DataLoader whose shuffling order depends only on ``(seed, epoch)``."""

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool,
                 seed: int = 0, num_workers: int = 0, pin_memory: bool = False):
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.drop_last, self.seed, self.num_workers = drop_last, seed, num_workers
        self.pin_memory = pin_memory
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle,
                            drop_last=self.drop_last, generator=g, collate_fn=collate,
                            num_workers=self.num_workers, pin_memory=self.pin_memory,
                            persistent_workers=False)
        yield from loader


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                seed: int = 0, num_workers: int = 0, pin_memory: bool = False):
    """The fastest loader for ``dataset``: slicing for tensors, a DataLoader otherwise."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(dataset, TensorDataset):
        return TensorLoader(dataset, batch_size, shuffle, drop_last, seed)
    return EpochLoader(dataset, batch_size, shuffle, drop_last, seed, num_workers, pin_memory)


class Benchmark:
    """A multimodal, multi-domain benchmark.

    Subclasses set ``name``, ``domains``, ``modalities``, ``classes`` and implement
    :meth:`dataset`.  Domain labels returned by :meth:`dataset` are arbitrary: the
    protocol (:mod:`mmdg.data.protocol`) relabels them to source indices.
    """

    name: str = ""
    domains: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def dataset(self, domain: str, split: str) -> Dataset:
        raise NotImplementedError

    def target_dataset(self, domain: str) -> Dataset:
        """What the target is evaluated on; the test split unless a benchmark says otherwise."""
        return self.dataset(domain, "test")

    def fit_normalizer(self, train: Dataset) -> Callable[[str, torch.Tensor], torch.Tensor] | None:
        """A per-modality transform fitted on the source training data, or None."""
        return None

    def check_domain(self, domain: str) -> str:
        if domain not in self.domains:
            raise ValueError(f"unknown domain {domain!r} for benchmark {self.name!r}; "
                             f"expected one of {list(self.domains)}")
        return domain

    def check_split(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        return split

    def describe(self) -> dict:
        return {"name": self.name, "domains": list(self.domains),
                "modalities": list(self.modalities), "classes": list(self.classes)}


BENCHMARKS = Registry("benchmark")


def build_benchmark(name: str, **kwargs) -> Benchmark:
    """Construct a registered benchmark, e.g. ``build_benchmark("synth_foley", size="tiny")``."""
    return BENCHMARKS.build(name, **kwargs)


def benchmark_for_target(name: str, target: str, **kwargs) -> Benchmark:
    """Like :func:`build_benchmark`, and for a benchmark with a ``target_domain`` argument (one whose
    source-only effects, such as co-occurrences, must spare the held-out domain) set it to ``target``
    unless ``kwargs`` already does."""
    params = inspect.signature(BENCHMARKS.get(name)).parameters
    if "target_domain" in params and kwargs.get("target_domain") is None:
        kwargs = {**kwargs, "target_domain": target}
    return BENCHMARKS.build(name, **kwargs)
