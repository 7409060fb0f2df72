"""Launchers: parallel and submitit (local executor) sweeps equal the sequential one; crashes,
kills and bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmdg.__main__ import main
from mmdg.experiments.launchers import SlurmOptions, launch
from mmdg.experiments.sweep import grid
from mmdg.train import RunConfig

ROOT = Path(__file__).resolve().parents[1]
ENC = {m: {"name": "mlp", "hidden": 8, "out_dim": 8} for m in ("m0", "m1")}
BENCH = {"dim": 4, "train_per_domain": 48, "test_per_domain": 16}
BASE = RunConfig(target="-", benchmark="gaussian_features", benchmark_kwargs=BENCH, epochs=2, batch_size=16,
                 encoders=ENC)
CLI = ["--benchmark", "gaussian_features", "--encoders", json.dumps(ENC), "--epochs", "2", "--quiet",
       *[x for k, v in BENCH.items() for x in ("--bench", f"{k}={v}")]]


def _records(root: Path) -> dict:
    """Record files below ``root`` (relative path -> record without env and timings)."""
    out = {}
    for p in sorted(root.rglob("*.json")):
        if "_logs" in p.parts:
            continue
        rec = json.loads(p.read_text())
        rec.pop("env")
        for e in rec["epochs"]:
            e.pop("seconds")
        out[str(p.relative_to(root))] = rec
    return out


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequential")
    s = launch(grid(BASE, ["erm", "base"], ["d0", "d1"], [0]), root, "local", progress=False, log=lambda s: None)
    assert s.ok and len(s.of("finished")) == 4
    return _records(root)


def test_a_two_job_parallel_sweep_equals_the_sequential_one(sequential, tmp_path):
    lines = []
    s = launch(grid(BASE, ["erm", "base"], ["d0", "d1"], [0]), tmp_path, "parallel", jobs=2, log=lines.append)
    assert s.ok and len(s.of("finished")) == 4, lines
    assert _records(tmp_path) == sequential
    assert sorted(p.name for p in (tmp_path / "_logs").glob("*.log")) == sorted(
        f"{c.run_id()}.log" for c in grid(BASE, ["erm", "base"], ["d0", "d1"], [0]))
    again = launch(grid(BASE, ["erm", "base"], ["d0", "d1"], [0]), tmp_path, "parallel", jobs=2, log=lines.append)
    assert len(again.of("skipped")) == 4 and not again.of("finished")


def test_a_submitit_local_sweep_equals_the_sequential_one(sequential, tmp_path):
    pytest.importorskip("submitit")
    s = launch(grid(BASE, ["erm", "base"], ["d0", "d1"], [0]), tmp_path, "slurm",
               slurm=SlurmOptions(cluster="local", gpus_per_job=0, cpus_per_job=1), log=lambda s: None)
    assert s.ok and len(s.of("finished")) == 4, s.lines()
    assert _records(tmp_path) == sequential
    assert list((tmp_path / "_logs" / "slurm").iterdir()), "submitit's job logs live under the results folder"


def test_a_crashing_job_never_stops_the_others_and_the_sweep_exits_nonzero(tmp_path, capsys):
    code = main(["sweep", "--methods", "erm", "--targets", "d0,d1", "--seeds", "0", *CLI,
                 "--results", str(tmp_path / "ok"), "--launcher", "parallel", "--jobs", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 finished, 0 skipped" in out
    bad = tmp_path / "bad"
    good = grid(BASE, ["erm"], ["d0"], [0])
    crash = [RunConfig(**{**BASE.to_dict(), "target": "d1", "batch_size": 500})]  # > the 96 training samples
    s = launch(good + crash, bad, "parallel", jobs=2, log=lambda s: None)
    assert [o.status for o in s.outcomes if o.run_id == good[0].run_id()] == ["finished"]
    (failed,) = s.of("failed")
    assert failed.run_id == crash[0].run_id() and "no full batch" in failed.error
    assert "Traceback" in Path(failed.log).read_text() and "no full batch" in s.lines()[1]
    assert not s.ok


def test_a_killed_parallel_sweep_resumes_and_equals_the_sequential_one(sequential, tmp_path):
    cmd = [sys.executable, "-m", "mmdg", "sweep", "--methods", "erm,base", "--targets", "d0,d1", "--seeds", "0",
           *CLI, "--epochs", "2", "--results", str(tmp_path), "--launcher", "parallel", "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "_checkpoints").glob("*.pt")):
        time.sleep(0.02)
    assert p.poll() is None, "the sweep ended before a checkpoint was seen"
    os.killpg(p.pid, signal.SIGKILL)   # the sweep and its workers
    p.wait()
    interrupted = [c.stem for c in (tmp_path / "_checkpoints").glob("*.pt")]
    assert interrupted
    assert len(_records(tmp_path)) < 4
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _records(tmp_path) == sequential
    assert not (tmp_path / "_checkpoints").exists()
    for run_id in interrupted:  # two starts in its log: the first killed, the second resumed
        assert (tmp_path / "_logs" / f"{run_id}.log").read_text().count("== ") >= 3


@pytest.mark.parametrize("argv, expected", [
    (["--launcher", "mpi"], "--launcher 'mpi' is unknown; expected one of local, parallel, multi_gpu, slurm"),
    (["--launcher", "parallel", "--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
    (["--hparam-trials", "-1"], "--hparam-trials must be an integer >= 0"),
    (["--launcher", "slurm", "--time-min", "0", "--slurm-cluster", "local"], "--time-min must be an integer >= 1"),
])
def test_bad_launcher_input_is_one_line_naming_the_flag(argv, expected, tmp_path, capsys):
    code = main(["sweep", "--methods", "erm", "--targets", "d0", *CLI, "--results", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0 and expected in err, err
    assert not list(tmp_path.iterdir())


def test_slurm_without_submitit_or_with_a_refused_partition_is_one_line(tmp_path, capsys, monkeypatch):
    argv = ["sweep", "--methods", "erm", "--targets", "d0", *CLI, "--results", str(tmp_path), "--launcher", "slurm"]
    monkeypatch.setitem(sys.modules, "submitit", None)    # import submitit raises ImportError
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--launcher slurm needs submitit" in err, err
    monkeypatch.delitem(sys.modules, "submitit")
    pytest.importorskip("submitit")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert main([*argv, "--partition", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--partition 'nope'" in err and "invalid partition" in err, err


def test_sweep_help_documents_launchers_and_hparam_trials(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    for word in ("--launcher", "parallel", "multi_gpu", "slurm", "--jobs", "--partition", "--gpus-per-job",
                 "--time-min", "--array-parallelism", "--sbatch", "--hparam-trials"):
        assert word in out, word


def test_multi_gpu_without_a_visible_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    code = main(["sweep", "--methods", "erm", "--targets", "d0", *CLI, "--results", str(tmp_path),
                 "--launcher", "multi_gpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--launcher multi_gpu: no visible GPU" in err, err


def test_a_preempted_slurm_job_requeues_itself_as_a_resuming_job(tmp_path):
    submitit = pytest.importorskip("submitit")
    from mmdg.experiments.launchers import SlurmJob
    cfg = grid(BASE, ["erm"], ["d0"], [0])[0]
    again = SlurmJob(cfg, str(tmp_path), overwrite=True).checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    job = again.function
    assert isinstance(job, SlurmJob) and job.cfg == cfg and job.overwrite is False  # resumes, keeps the checkpoint
