"""Leave-one-domain-out protocol (the SimMMDG / GMP / MER-DG reference).

train = the source domains' train splits, validation = the source domains' test
splits, test = the target domain's evaluation set (its test split, or all its
clips where the benchmark says so, as HAC does).  Source samples get domain
labels ``0..len(sources)-1`` in the order of ``benchmark.domains``; target
samples get ``-1`` (they never reach a domain loss).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from torch.utils.data import Dataset

from .base import Benchmark, TensorDataset, relabel_and_concat


@dataclass
class DGSplit:
    sources: tuple[str, ...]
    target: str
    train: Dataset
    val: Dataset
    test: Dataset

    @property
    def name(self) -> str:
        return f"{','.join(self.sources)}->{self.target}"


def make_split(benchmark: Benchmark, target: str, sources: tuple[str, ...] | None = None) -> DGSplit:
    """The split with ``target`` held out; ``sources`` defaults to all other domains."""
    benchmark.check_domain(target)
    if sources is None:
        sources = tuple(d for d in benchmark.domains if d != target)
    for s in sources:
        benchmark.check_domain(s)
    if target in sources:
        raise ValueError(f"target domain {target!r} is also listed as a source: {list(sources)}")
    if not sources:
        raise ValueError("at least one source domain is needed")
    ids = list(range(len(sources)))
    train = relabel_and_concat([benchmark.dataset(s, "train") for s in sources], ids)
    val = relabel_and_concat([benchmark.dataset(s, "test") for s in sources], ids)
    test = relabel_and_concat([benchmark.target_dataset(target)], [-1])
    norm = benchmark.fit_normalizer(train)
    if norm is not None:
        if not all(isinstance(d, TensorDataset) for d in (train, val, test)):
            raise TypeError(f"benchmark {benchmark.name!r} returned a normalizer for non-tensor datasets")
        train, val, test = (d.map_inputs(norm) for d in (train, val, test))
    return DGSplit(tuple(sources), target, train, val, test)


def leave_one_domain_out(benchmark: Benchmark) -> Iterator[DGSplit]:
    """Yield one split per domain of ``benchmark``, that domain held out."""
    for target in benchmark.domains:
        yield make_split(benchmark, target)


def protocol_table(benchmark: Benchmark) -> list[dict]:
    """One row per leave-one-domain-out split: sources, target and the sizes of train/val/test."""
    sizes = {(d, s): len(benchmark.dataset(d, s)) for d in benchmark.domains for s in ("train", "test")}
    rows = []
    for target in benchmark.domains:
        sources = [d for d in benchmark.domains if d != target]
        rows.append({"target": target, "sources": " + ".join(sources),
                     "train (source train)": sum(sizes[d, "train"] for d in sources),
                     "val (source test)": sum(sizes[d, "test"] for d in sources),
                     "test (target)": len(benchmark.target_dataset(target))})
    return rows
