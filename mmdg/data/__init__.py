"""Benchmarks, datasets, loaders and the leave-one-domain-out protocol."""
from .base import BENCHMARKS, Batch, Benchmark, TensorDataset, build_benchmark, collate, make_loader
from .protocol import DGSplit, leave_one_domain_out, make_split, protocol_table

from . import epic, gaussian, hac, sensors, synth_foley  # noqa: F401  (register the benchmarks)

__all__ = ["BENCHMARKS", "Batch", "Benchmark", "DGSplit", "TensorDataset", "build_benchmark", "collate",
           "leave_one_domain_out", "make_loader", "make_split", "protocol_table"]
