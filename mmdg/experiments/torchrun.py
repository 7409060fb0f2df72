"""``run_one`` under torchrun (``torchrun --nproc-per-node N -m mmdg train ...``; :mod:`mmdg.distributed`)."""
from __future__ import annotations

from pathlib import Path

import torch.distributed as tdist

from .. import distributed as dist
from ..io import remove_stale_temporaries
from ..train import Diverged, RunConfig, train
from . import sweep as sw
from .results import RunLock, write_record


def run(cfg: RunConfig, results_dir: Path, overwrite: bool = False, progress: bool = True):
    """``run_one`` under torchrun: rank 0 holds the run lock, decides, writes; all ranks train.

    Returns (record path, record, skipped) on every rank."""
    dist.init_from_env(cfg.device)
    path, ckpt = sw.record_path(results_dir, cfg), sw.checkpoint_path(results_dir, cfg)
    lock = RunLock(sw.lock_path(results_dir, cfg)) if dist.is_main() else None
    error = None
    if lock is not None:
        try:
            lock.acquire()
        except Exception as e:
            error = e
    existing = None if (overwrite or error is not None or not dist.is_main()) else sw._existing(path)
    decision = [None if error is None else f"{type(error).__name__}: {error}", existing]
    tdist.broadcast_object_list(decision, 0)
    if decision[0] is not None:
        if error is not None:
            raise error
        raise RuntimeError(f"rank 0 could not take the run: {decision[0]}")
    try:
        if decision[1] is not None:
            return path, decision[1], True
        if dist.is_main():
            remove_stale_temporaries(ckpt)
        tdist.barrier()
        try:
            record = train(cfg, checkpoint=ckpt, progress=progress and dist.is_main())
        except Diverged as e:
            record = e.record
        if dist.is_main():
            record.setdefault("env", {})["processes"] = dist.world()
            write_record(path, record, overwrite=overwrite)
        tdist.barrier()
        if dist.is_main() and ckpt.exists():
            ckpt.unlink()
        return path, record, False
    finally:
        if lock is not None and error is None:
            lock.release()
