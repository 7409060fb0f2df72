"""Run grids of (method x target x seed); runs whose record exists are skipped.

A run holds a lock (``_checkpoints/<run_id>.lock``: pid and host) while it trains, so two sweeps
on one results folder share the work: a run held by a live process is skipped, a stale lock (its
holder died) is taken over.  A run that diverges is recorded with ``status: diverged`` (not
complete); an unreadable record is moved aside and the run trained again.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import time
from pathlib import Path
from typing import Callable, TypeVar

from ..io import move_aside, remove_stale_temporaries
from ..train import Diverged, RunConfig, resolve_device, train
from .results import BadRecord, RunLock, RunLocked, read_record, write_record

T = TypeVar("T")


def record_path(results_dir: Path, cfg: RunConfig) -> Path:
    return (Path(results_dir) / cfg.benchmark / cfg.method / cfg.target
            / f"seed{cfg.seed}-{cfg.run_id()}.json")


def checkpoint_path(results_dir: Path, cfg: RunConfig) -> Path:
    return Path(results_dir) / "_checkpoints" / f"{cfg.run_id()}.pt"


def lock_path(results_dir: Path, cfg: RunConfig) -> Path:
    return Path(results_dir) / "_checkpoints" / f"{cfg.run_id()}.lock"


def check_results_dir(results_dir: Path) -> None:
    """A ValueError if ``results_dir`` (or a parent) exists and is not a directory."""
    for p in (Path(results_dir), *Path(results_dir).parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"results directory {results_dir}: {p} is a file, not a directory")
            return


def _existing(path: Path) -> dict | None:
    """The record at ``path``; None if there is none or it was unreadable (then moved aside)."""
    if not path.exists():
        return None
    try:
        return read_record(path)
    except BadRecord as e:
        move_aside(path, f"{e}; the run is trained again")
        return None


#: Benchmarks built in this (worker) process, reused by its later runs: generating data is a
#: sixth of a book-profile run.  Generated data is read-only and drawn from its own generators; each
#: run seeds its own RNGs after building its split, so runs share data, never random state.
_BENCHMARKS: dict[str, object] = {}


def shared_benchmark(cfg: RunConfig):
    """The benchmark of ``cfg``, built once per process; None for file-backed ones (they count
    skipped samples per run) or when building it fails (the run then reports the error)."""
    from ..data import BENCHMARKS
    from ..data.base import benchmark_for_target
    try:
        by_target = "target_domain" in inspect.signature(BENCHMARKS.get(cfg.benchmark)).parameters
        key = json.dumps([cfg.benchmark, cfg.benchmark_kwargs, cfg.target if by_target else None],
                         sort_keys=True, default=str)
        if key not in _BENCHMARKS:
            while len(_BENCHMARKS) >= 3:
                _BENCHMARKS.pop(next(iter(_BENCHMARKS)))
            _BENCHMARKS[key] = benchmark_for_target(cfg.benchmark, cfg.target, **cfg.benchmark_kwargs)
    except Exception:
        return None
    bench = _BENCHMARKS[key]
    return None if callable(getattr(bench, "skipped_samples", None)) else bench


def run_one(cfg: RunConfig, results_dir: Path, overwrite: bool = False, progress: bool = True,
            keep_checkpoint: bool = False, benchmark=None) -> tuple[Path, dict, bool]:
    """Train ``cfg`` unless its record exists; returns (record path, record, skipped).

    ``benchmark``: an already built benchmark of this run (generated data reused across runs).
    Raises :class:`~mmdg.experiments.results.RunLocked` if another live process trains it now.
    A diverged run's record (``status: diverged``) is written and returned like any other.
    """
    check_results_dir(results_dir)
    path, ckpt = record_path(results_dir, cfg), checkpoint_path(results_dir, cfg)
    record = None if overwrite else _existing(path)
    if record is not None:
        lock = lock_path(results_dir, cfg)
        if ckpt.exists() or lock.exists() or any(lock.parent.glob(f".{ckpt.name}.*.tmp")):
            try:  # left by a run killed after writing its record: clean up if nobody holds it
                with RunLock(lock):
                    ckpt.unlink(missing_ok=True)
                    remove_stale_temporaries(ckpt)
            except RunLocked:
                pass
        return path, record, True
    with RunLock(lock_path(results_dir, cfg)):
        record = None if overwrite else _existing(path)  # finished by another process meanwhile?
        if record is not None:
            return path, record, True
        remove_stale_temporaries(ckpt)
        remove_stale_temporaries(path)
        try:
            record = train(cfg, checkpoint=ckpt, progress=progress, benchmark=benchmark)
        except Diverged as e:
            record = e.record
        write_record(path, record, overwrite=overwrite)
        if not keep_checkpoint and ckpt.exists():
            ckpt.unlink()
    return path, record, False


def when_free(attempt: Callable[[], T], poll: float = 5.0) -> T:
    """``attempt()``, tried again every ``poll`` seconds while it raises
    :class:`~mmdg.experiments.results.RunLocked` (another live process trains that run now)."""
    while True:
        try:
            return attempt()
        except RunLocked:
            time.sleep(poll)


def record_of(cfg: RunConfig, results_dir: Path, poll: float = 5.0) -> dict:
    """The record of ``cfg``: read if it exists, else trained here (on this process's generated data,
    :func:`shared_benchmark`); while another live process trains it, wait for its record.

    What a chapter calls: two chapters (or two sweeps) filling one results folder share the work."""
    path = record_path(results_dir, cfg)

    def attempt() -> dict:
        bench = None if path.exists() else shared_benchmark(cfg)  # reading a record builds no data
        return run_one(cfg, results_dir, progress=False, benchmark=bench)[1]
    return when_free(attempt, poll)


def grid(base: RunConfig, methods: list[str], targets: list[str], seeds: list[int]) -> list[RunConfig]:
    """Every (method, target, seed) config, all validated before any run starts."""
    from ..data import build_benchmark
    from ..methods import resolve
    from ..strategies import build_strategy
    if not methods or not targets or not seeds:
        raise ValueError(f"a sweep needs methods, targets and seeds; got {methods}, {targets}, {seeds}")
    for what, items in (("methods", methods), ("targets", targets)):
        if any(not isinstance(x, str) or not x.strip() for x in items):
            raise ValueError(f"sweep {what} {list(items)} has an empty entry")
    for m in methods:
        _, (strategy, kwargs), _ = resolve(m, base.hparams)  # unknown names, hyperparameter types and ranges
        build_strategy(strategy, **kwargs)                     # the strategy's own checks (e.g. GMP's ablation)
    bench = build_benchmark(base.benchmark, **base.benchmark_kwargs)
    for t in targets:
        bench.check_domain(t)
    resolve_device(base.device)
    return [dataclasses.replace(base, method=m, target=t, seed=s)
            for m in methods for t in targets for s in seeds]


def sweep(base: RunConfig, methods: list[str], targets: list[str], seeds: list[int], results_dir: Path,
          overwrite: bool = False, progress: bool = True, log=print) -> list[Path]:
    """Run the grid; returns the record paths of the runs done or found (not those held by others)."""
    check_results_dir(results_dir)
    paths = []
    configs = grid(base, methods, targets, seeds)
    for i, cfg in enumerate(configs, 1):
        head = f"[{i}/{len(configs)}] {cfg.method} -> {cfg.target} seed {cfg.seed}"
        try:
            path, record, skipped = run_one(cfg, results_dir, overwrite, progress)
        except RunLocked as e:
            log(f"{head}: skipped ({e})")
            continue
        if record.get("status") == "diverged":
            status = f"DIVERGED ({record['diverged']['message']}); recorded as diverged"
        else:
            status = "skipped (exists)" if skipped else f"test {record['final']['test_acc']:.2f}"
        log(f"{head}: {status}")
        paths.append(path)
    try:
        (Path(results_dir) / "_checkpoints").rmdir()  # only if empty
    except OSError:
        pass
    return paths
