"""Data-parallel training across processes (``torchrun --nproc-per-node N -m mmdg train ...``).

Exactness is the design goal: N processes at global batch B give the parameters that one process
at batch B gives (to float rounding), for every method, including the gradient strategies that
are non-linear in the gradients (GMP, OGM-GE, AGM, PCGrad, MMPareto, ...).  How:

* Every rank reads the same seeded global batch and keeps its contiguous shard of B / N samples
  (:class:`ShardedLoader`); the model's forward (encoders, fusion, classifier) runs on the shard.
* The model's outputs and the batch labels are all-gathered (with autograd), so every objective
  is computed on the global batch on every rank: loss values, per-sample confidences and their
  batch sums, batch statistics of the objectives' own heads (MER-DG's covariance, projector
  BatchNorm) are the single-process ones.
* Each parameter's gradient is averaged across ranks by a hook every time autograd computes it,
  i.e. per term, *before* a strategy combines the terms' gradients.  The gather's backward sums
  the ranks' output gradients, so the average is exactly the global-batch gradient for
  parameters before the gather (encoders) and after it (objective heads) alike.

This replaces ``torch.nn.parallel.DistributedDataParallel``'s reducer, which only synchronises
``.backward()`` (not ``torch.autograd.grad``, which the strategies use) and averages the
*combined* gradient (inexact for non-linear strategies).  Not exact: BatchNorm inside an encoder
(per-shard statistics), dropout in the model (per-rank draws), and strategies that take gradients
with respect to non-parameter tensors.  A parameter whose gradient is analytically zero (e.g. the
last bias of MER-DG's projector: its statistics are centred) gets different rounding noise with 1
and N ranks, which Adam turns into lr-sized steps; its value is meaningless either way.  Evaluation is replicated on every rank (identical
results); rank 0 alone writes checkpoints and the record.  Costs: one all-reduce per parameter per
term (no bucketing) and the objectives' heads computed on the global batch on every rank.
"""
from __future__ import annotations

import os
from dataclasses import fields, is_dataclass, replace

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True in a process started by torchrun (WORLD_SIZE > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> None:
    """Join torchrun's process group: NCCL when CUDA is used, gloo on CPU."""
    if dist.is_initialized():
        return
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")


class _Gather(torch.autograd.Function):
    """Concatenate every rank's ``x`` (equal shapes) along dim 0; backward sums the ranks' gradients
    of this rank's slice."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.n = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g)
        r = dist.get_rank()
        return g[r * ctx.n:(r + 1) * ctx.n]


def gather(x, n: int):
    """``x`` with every tensor of leading size ``n`` (the local batch) gathered across ranks."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 0 or x.shape[0] != n:
            return x
        return _Gather.apply(x) if x.requires_grad else _gather_const(x)
    if isinstance(x, dict):
        return {k: gather(v, n) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(gather(v, n) for v in x)
    if is_dataclass(x) and not isinstance(x, type):
        return replace(x, **{f.name: gather(getattr(x, f.name), n) for f in fields(x)})
    return x


def _gather_const(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _mean_hook(g: torch.Tensor) -> torch.Tensor:
    g = g.clone()
    dist.all_reduce(g)
    return g / dist.get_world_size()


class ShardedLoader:
    """This rank's contiguous shard of each global batch of ``loader``."""

    def __init__(self, loader, batch_size: int):
        if batch_size % world():
            raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes "
                             f"({world()}): it is the global batch, split evenly across them")
        self.loader, self.n = loader, batch_size // world()

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        lo = rank() * self.n
        for b in self.loader:
            yield type(b)({m: x[lo:lo + self.n] for m, x in b.inputs.items()}, b.label[lo:lo + self.n],
                          b.domain[lo:lo + self.n])


def prepare(method, train_loader, batch_size: int):
    """Make ``method`` train data-parallel (see the module docstring); returns the sharded loader."""
    for t in [*method.parameters(), *method.buffers()]:
        dist.broadcast(t.data, 0)                     # identical start, as DDP does
    for p in method.parameters():
        if p.requires_grad:
            p.register_hook(_mean_hook)
    model, objectives = method.model, method.objectives

    def terms(batch):
        out = gather(model(batch.inputs), len(batch))
        full = type(batch)(gather(batch.inputs, len(batch)), gather(batch.label, len(batch)),
                           gather(batch.domain, len(batch)))
        return out, [obj(out, full) for obj in objectives]

    method.terms = terms
    return ShardedLoader(train_loader, batch_size)
