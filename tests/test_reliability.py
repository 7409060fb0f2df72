"""Issue 14's corpus of bad inputs and faults: each is refused or handled, naming the culprit, losing nothing.

Sections: diverged runs; collect; checkpoints; media; configuration and CLI; records, locks and
disks; the SIGKILL soak test (a sweep killed at random moments, then completed, equals an
uninterrupted one).
"""
import ast
import errno
import json
import multiprocessing
import os
import pickle
import random
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mmdg.__main__ import main
from mmdg.data import build_benchmark
from mmdg.data.base import BENCHMARKS, TensorDataset
from mmdg.data.epic import FRAME
from mmdg.data.fixtures import write_epic_fixture, write_hac_fixture
from mmdg.data.media import MediaError
from mmdg.experiments import results as res
from mmdg.experiments.collect import load_runs, runs_table, summarize
from mmdg.experiments.sweep import checkpoint_path, lock_path, record_path, run_one, sweep
from mmdg.io import atomic_torch_save
from mmdg.methods import resolve
from mmdg.train import Diverged, RunConfig, train

from conftest import MLP_ENCODERS, Toy


@BENCHMARKS.register("toy_nan")
class ToyNaN(Toy):
    """``toy`` with one NaN in one training feature of domain d1."""

    name = "toy_nan"

    def dataset(self, domain, split):
        ds = super().dataset(domain, split)
        if domain == "d1" and split == "train":
            a = ds.inputs["a"].clone()
            a[5, 2] = float("nan")
            ds = TensorDataset({"a": a, "b": ds.inputs["b"]}, ds.label, ds.domain)
        return ds


def _cfg(**kw):
    base = dict(target="d0", benchmark="toy", method="base", epochs=2, batch_size=16, encoders=MLP_ENCODERS)
    base.update(kw)
    return RunConfig(**base)


