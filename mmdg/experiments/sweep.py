"""Run grids of (method x target x seed); runs whose record exists are skipped."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..train import RunConfig, train
from .results import read_record, write_record


def record_path(results_dir: Path, cfg: RunConfig) -> Path:
    return (Path(results_dir) / cfg.benchmark / cfg.method / cfg.target
            / f"seed{cfg.seed}-{cfg.run_id()}.json")


def checkpoint_path(results_dir: Path, cfg: RunConfig) -> Path:
    return Path(results_dir) / "_checkpoints" / f"{cfg.run_id()}.pt"


def run_one(cfg: RunConfig, results_dir: Path, overwrite: bool = False, progress: bool = True,
            keep_checkpoint: bool = False) -> tuple[Path, dict, bool]:
    """Train ``cfg`` unless its record exists; returns (record path, record, skipped)."""
    path = record_path(results_dir, cfg)
    if path.exists() and not overwrite:
        return path, read_record(path), True
    ckpt = checkpoint_path(results_dir, cfg)
    record = train(cfg, checkpoint=ckpt, progress=progress)
    write_record(path, record, overwrite=overwrite)
    if not keep_checkpoint and ckpt.exists():
        ckpt.unlink()
    return path, record, False


def grid(base: RunConfig, methods: list[str], targets: list[str], seeds: list[int]) -> list[RunConfig]:
    if not methods or not targets or not seeds:
        raise ValueError(f"a sweep needs methods, targets and seeds; got {methods}, {targets}, {seeds}")
    return [dataclasses.replace(base, method=m, target=t, seed=s)
            for m in methods for t in targets for s in seeds]


def sweep(base: RunConfig, methods: list[str], targets: list[str], seeds: list[int], results_dir: Path,
          overwrite: bool = False, progress: bool = True, log=print) -> list[Path]:
    paths = []
    configs = grid(base, methods, targets, seeds)
    for i, cfg in enumerate(configs, 1):
        path, record, skipped = run_one(cfg, results_dir, overwrite, progress)
        status = "skipped (exists)" if skipped else f"test {record['final']['test_acc']:.2f}"
        log(f"[{i}/{len(configs)}] {cfg.method} -> {cfg.target} seed {cfg.seed}: {status}")
        paths.append(path)
    return paths
