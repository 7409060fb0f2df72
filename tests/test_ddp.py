"""Data-parallel training on gloo with 2 processes equals one process at the same global batch."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmdg.train import RunConfig, build_run, train

ROOT = Path(__file__).resolve().parents[1]
ENC = {m: {"name": "mlp", "hidden": 8, "out_dim": 8} for m in ("m0", "m1")}
BENCH = {"dim": 4, "train_per_domain": 48, "test_per_domain": 16}
#: erm, base, the two papers' methods, and balancing baselines whose strategies are non-linear in the
#: gradients (OGM-GE: confidence-ratio coefficients and noise; PCGrad, MMPareto: projections).
#: MER-DG's batch covariance sees the gathered global batch.  It runs on the features here: its
#: projector's last biases have an analytically zero gradient (the statistics are centred), and Adam
#: turns their rounding noise (~1e-9, different with 1 and 2 ranks) into lr-sized steps.
CASES = {"erm": {}, "base": {}, "gmp": {"alpha_k": 2.0, "alpha_p": 2.0}, "mer": {"mer_on": "features"},
         "ogm_ge": {"ogm_alpha": 2.0}, "pcgrad": {}, "mmpareto": {}}


def _cfg(method, hp):
    return RunConfig(target="d0", benchmark="gaussian_features", benchmark_kwargs=BENCH, method=method, hparams=hp,
                     epochs=2, batch_size=16, encoders=ENC, device="cpu")


def _tensors(method):
    return {k: v.detach().clone() for k, v in [*method.named_parameters(), *method.named_buffers()]}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name, hp in CASES.items():
            rec = train(_cfg(name, hp), progress=False, keep_model=True)
            torch.save(_tensors(rec["_method"]), Path(out) / f"{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_gloo_ranks_equal_one_process_at_the_global_batch(name, two_ranks):
    torch.set_num_threads(1)
    cfg = _cfg(name, CASES[name])
    start = _tensors(build_run(cfg)[2])
    single = _tensors(train(cfg, progress=False, keep_model=True)["_method"])
    ranks = [torch.load(two_ranks / f"{name}-rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert set(ranks[0]) == set(single)
    assert max((single[k].float() - start[k].float()).abs().max().item() for k in single) > 1e-2  # it trained
    for k, v in single.items():
        for r in ranks:
            torch.testing.assert_close(r[k], v, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {k}: {m}")


def test_the_sharded_batches_cover_the_global_batch(monkeypatch):
    from mmdg import distributed
    from mmdg.data.base import Batch
    seen = []

    class Loader:
        def __iter__(self):
            yield Batch({"a": torch.arange(8.).reshape(8, 1)}, torch.arange(8), torch.zeros(8, dtype=torch.long))

        def __len__(self):
            return 1

    monkeypatch.setattr(distributed, "world", lambda: 2)
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        seen += [b.label.tolist() for b in distributed.ShardedLoader(Loader(), 8)]
    with pytest.raises(ValueError, match="batch_size=7 must be divisible by the number of processes"):
        distributed.ShardedLoader(Loader(), 7)
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_torchrun_train_writes_the_single_process_record(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this python")
    args = ["train", "--method", "gmp", "--target", "d0", "--benchmark", "gaussian_features", "--encoders",
            json.dumps(ENC), "--epochs", "2", "--quiet", "--device", "cpu",
            *[x for k, v in BENCH.items() for x in ("--bench", f"{k}={v}")]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "mmdg",
                        *args, "--results", str(tmp_path / "ddp")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.count("wrote ") == 1, r.stdout                # rank 0 alone reports and writes
    s = subprocess.run([sys.executable, "-m", "mmdg", *args, "--results", str(tmp_path / "one")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert s.returncode == 0, s.stderr[-2000:]
    (a,), (b,) = (list((tmp_path / d).rglob("*.json")) for d in ("ddp", "one"))
    assert a.relative_to(tmp_path / "ddp") == b.relative_to(tmp_path / "one")
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert not (tmp_path / "ddp" / "_checkpoints").exists() or not list((tmp_path / "ddp" / "_checkpoints").iterdir())
    for x, y in zip(ra["epochs"], rb["epochs"]):
        for part in ("val", "test"):
            assert x[part] == pytest.approx(y[part], abs=1e-4)
        assert x["train"] == pytest.approx(y["train"], abs=1e-4)
