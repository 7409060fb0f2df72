"""Launchers: run a sweep's jobs in this process, in N processes, one per GPU, or as Slurm array jobs.

Every job is one run, named by its run id: its log is ``<results>/_logs/<run_id>.log`` and its
complete record is its done marker.  Launching again skips finished runs and resumes interrupted
ones from their checkpoint (:func:`mmdg.experiments.sweep.run_one` holds the run lock and resumes).
A job that raises never stops the others; :class:`Summary` lists finished, skipped and failed
jobs, each failure with its log and last error line.

* ``local``: one after another in this process (the old behaviour).
* ``parallel``: ``jobs`` worker processes, torch's CPU threads split between them.
* ``multi_gpu``: one worker per visible GPU, pinned with ``CUDA_VISIBLE_DEVICES`` (as DomainBed).
* ``slurm``: one Slurm array through submitit; on a timeout or preemption the job's
  ``checkpoint()`` requeues it and the run resumes from its last epoch checkpoint.
  ``SlurmOptions(cluster="local")`` runs the same code through submitit's local executor.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import multiprocessing
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..train import RunConfig
from .results import BadRecord, RunLocked, read_record

LAUNCHERS = ("local", "parallel", "multi_gpu", "slurm")


def log_path(results_dir: Path, cfg: RunConfig) -> Path:
    return Path(results_dir) / "_logs" / f"{cfg.run_id()}.log"


@dataclass
class Outcome:
    """What became of one job: ``status`` is finished, skipped or failed."""

    run_id: str
    name: str
    status: str
    record: str = ""
    log: str = ""
    error: str = ""


def _name(cfg: RunConfig) -> str:
    return f"{cfg.method} -> {cfg.target} seed {cfg.seed} ({cfg.run_id()})"


def _last_line(e: BaseException) -> str:
    lines = [s for s in "".join(traceback.format_exception_only(type(e), e)).splitlines() if s.strip()]
    return lines[-1].strip() if lines else type(e).__name__


def execute(cfg: RunConfig, results_dir: Path, overwrite: bool = False, redirect: bool = True,
            progress: bool = False, share_data: bool = False) -> Outcome:
    """Run one job; its output (with ``redirect``) and any traceback go to its log; never raises.
    ``share_data``: reuse this process's generated benchmark data (:func:`~.sweep.shared_benchmark`)."""
    from .sweep import run_one, shared_benchmark
    log = log_path(results_dir, cfg)
    log.parent.mkdir(parents=True, exist_ok=True)
    out = Outcome(cfg.run_id(), _name(cfg), "failed", log=str(log))
    with open(log, "a") as f:
        f.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {out.name}\n")
        f.flush()
        streams = (contextlib.redirect_stdout(f), contextlib.redirect_stderr(f)) if redirect else ()
        with contextlib.ExitStack() as stack:
            for s in streams:
                stack.enter_context(s)
            try:
                bench = shared_benchmark(cfg) if share_data else None
                path, record, skipped = run_one(cfg, results_dir, overwrite, progress=progress, benchmark=bench)
                out.record = str(path)
                if record.get("status") == "diverged":
                    out.error = record["diverged"]["message"] + " (recorded as diverged)"
                else:
                    out.status = "skipped" if skipped else "finished"
            except RunLocked as e:
                out.status, out.error = "skipped", str(e)
            except Exception as e:  # a crashing job never stops the others
                traceback.print_exc(file=f)
                out.error = _last_line(e)
        f.write(f"== {out.status}{': ' + out.error if out.error else ''}\n")
    return out


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    def of(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def ok(self) -> bool:
        return not self.of("failed")

    def lines(self) -> list[str]:
        out = [f"sweep: {len(self.of('finished'))} finished, {len(self.of('skipped'))} skipped "
               f"(already done or held by another sweep), {len(self.of('failed'))} failed"]
        out += [f"  FAILED {o.name}: {o.error}  (log {o.log})" for o in self.of("failed")]
        return out


def _done(cfg: RunConfig, results_dir: Path) -> Path | None:
    """The record path if ``cfg`` has a complete (or diverged) record: nothing to dispatch."""
    from .sweep import checkpoint_path, record_path
    path = record_path(results_dir, cfg)
    if not path.exists() or checkpoint_path(results_dir, cfg).exists():
        return None  # no record, or a checkpoint left to clean up: let run_one see it
    try:
        read_record(path)
    except BadRecord:
        return None
    return path


# ---------------------------------------------------------------- process pools

def _init_worker(threads: int, gpus) -> None:
    if gpus is not None:  # before any CUDA call in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
    import torch
    torch.set_num_threads(threads)
    import warnings
    warnings.simplefilter("ignore")  # job output is in its log; warnings would interleave


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


def _pool(workers: int, threads: int, gpus: list[str] | None):
    ctx = multiprocessing.get_context("spawn")  # no inherited torch threads, CUDA or locks
    queue = None
    if gpus is not None:
        queue = ctx.Queue()
        for g in gpus:
            queue.put(g)
    return cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads, queue))


