"""Sweep throughput: the sequential sweep against ``--launcher parallel``, on the same runs, back to back.

Each path runs the whole grid in a fresh results folder through the command line (start-up
included); reported: wall seconds, runs per hour, the ratio, the load average before and after
each path (the machine may be shared), and whether the records are equal (all but the
environment and the per-epoch timings).  ``--seq-threads`` sets OMP_NUM_THREADS for the
sequential paths (default: unset, torch's default, as a plain ``python -m mmdg sweep``).  A CPU
run's last bits depend on its thread count (float reductions split differently), so with
``--baseline`` the sequential path of this code runs at the workers' thread count instead: it is
the one whose records the parallel ones must equal, and the baseline is the throughput reference.
``--baseline REV`` adds the old path: the sequential sweep of the code at git revision REV (a
temporary worktree; e.g. the commit before the launchers), run first; the ratio the issue asks for is
``baseline / parallel``.  ``--breakdown`` also times one run of each code (baseline and this one, in
a subprocess, at the sequential path's threads) and one run the way a parallel worker does it (its
threads, data already built by an earlier run in the process): import, data generation, training
steps, evaluation, the rest.

Usage: python benchmarks/sweep_throughput.py [--profile smoke|book] [--jobs 2] [--seq-threads N]
           [--baseline REV] [--breakdown] [--save FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {  # 5 methods x 3 targets x 2 seeds = 30 runs of synth_foley (video + audio)
    "smoke": {"size": "tiny", "epochs": 2},
    "book": {"size": "cpu", "epochs": 8},
}


def _args(profile: str) -> list[str]:
    p = PROFILES[profile]
    return ["--benchmark", "synth_foley", "--bench", f"size={p['size']}", "--bench", "imbalance=0.8",
            "--bench", "mismatch=1.0", "--bench", "dominant=audio", "--modalities", "video,audio",
            "--encoder-preset", "cpu", "--epochs", str(p["epochs"]), "--device", "cpu", "--quiet",
            "--methods", "erm,base,gmp,ogm_ge,pcgrad", "--targets", "studio,kitchen,street", "--seeds", "0,1"]


def _records(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*.json")):
        if "_logs" not in p.parts:
            rec = json.loads(p.read_text())
            rec.pop("env", None)
            for e in rec["epochs"]:
                e.pop("seconds", None)
            out[str(p.relative_to(root))] = rec
    return out


def _timed(argv: list[str], env: dict, tree: Path = ROOT) -> dict:
    load = os.getloadavg()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "mmdg", "sweep", *argv], cwd=tree, env={**env, "PYTHONPATH": str(tree)},
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"sweep failed ({r.returncode}): {r.stderr[-2000:]}")
    return {"seconds": seconds, "load_before": load, "load_after": os.getloadavg(),
            "summary": r.stdout.strip().splitlines()[-1]}


def breakdown(profile: str, warm: bool = False) -> dict:
    """One run timed by phase; ``warm``: as a parallel worker runs it, after an earlier run in this
    process built the benchmark (``mmdg.experiments.sweep.shared_benchmark``)."""
    t0 = time.perf_counter()
    import mmdg.train as T
    spent = {"import": time.perf_counter() - t0, "data": 0.0, "evaluation": 0.0}

    def timing(fn, key):
        def wrapped(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        return wrapped
    T.benchmark_for_target, T.make_split = timing(T.benchmark_for_target, "data"), timing(T.make_split, "data")
    T.evaluate = timing(T.evaluate, "evaluation")
    p = PROFILES[profile]
    cfg = T.RunConfig(target="street", benchmark="synth_foley", method="base", epochs=p["epochs"], device="cpu",
                      benchmark_kwargs={"size": p["size"], "imbalance": 0.8, "mismatch": 1.0, "dominant": "audio"},
                      modalities=["video", "audio"])
    bench = None
    if warm:
        from mmdg.experiments.sweep import shared_benchmark
        T.train(T.RunConfig(**{**cfg.to_dict(), "method": "erm", "epochs": 1}), progress=False,
                benchmark=shared_benchmark(cfg))
        spent.update(data=0.0, evaluation=0.0)
        bench = shared_benchmark(cfg)
    t1 = time.perf_counter()
    rec = T.train(cfg, progress=False, benchmark=bench)
    total = time.perf_counter() - t1
    epochs = sum(e["seconds"] for e in rec["epochs"])
    spent.update({"training_steps": epochs - spent["evaluation"], "rest": total - epochs - spent["data"],
                  "run_total": total, "threads": rec["env"]["threads"]})
    return spent


def _commit(tree: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                          text=True).stdout.strip()


def _breakdown_in(tree: Path, profile: str, mode: str, env: dict) -> dict:
    """:func:`breakdown` of the code in ``tree``, in a fresh process (``mode``: cold or warm)."""
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--profile", profile, "--breakdown-only", mode],
                       cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"breakdown in {tree} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seq-threads", type=int, default=None)
    ap.add_argument("--baseline", default=None, metavar="REV")
    ap.add_argument("--no-sequential", action="store_true",
                    help="with --baseline: skip this code's sequential path (and the record-equality check)")
    ap.add_argument("--breakdown", action="store_true")
    ap.add_argument("--breakdown-only", choices=["cold", "warm"], help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None)
    a = ap.parse_args()
    if a.breakdown_only:
        print(json.dumps(breakdown(a.profile, warm=a.breakdown_only == "warm")))
        return
    env = dict(os.environ)
    seq_env = dict(env) if a.seq_threads is None else {**env, "OMP_NUM_THREADS": str(a.seq_threads)}
    runs = 30
    out = {"profile": a.profile, "runs": runs, "cpus": os.cpu_count(), "jobs": a.jobs, "machine": platform.platform(),
           "cpu": platform.processor() or platform.machine(), "commit": _commit(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        old = None
        if a.baseline:
            old = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), a.baseline], cwd=ROOT, check=True)
        try:
            if old is not None:
                base = _timed([*_args(a.profile), "--results", f"{tmp}/old"], seq_env, old)
                out["baseline"] = {**base, "commit": _commit(old), "runs_per_hour": 3600 * runs / base["seconds"]}
            worker_threads = max(1, (os.cpu_count() or 1) // a.jobs)
            eq_env = {**env, "OMP_NUM_THREADS": str(worker_threads)} if old is not None else seq_env
            par = _timed([*_args(a.profile), "--results", f"{tmp}/par", "--launcher", "parallel", "--jobs",
                          str(a.jobs)], env)
            out["parallel"] = {**par, "runs_per_hour": 3600 * runs / par["seconds"]}
            if not (a.no_sequential and old is not None):
                seq = _timed([*_args(a.profile), "--results", f"{tmp}/seq", "--launcher", "local"], eq_env)
                out["records_equal"] = _records(Path(tmp) / "seq") == _records(Path(tmp) / "par")
                out["sequential"] = {**seq, "runs_per_hour": 3600 * runs / seq["seconds"],
                                     "threads": eq_env.get("OMP_NUM_THREADS", "default")}
                out["ratio_parallel_vs_sequential"] = seq["seconds"] / par["seconds"]
            if old is not None:
                out["ratio_parallel_vs_baseline"] = out["baseline"]["seconds"] / par["seconds"]
            if a.breakdown:
                out["breakdown"] = {"this_code_sequential": _breakdown_in(ROOT, a.profile, "cold", seq_env),
                                    "this_code_parallel_worker": _breakdown_in(
                                        ROOT, a.profile, "warm", {**env, "OMP_NUM_THREADS": str(worker_threads)})}
                if old is not None:
                    out["breakdown"]["baseline_sequential"] = _breakdown_in(old, a.profile, "cold", seq_env)
        finally:
            if old is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    out["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(json.dumps(out, indent=1))
    if a.save:
        Path(a.save).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