def _strict_json(path):
    def refuse(c):
        raise AssertionError(f"{path} holds {c}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


CLI = ["--benchmark", "toy", "--encoders", json.dumps(MLP_ENCODERS), "--epochs", "1", "--quiet"]


def _cli(capsys, *argv):
    """(exit code, stderr) of the CLI; argparse errors (SystemExit) included."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    return code, err


# ---------------------------------------------------------------- diverged runs

@pytest.mark.parametrize("case", ["lr_1e30", "nan_feature"])
def test_a_diverged_run_stops_names_where_and_is_recorded_as_diverged(case, tmp_path):
    cfg = _cfg(lr=1e30) if case == "lr_1e30" else _cfg(benchmark="toy_nan", target="d0", method="erm")
    with pytest.raises(Diverged, match=r"run diverged at epoch 0 step \d+: (loss term 'ce'|the gradient of \S+)") as e:
        train(cfg, progress=False)
    info = e.value.record["diverged"]
    assert info["epoch"] == 0 and isinstance(info["step"], int)
    path, record, skipped = run_one(cfg, tmp_path, progress=False)
    assert not skipped and record["status"] == "diverged" and record["complete"] is False and record["final"] is None
    stored = _strict_json(path)                                 # no NaN / Infinity in the JSON
    assert stored["diverged"]["message"] == info["message"]
    assert not checkpoint_path(tmp_path, cfg).exists()
    # collect leaves it out and says so; sweep reports it and goes on with the next run
    good = run_one(_cfg(), tmp_path, progress=False)[0]
    runs = load_runs(tmp_path)
    assert list(runs["path"]) == [str(good)]
    assert [(p, why) for p, why in runs.attrs["excluded"]] == [(str(path), info["message"])]
    logs = []
    sweep(cfg, [cfg.method], [cfg.target], [0], tmp_path, progress=False, log=logs.append)
    assert "DIVERGED" in logs[0]


def test_cli_train_of_a_diverging_run_exits_nonzero_and_collect_lists_it(tmp_path, capsys):
    code, err = _cli(capsys, "train", "--method", "base", "--target", "d0", "--lr", "1e30",
                     "--results", str(tmp_path), *CLI)
    assert code == 3 and "run diverged at epoch 0" in err and "recorded as diverged" in err
    main(["train", "--method", "erm", "--target", "d0", "--results", str(tmp_path), *CLI])
    capsys.readouterr()
    code, err = _cli(capsys, "collect", "--results", str(tmp_path))
    assert code == 0 and "excluded" in err and "diverged" in err


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_non_finite_or_negative_lr_is_refused_naming_it(value, tmp_path, capsys):
    code, err = _cli(capsys, "train", "--target", "d0", "--lr", value, "--results", str(tmp_path), *CLI)
    assert code == 2 and "RunConfig.lr must be a finite number" in err
    assert not tmp_path.joinpath("toy").exists()


def test_json_writers_never_write_nan_or_infinity(tmp_path):
    p = res.write_record(tmp_path / "r.json", {"config": {}, "epochs": [{"x": float("nan")}],
                                               "final": {"a": float("inf"), "b": [1.0, float("-inf")]}})
    assert _strict_json(p) == {"config": {}, "epochs": [{"x": None}], "final": {"a": None, "b": [1.0, None]}}
    from mmdg.experiments.measurements import write_measurement
    m = write_measurement(tmp_path, "gmp_overhead", "x", {"ratio": float("nan")}, {"date": "d"})
    assert _strict_json(m)["ratio"] is None


# ---------------------------------------------------------------- collect

def test_collect_never_averages_different_configurations(tmp_path, capsys):
    for lr in (1e-3, 1e-4):
        run_one(_cfg(method="erm", lr=lr), tmp_path, progress=False)
    runs = load_runs(tmp_path)
    assert runs["config_id"].nunique() == 2
    with pytest.raises(ValueError, match=r"'method': 'erm'.*target 'd0' mixes 2 configurations \(lr=0.001; lr=0.0001\)"):
        summarize(runs)
    split = summarize(runs, mixed="split")
    assert len(split) == 2 and set(split.index.get_level_values("config")) == {"lr=0.001", "lr=0.0001"}
    for lr, label in ((1e-3, "lr=0.001"), (1e-4, "lr=0.0001")):
        want = runs[runs["setting_json"].str.contains(f'"lr": {lr}')]["test_acc"].item()
        assert split.loc[("erm", label), ("d0", "mean")] == pytest.approx(want)
    assert main(["collect", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "mixes configurations (lr=0.001; lr=0.0001)" in out.err and "lr=0.0001" in out.out
    # one configuration over seeds is one cell, as before
    run_one(_cfg(method="erm", lr=1e-3, seed=1), tmp_path, progress=False)
    runs = load_runs(tmp_path)
    one = summarize(runs[runs["setting_json"].str.contains('"lr": 0.001')])
    assert one.loc["erm", ("n_seeds", "")] == 2


@pytest.mark.parametrize("content", ["{", "[1, 2]", "\x00\xff garbage", '{"config": {}, "epochs": [], "final": {}}',
                                     '{"epochs": []}'])
def test_collect_skips_bad_records_and_names_them(content, tmp_path, capsys):
    good = run_one(_cfg(method="erm"), tmp_path, progress=False)[0]
    bad = tmp_path / "toy" / "erm" / "d0" / "seed9-garbage.json"
    bad.write_bytes(content.encode("utf-8", "surrogateescape") if "\x00" not in content else b"\x00\xff garbage")
    with pytest.warns(UserWarning, match="seed9-garbage.json"):
        runs = load_runs(tmp_path)
    assert list(runs["path"]) == [str(good)] and runs.attrs["excluded"][0][0] == bad
    assert main(["collect", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert f"excluded {bad}" in out.err and "erm" in out.out


def test_sweep_moves_a_garbage_record_aside_and_trains_the_run(tmp_path):
    cfg = _cfg(method="erm")
    path = record_path(tmp_path, cfg)
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    with pytest.warns(UserWarning, match=rf"{path.name}.*moved it aside to {path.name}.corrupt-"):
        paths = sweep(cfg, ["erm"], ["d0"], [0], tmp_path, progress=False, log=lambda s: None)
    assert paths == [path] and _strict_json(path)["complete"] is True
    assert [p.name.startswith(f"{path.name}.corrupt-") for p in path.parent.iterdir()].count(True) == 1


# ---------------------------------------------------------------- checkpoints

class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("kind", ["pickle_payload", "truncated", "random_bytes", "not_a_checkpoint"])
def test_a_bad_checkpoint_is_never_unpickled_moved_aside_and_the_run_restarts(kind, tmp_path):
    cfg = _cfg(head_dropout=0.2)
    full = train(cfg, progress=False)
    ckpt = tmp_path / "c.pt"
    marker = tmp_path / "pwned"
    if kind == "pickle_payload":
        ckpt.write_bytes(pickle.dumps({"run_id": cfg.run_id(), "x": _Payload(marker)}))
    elif kind == "truncated":
        train(cfg, checkpoint=ckpt, progress=False, stop_after=1)
        ckpt.write_bytes(ckpt.read_bytes()[:500])
    elif kind == "random_bytes":
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save({"weights": torch.zeros(2)}, ckpt)
    with pytest.warns(UserWarning, match=rf"{ckpt}: .*the run restarts from epoch 0; moved it aside to c.pt.corrupt-"):
        again = train(cfg, checkpoint=ckpt, progress=False)
    assert not marker.exists()
    assert again["final"] == full["final"]
    assert len(list(tmp_path.glob("c.pt.corrupt-*"))) == 1


def test_checkpoints_load_with_weights_only_and_resume_exactly(tmp_path):
    cfg = _cfg(method="ogm_ge", head_dropout=0.2, epochs=3)   # a strategy with extra state too
    full = train(cfg, progress=False)
    train(cfg, checkpoint=tmp_path / "c.pt", progress=False, stop_after=1)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["epoch"] == 0 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)
    resumed = train(cfg, checkpoint=tmp_path / "c.pt", progress=False)
    assert resumed["final"] == full["final"]
    assert [e["val"] for e in resumed["epochs"]] == [e["val"] for e in full["epochs"]]


def _unsafe_loads(source: str) -> list[int]:
    """Lines of ``torch.load`` calls that do not pass ``weights_only=True``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            safe = [k for k in node.keywords if k.arg == "weights_only"
                    and isinstance(k.value, ast.Constant) and k.value.value is True]
            if not safe and ast.unparse(node.func.value) == "torch":
                lines.append(node.lineno)
    return lines


def test_unsafe_load_finder():
    src = "import torch\ntorch.load(p)\ntorch.load(p, weights_only=False)\ntorch.load(p, weights_only=True)\n"
    assert _unsafe_loads(src) == [2, 3]


def test_no_module_unpickles_with_weights_only_false():
    root = Path(__file__).resolve().parents[1] / "mmdg"
    offenders = {str(p): lines for p in root.rglob("*.py") if (lines := _unsafe_loads(p.read_text()))}
    assert offenders == {}


# ---------------------------------------------------------------- media

SMALL = {"rgb_frames": 4, "flow_frames": 2, "short_side": 48, "crop_size": 32, "rgb_eval_crop": 32,
         "flow_eval_crop": 48, "audio_samples": 16000}


@pytest.fixture(scope="module")
def epic_root(tmp_path_factory):
    return write_epic_fixture(tmp_path_factory.mktemp("epic"), domains=("D1",), clips=3, frame_size=(64, 48),
                              segment_frames=(20, 30))


@pytest.fixture(scope="module")
def hac_root(tmp_path_factory):
    return write_hac_fixture(tmp_path_factory.mktemp("hac"), domains=("human",), clips=2, frame_size=(64, 48),
                             frames=30)


def _truncate_wav(path, keep_seconds):
    wave, rate = soundfile.read(str(path), dtype="float32")
    soundfile.write(str(path), wave[:int(keep_seconds * rate)], rate, subtype="PCM_16")


@pytest.mark.parametrize("where", ["before_segment", "inside_segment", "header_only"])
def test_truncated_epic_audio_is_a_media_error_or_counted(where, epic_root, tmp_path):
    import shutil
    root = Path(shutil.copytree(epic_root, tmp_path / "copy"))
    bench = build_benchmark("epic_kitchens", data_root=str(root), modalities="audio", **SMALL)
    ds = bench.dataset("D1", "test")
    seg = ds.segments[2]                                        # the last segment of the video
    wav = ds.wav(seg)
    if where == "header_only":
        soundfile.write(str(wav), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
        assert wav.stat().st_size == 44
    else:
        _truncate_wav(wav, seg.start_seconds - 0.5 if where == "before_segment"
                      else (seg.start_seconds + seg.stop_seconds) / 2)
    expect = "holds no audio samples" if where == "header_only" else r"audio ends at .* before the segment"
    with pytest.raises(MediaError, match=rf"sample D1/test uid {seg.uid} .*{wav.name}: {expect}"):
        ds[2]
    skipping = build_benchmark("epic_kitchens", data_root=str(root), modalities="audio", skip_bad_media=True, **SMALL)
    if where == "header_only":                                  # every segment of the video reads this wav
        with pytest.raises(MediaError, match="every one of the 3 samples failed"):
            skipping.dataset("D1", "test")[2]
        assert skipping.skipped_samples()["read_failures"] == 3
        return
    sample = skipping.dataset("D1", "test")[2]                  # replaced by the next one (segment 0)
    assert sample["label"] == skipping.dataset("D1", "test").labels[0]
    report = skipping.skipped_samples()
    assert report["read_failures"] == 1 and report["read_failed"][0]["file"] == str(wav)
    assert f"{seg.start_seconds:.3f}-" in report["read_failed"][0]["reason"]


@pytest.mark.parametrize("where", ["cut_short", "header_only"])
def test_truncated_hac_audio_is_a_media_error(where, hac_root, tmp_path):
    import shutil
    root = Path(shutil.copytree(hac_root, tmp_path / "copy"))
    bench = build_benchmark("hac", data_root=str(root), modalities="video,audio", **SMALL)
    ds = bench.dataset("human", "test")
    wav = ds.files(ds.clips[0])["audio"]
    if where == "header_only":
        soundfile.write(str(wav), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    else:
        _truncate_wav(wav, 0.2)                                 # of 1.25 s
    expect = "holds no audio samples" if where == "header_only" else r"audio ends at 0.200 s .* before the segment"
    with pytest.raises(MediaError, match=rf"sample human/test {ds.clips[0].file}: .*{wav.name}: {expect}"):
        ds[0]


def test_a_clip_mixing_frame_sizes_names_the_file_and_can_be_skipped(epic_root, tmp_path):
    import shutil
    from PIL import Image
    root = Path(shutil.copytree(epic_root, tmp_path / "copy"))
    kw = dict(data_root=str(root), modalities="video", **SMALL)
    ds = build_benchmark("epic_kitchens", **kw).dataset("D1", "test")
    seg = ds.segments[0]
    folder = ds.rgb_dir(seg)
    from mmdg.data.video_datasets import sample_indices
    offsets = sample_indices(seg.stop_frame - seg.start_frame, SMALL["rgb_frames"], 2, False, None)
    odd = folder / FRAME.format(seg.start_frame + int(offsets[1]))   # the clip's second frame
    Image.new("RGB", (32, 24)).save(odd, "JPEG")
    with pytest.raises(MediaError, match=rf"uid {seg.uid} .*{odd.name}: frame size \(24, 32\) differs"):
        ds[0]
    bench = build_benchmark("epic_kitchens", skip_bad_media=True, **kw)
    bench.dataset("D1", "test")[0]
    assert bench.skipped_samples()["read_failed"][0]["file"] == str(odd)


def test_a_video_mixing_frame_sizes_names_the_file(tmp_path, monkeypatch):
    from mmdg.data import media
    frames = [np.zeros((48, 64, 3), np.uint8), np.zeros((24, 32, 3), np.uint8)]
    monkeypatch.setattr(media, "_decode_video", lambda path, use: frames)   # as a stream that changes size
    with pytest.raises(MediaError, match=r"clip.mp4: frame 1 is \(24, 32\), frame 0 is \(48, 64\): mixed frame sizes"):
        media.read_video(tmp_path / "clip.mp4")


def test_a_truncated_synth_foley_cache_file_is_named_and_regenerated(tmp_path):
    kw = dict(cache_dir=str(tmp_path), modalities=["audio"])
    try:
        bench = build_benchmark("synth_foley", train_per_domain=8, test_per_domain=4, **kw)
    except TypeError:
        pytest.skip("synth_foley has no size arguments here")
    want = bench.dataset("studio", "train").inputs["audio"].clone()
    cache = sorted(tmp_path.glob("synth_foley-*.pt"))
    assert cache
    for p in cache:
        p.write_bytes(p.read_bytes()[:100])
    fresh = build_benchmark("synth_foley", train_per_domain=8, test_per_domain=4, **kw)
    with pytest.warns(UserWarning, match=r"synth_foley cache file .*synth_foley-.*\.pt is unreadable \(RuntimeError\); regenerating it"):
        got = fresh.dataset("studio", "train").inputs["audio"]
    torch.testing.assert_close(got, want)
    assert torch.load(cache[0], weights_only=True).shape[0] > 0   # rewritten whole


# ---------------------------------------------------------------- configuration and CLI

@pytest.mark.parametrize("seed, match", [("0", "RunConfig.seed"), (1.5, "RunConfig.seed"), (True, "RunConfig.seed"),
                                         (-1, "RunConfig.seed"), (2**64, "RunConfig.seed")])
def test_run_config_checks_the_seed(seed, match):
    with pytest.raises(ValueError, match=match):
        _cfg(seed=seed)


@pytest.mark.parametrize("field, value", [("target", 0), ("hparams", "lambda_d=1"), ("modalities", "a,b"),
                                          ("amp", "yes"), ("modalities", [])])
def test_run_config_checks_field_types(field, value):
    with pytest.raises((TypeError, ValueError), match=f"RunConfig.{field}"):
        _cfg(**{field: value})


@pytest.mark.parametrize("argv, culprit", [
    (["sweep", "--methods", "erm", "--targets", "d0,d9"], "unknown domain 'd9'"),
    (["sweep", "--methods", "erm,foo", "--targets", "d0"], "unknown method 'foo'"),
    (["sweep", "--methods", "erm,", "--targets", "d0"], "--methods"),
    (["sweep", "--methods", "erm", "--targets", "d0,", ], "--targets"),
    (["sweep", "--methods", "erm", "--targets", "d0", "--seeds", "0,,1"], "--seeds"),
    (["sweep", "--methods", "erm", "--targets", "d0", "--seeds", "a"], "--seeds"),
    (["train", "--target", "d0", "--seed", str(2**64)], "--seed"),
    (["train", "--target", "d0", "--device", "foo"], "device 'foo' is not a device name"),
    (["train", "--target", "d0", "--method", "mer+mer"], "applies the plugin(s) ['mer'] twice"),
    (["train", "--target", "d0", "--method", "erm+mer+mer"], "applies the plugin(s) ['mer'] twice"),
    (["train", "--target", "d0", "--method", "gmp+gmp"], "twice"),
    (["train", "--target", "d0", "--method", "base", "--hp", "lambda_d=-5"], "'lambda_d' must be a finite number in [0, inf]"),
    (["train", "--target", "d0", "--method", "gmp", "--hp", "alpha_k=-1"], "alpha_k"),
    (["train", "--target", "d0", "--method", "erm+mer", "--hp", "mer_dim=0"], "'mer_dim' must be an int"),
    (["train", "--target", "d0", "--method", "base", "--hp", "lambda_d=.nan"], "lambda_d"),
    (["sweep", "--methods", "base+gmp,gmp", "--targets", "d0", "--hp", "gmp_ablation=nope"], "GMP ablation 'nope' is not one of"),
    (["train", "--target", "d0", "--data-root", "X", "--bench", "data_root=Y"], "--data-root 'X' conflicts"),
    (["train", "--target", "d0", "--encoder-preset", "gpu"], "--encoders and --encoder-preset conflict"),
])
def test_bad_cli_input_is_refused_before_any_run_naming_the_culprit(argv, culprit, tmp_path, capsys):
    code, err = _cli(capsys, *argv, "--results", str(tmp_path), *CLI)
    assert code == 2 and culprit in err.strip().splitlines()[-1]   # one error line (after argparse's usage)
    assert "Traceback" not in err
    assert not any(tmp_path.rglob("*.json"))                   # nothing trained


def test_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = _cli(capsys, "train", "--target", "d0", "--device", "cuda", "--results", str(tmp_path), *CLI)
    assert code == 2 and err.strip() == "error: device 'cuda' requested but CUDA is not available on this machine (use cpu or auto)"


def test_encoders_missing_a_modality_names_it(tmp_path, capsys):
    only_a = json.dumps({"a": MLP_ENCODERS["a"]})
    argv = ["train", "--target", "d0", "--results", str(tmp_path), "--benchmark", "toy", "--encoders", only_a,
            "--epochs", "1", "--quiet"]
    code, err = _cli(capsys, *argv)
    assert code == 2 and "no encoder spec (a dict) for modality(ies) ['b']" in err


def test_results_pointing_at_a_file_is_refused_before_training(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    code, err = _cli(capsys, "train", "--target", "d0", "--results", str(f), *CLI)
    assert code == 2 and f"{f} is a file, not a directory" in err and f.read_text() == "keep me"
    code, err = _cli(capsys, "train", "--target", "d0", "--results", str(f / "sub"), *CLI)
    assert code == 2 and "is a file" in err


def test_simmmdg_refuses_batches_of_one_with_the_reason():
    cfg = _cfg(method="simmmdg", batch_size=1, hparams={"con_hidden": 8, "trans_hidden": 8, "con_dim": 4})
    with pytest.raises(ValueError, match=r"batch_size=1: method 'simmmdg' has BatchNorm1d layers .* batch_size >= 2"):
        train(cfg, progress=False)


def test_method_hyperparameter_ranges_accept_the_defaults():
    from mmdg.methods import METHODS, PLUGINS
    for name in list(METHODS) + [f"erm+{p}" for p in PLUGINS]:
        resolve(name)                                           # every default is in its declared range


# ---------------------------------------------------------------- records, locks, disks

def test_a_run_held_by_a_live_process_is_skipped_a_stale_lock_taken_over(tmp_path):
    cfg = _cfg(method="erm")
    lock = lock_path(tmp_path, cfg)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))   # alive
    logs = []
    assert sweep(cfg, ["erm"], ["d0"], [0], tmp_path, progress=False, log=logs.append) == []
    assert f"held by pid {os.getppid()}" in logs[0] and not record_path(tmp_path, cfg).exists()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere"}))
    sweep(cfg, ["erm"], ["d0"], [0], tmp_path, progress=False, log=logs.append)
    assert "remove the file if that run is dead" in logs[1]
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    lock.write_text(json.dumps({"pid": child.pid, "host": socket.gethostname()}))  # its holder is gone
    assert sweep(cfg, ["erm"], ["d0"], [0], tmp_path, progress=False, log=logs.append) == [record_path(tmp_path, cfg)]
    assert not lock.exists() and not lock.parent.exists()


def test_two_processes_taking_over_one_stale_lock_do_not_both_get_it(tmp_path):
    lock = tmp_path / "run.lock"
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    stale = {"pid": child.pid, "host": socket.gethostname()}
    lock.write_text(json.dumps(stale))
    mine = res.RunLock(lock)
    mine.acquire()                                              # took the stale lock over
    res.RunLock(lock)._take_over(stale)                         # a second taker that read the stale content late
    assert mine.holder() == {"pid": os.getpid(), "host": socket.gethostname()}
    with pytest.raises(res.RunLocked, match=f"held by pid {os.getpid()}"):
        res.RunLock(lock).acquire()
    mine.release()
    assert list(tmp_path.iterdir()) == []


def test_disk_full_says_no_space_left_with_the_path(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(res.os, "write", full)
    target = tmp_path / "r.json"
    with pytest.raises(OSError, match=rf"no space left on device while writing {target}"):
        res.write_record(target, {"config": {}, "epochs": [], "final": {}})
    with pytest.raises(OSError, match="no space left on device while writing .*c.pt"):
        atomic_torch_save({"x": torch.zeros(3)}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []                        # no partial or temporary file


def test_disk_full_through_the_cli_is_one_line(tmp_path, capsys, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(res.os, "write", full)
    code, err = _cli(capsys, "train", "--target", "d0", "--results", str(tmp_path), *CLI)
    assert code == 2 and "no space left on device while writing" in err and str(tmp_path) in err


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_records_checkpoints_and_caches_honour_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        cfg = _cfg(method="erm", epochs=2)
        train(cfg, checkpoint=tmp_path / "c.pt", progress=False, stop_after=1)
        rec = res.write_record(tmp_path / "r.json", {"config": {}, "epochs": [], "final": {}})
        build_benchmark("synth_foley", cache_dir=str(tmp_path / "cache"), modalities=["audio"]).dataset("studio", "test")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for p in [tmp_path / "c.pt", rec, *(tmp_path / "cache").iterdir()]:
        assert p.stat().st_mode & 0o777 == want, p


# ---------------------------------------------------------------- soak: SIGKILL at random moments

SOAK = RunConfig(target="d0", benchmark="gaussian_features", method="erm", epochs=2, batch_size=16,
                 benchmark_kwargs={"dim": 4, "train_per_domain": 48, "test_per_domain": 16},
                 encoders={m: {"name": "mlp", "hidden": 8, "out_dim": 8} for m in ("m0", "m1")})
SOAK_GRID = (["erm", "base"], ["d0", "d1", "d2"], [0, 1, 2, 3])   # 24 runs


def _soak_sweep(results_dir):
    torch.set_num_threads(1)
    import warnings
    warnings.simplefilter("ignore")
    sweep(SOAK, *SOAK_GRID, Path(results_dir), progress=False, log=lambda s: None)


def _comparable(path):
    rec = _strict_json(path)
    rec["env"].pop("date")
    for e in rec["epochs"]:
        e.pop("seconds")
    return rec


def test_soak_a_sweep_killed_at_random_moments_equals_an_uninterrupted_one(tmp_path):
    ctx = multiprocessing.get_context("fork")

    def child(results_dir, kill_after=None):
        p = ctx.Process(target=_soak_sweep, args=(str(results_dir),))
        p.start()
        p.join(kill_after)
        killed = p.is_alive()
        if killed:
            os.kill(p.pid, signal.SIGKILL)
            p.join()
        else:
            assert p.exitcode == 0
        return killed

    t0 = time.time()
    child(tmp_path / "clean")
    clean_seconds = time.time() - t0
    rng = random.Random(14)
    kills = 0
    for _ in range(60):                                         # at most; stops once 10 kills landed
        if kills >= 10:
            break
        # a kill lands within about one run's time (0.1 to 1 of the clean sweep's mean), so ten kills
        # cannot finish the 24 runs however fast or loaded the machine is
        kills += child(tmp_path / "killed", rng.uniform(0.1, 1.0) * clean_seconds / 24)
    assert kills >= 10
    child(tmp_path / "killed")                                  # and completed
    clean = sorted(p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean").rglob("*") if p.is_file())
    killed = sorted(p.relative_to(tmp_path / "killed") for p in (tmp_path / "killed").rglob("*") if p.is_file())
    assert len(clean) == 24
    assert killed == clean, sorted(set(killed) ^ set(clean))    # no checkpoint, lock or temporary file left
    for rel in clean:
        assert _comparable(tmp_path / "killed" / rel) == _comparable(tmp_path / "clean" / rel), rel
    # two identical sweeps at once on one folder share the work: no clash, no orphan, the same records
    both = [ctx.Process(target=_soak_sweep, args=(str(tmp_path / "twice"),)) for _ in range(2)]
    for p in both:
        p.start()
    for p in both:
        p.join(120)
        assert p.exitcode == 0
    twice = sorted(p.relative_to(tmp_path / "twice") for p in (tmp_path / "twice").rglob("*") if p.is_file())
    assert twice == clean, sorted(set(twice) ^ set(clean))
    for rel in clean:
        assert _comparable(tmp_path / "twice" / rel) == _comparable(tmp_path / "clean" / rel), rel


@pytest.mark.parametrize("how", ["record_of", "run_diagnosed"])
def test_a_chapter_waits_for_a_run_another_process_trains_and_reads_its_record(how, tmp_path, monkeypatch):
    from mmdg.experiments import diagnosed, sweep as sw
    get = {"record_of": sw.record_of, "run_diagnosed": diagnosed.run_diagnosed}[how]
    cfg = _cfg(method="erm", epochs=2)
    lock = lock_path(tmp_path, cfg)

    def other():  # another chapter's process: takes the run, trains it (slowly), writes its record
        try:
            torch.set_num_threads(1)  # a forked child must not enter the parent's OpenMP pool (it can hang)
            def slow(*a, **k):
                time.sleep(0.5)  # the parent is waiting by then
                return train(*a, **k)
            sw.train = diagnosed.train = slow
            get(cfg, tmp_path)
        finally:
            os._exit(0)
    child = multiprocessing.get_context("fork").Process(target=other)
    child.start()
    deadline = time.time() + 60
    while not lock.exists() and not record_path(tmp_path, cfg).exists() and time.time() < deadline:
        time.sleep(0.01)
    assert lock.exists(), "the other process never took the run"

    def no_training(*a, **k):
        raise AssertionError("trained a run another process holds")
    monkeypatch.setattr(sw, "train", no_training)
    monkeypatch.setattr(diagnosed, "_diagnosed", no_training)
    start, sleep = time.time(), time.sleep

    def patient(seconds):  # fail, not hang, if the other process never finishes
        assert time.time() - start < 120, "still waiting after 120 s for the other process's record"
        sleep(seconds)
    monkeypatch.setattr(time, "sleep", patient)
    got = get(cfg, tmp_path, poll=0.02)
    child.join(60)
    assert child.exitcode == 0
    assert got == json.loads(record_path(tmp_path, cfg).read_text())
    assert not lock.exists()