def _run_pool(configs, results_dir, overwrite, workers, threads, gpus, report, retry: bool = True) -> None:
    crashed = []
    with _pool(workers, threads, gpus) as pool:
        futures = {pool.submit(execute, c, results_dir, overwrite, share_data=True): c for c in configs}
        for fut in cf.as_completed(futures):
            try:
                o = fut.result()
            except cf.process.BrokenProcessPool:
                crashed.append(futures[fut])
                continue
            report(o)
    if crashed and retry and workers > 1:  # a worker died (killed, segfault): the jobs it took down run again
        _run_pool(crashed, results_dir, overwrite, 1 if len(crashed) == 1 else workers, threads, gpus,
                  report, retry=False)
        return
    for c in crashed:  # broken again: each alone, so one crash fails one job
        with _pool(1, threads, gpus[:1] if gpus else None) as pool:
            try:
                o = pool.submit(execute, c, results_dir, overwrite, share_data=True).result()
            except cf.process.BrokenProcessPool:
                o = Outcome(c.run_id(), _name(c), "failed", log=str(log_path(results_dir, c)),
                            error="the worker process died (killed or crashed) while running this job")
        report(o)


# ---------------------------------------------------------------- Slurm (submitit)

@dataclass
class SlurmOptions:
    """Slurm array settings; ``cluster="local"`` runs the jobs through submitit's local executor."""

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 4
    time_min: int = 240
    array_parallelism: int = 64
    sbatch: dict = field(default_factory=dict)   # extra sbatch options, e.g. {"account": "x", "qos": "y"}
    cluster: str = "slurm"


class SlurmJob:
    """One run as a submitit callable; ``checkpoint()`` requeues it on timeout or preemption."""

    def __init__(self, cfg: RunConfig, results_dir: str, overwrite: bool = False):
        self.cfg, self.results_dir, self.overwrite = cfg, results_dir, overwrite

    def __call__(self) -> Outcome:
        return execute(self.cfg, Path(self.results_dir), self.overwrite, redirect=False)

    def checkpoint(self, *args, **kwargs):
        # the trainer checkpoints every epoch; the requeued job resumes from the last one.  The
        # SystemExit submitit raises next unwinds run_one, releasing the run lock.
        import submitit
        return submitit.helpers.DelayedSubmission(SlurmJob(self.cfg, self.results_dir, False))


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise ValueError("--launcher slurm needs submitit, which is not installed "
                         "(pip install submitit, as pinned in requirements.txt)") from None
    return submitit


def _slurm(configs, results_dir, overwrite, opts: SlurmOptions, report) -> None:
    submitit = _import_submitit()
    if opts.cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise ValueError("--launcher slurm: no sbatch/srun command on PATH (run on a Slurm login node, "
                         "or --slurm-cluster local to run the jobs here through submitit)")
    folder = Path(results_dir) / "_logs" / "slurm"
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=opts.cluster)
    params = dict(name="mmdg-sweep", timeout_min=opts.time_min, cpus_per_task=opts.cpus_per_job,
                  slurm_array_parallelism=opts.array_parallelism,
                  slurm_additional_parameters=dict(opts.sbatch))
    if opts.gpus_per_job:
        params["gpus_per_node"] = opts.gpus_per_job
    if opts.partition:
        params["slurm_partition"] = opts.partition
    ex.update_parameters(**params)
    try:  # sbatch's own output is streamed to stderr: keep it for the one-line error
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), ex.batch():
            jobs = [ex.submit(SlurmJob(c, str(results_dir), overwrite)) for c in configs]
    except Exception as e:
        what = f"--partition {opts.partition!r}" if opts.partition else "--launcher slurm"
        lines = [s for s in str(e).splitlines() if s.strip()]
        raise ValueError(f"{what}: the cluster refused the array job: "
                         f"{lines[-1].strip() if lines else type(e).__name__}") from None
    for c, job in zip(configs, jobs):
        try:
            o = job.result()
        except Exception as e:
            o = Outcome(c.run_id(), _name(c), "failed", log=str(job.paths.stderr), error=_last_line(e))
        report(o)


# ---------------------------------------------------------------- entry point

def check_launch(launcher: str, jobs: int) -> None:
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher {launcher!r} is unknown; expected one of {', '.join(LAUNCHERS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")


def launch(configs: list[RunConfig], results_dir: Path, launcher: str = "local", jobs: int = 1,
           overwrite: bool = False, progress: bool = True, slurm: SlurmOptions | None = None,
           log=print) -> Summary:
    """Run ``configs`` with ``launcher``; finished runs are skipped without dispatching them."""
    check_launch(launcher, jobs)
    if launcher == "slurm":
        _import_submitit()
    gpus = None
    if launcher == "multi_gpu":
        gpus = visible_gpus()
        if not gpus:
            raise ValueError("--launcher multi_gpu: no visible GPU (CUDA_VISIBLE_DEVICES empty or no CUDA "
                             "device); use --launcher parallel or local")
    results_dir = Path(results_dir)
    summary, todo = Summary(), []
    n = len(configs)

    def report(o: Outcome) -> None:
        summary.outcomes.append(o)
        tail = o.error if o.status == "failed" else ("" if o.status == "finished" else o.error or "already done")
        log(f"[{len(summary.outcomes)}/{n}] {o.name}: {o.status}{': ' + tail if tail else ''}")

    for c in configs:
        path = None if overwrite else _done(c, results_dir)
        if path is not None:
            report(Outcome(c.run_id(), _name(c), "skipped", record=str(path)))
        else:
            todo.append(c)
    if not todo:
        return summary
    if launcher == "local":
        for c in todo:
            report(execute(c, results_dir, overwrite, redirect=False, progress=progress))
    elif launcher == "slurm":
        _slurm(todo, results_dir, overwrite, slurm or SlurmOptions(), report)
    else:
        workers = len(gpus) if gpus else min(jobs, len(todo))
        threads = max(1, available_cpus() // workers)
        _run_pool(todo, results_dir, overwrite, workers, threads, gpus, report)
    try:
        (results_dir / "_checkpoints").rmdir()  # only if empty
    except OSError:
        pass
    return summary


# ---------------------------------------------------------------- command line

HELP = """launchers: local runs the jobs one after another here; parallel runs --jobs worker processes
(torch threads split between them); multi_gpu runs one job per visible GPU (CUDA_VISIBLE_DEVICES);
slurm submits one array job through submitit (--partition, --gpus-per-job, --time-min,
--array-parallelism, --sbatch KEY=VALUE), logs under <results>/_logs, requeued on timeout or
preemption.  Finished runs are skipped; interrupted ones resume from their checkpoint."""


def add_launcher_args(p) -> None:
    g = p.add_argument_group("launchers", HELP)
    g.add_argument("--launcher", default="local", help=f"one of {', '.join(LAUNCHERS)} (default local)")
    g.add_argument("--jobs", type=int, default=2, help="parallel: number of worker processes (default 2)")
    g.add_argument("--partition", default=None, help="slurm: partition")
    g.add_argument("--gpus-per-job", type=int, default=1, help="slurm: GPUs per job (default 1)")
    g.add_argument("--cpus-per-job", type=int, default=4, help="slurm: CPUs per job (default 4)")
    g.add_argument("--time-min", type=int, default=240, help="slurm: time limit per job in minutes")
    g.add_argument("--array-parallelism", type=int, default=64, help="slurm: jobs of the array running at once")
    g.add_argument("--sbatch", action="append", metavar="KEY=VALUE", help="slurm: extra sbatch option")
    g.add_argument("--slurm-cluster", default="slurm", choices=["slurm", "local", "debug"],
                   help="slurm: local runs the same submitit path on this machine (tests)")


def slurm_options(a, pairs) -> SlurmOptions:
    for flag, value, low in (("--gpus-per-job", a.gpus_per_job, 0), ("--cpus-per-job", a.cpus_per_job, 1),
                             ("--time-min", a.time_min, 1), ("--array-parallelism", a.array_parallelism, 1)):
        if value < low:
            raise ValueError(f"{flag} must be an integer >= {low}, got {value}")
    return SlurmOptions(partition=a.partition, gpus_per_job=a.gpus_per_job, cpus_per_job=a.cpus_per_job,
                        time_min=a.time_min, array_parallelism=a.array_parallelism,
                        sbatch={k: str(v) for k, v in pairs(a.sbatch, "--sbatch").items()},
                        cluster=a.slurm_cluster)
