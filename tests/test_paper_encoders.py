"""The `paper` preset's encoders: mmaction2 / VGGSound checkpoint loading and its errors, the
frozen-trunk feature cache, and one CLI epoch on an EPIC-Kitchens fixture with and without it."""
import json

import numpy as np
import pytest
import torch

from mmdg.__main__ import main
from mmdg.data import build_benchmark
from mmdg.data.fixtures import write_epic_fixture
from mmdg.models import resnet3d
from mmdg.models.encoders import build_encoder
from mmdg.trunk_cache import _sample

FLOW = (2, 2, 32, 32)
# Small clips for CPU (as tests/test_epic_hac.py): 4 RGB frames, 2 flow frames, 32 px crops, 1 s audio.
SMALL = {"rgb_frames": 4, "flow_frames": 2, "short_side": 48, "crop_size": 32, "rgb_eval_crop": 32,
         "flow_eval_crop": 48, "audio_samples": 16000}


class Opaque:
    """Any class: its instances pickle as a GLOBAL that weights_only loading refuses."""


def mmaction_ckpt(path, sd, **extra):
    torch.save({"state_dict": {**{f"backbone.{k}": v for k, v in sd.items()},
                               "cls_head.fc_cls.weight": torch.zeros(400, 2048)}, "meta": {"epoch": 1}, **extra}, path)
    return str(path)


@pytest.fixture(scope="module")
def flow_sd():
    torch.manual_seed(0)
    sd = resnet3d.slowonly_r50().state_dict()
    for v in sd.values():
        if v.is_floating_point():
            v.normal_()
    return sd


def test_mmaction_checkpoint_loads_every_backbone_tensor(flow_sd, tmp_path):
    enc = build_encoder("slowonly_r50", FLOW, weights=mmaction_ckpt(tmp_path / "f.pth", flow_sd))
    own = enc.net.state_dict()
    assert own.keys() == flow_sd.keys()
    for k, v in flow_sd.items():
        assert torch.equal(own[k], v), k
    trained = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("net.layer4.") for n in trained)   # frozen to layer3


def test_missing_and_unexpected_keys_are_listed(flow_sd, tmp_path):
    sd = dict(flow_sd)
    dropped = [k for k in sd if k.startswith("layer2.0.") and "num_batches" not in k][:7]
    for k in dropped:
        del sd[k]
    sd["layer5.0.conv1.conv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \(7\): layer2\.0\.conv1\.conv\.weight.*\(\+2 more\)"
                                         r".*unexpected keys \(1\): layer5\.0\.conv1\.conv\.weight"):
        build_encoder("slowonly_r50", FLOW, weights=mmaction_ckpt(tmp_path / "f.pth", sd))


def test_wrong_shapes_are_listed(flow_sd, tmp_path):
    sd = {**flow_sd, "conv1.conv.weight": torch.zeros(64, 3, 1, 7, 7)}    # an RGB stem for the flow net
    with pytest.raises(ValueError, match=r"wrong shapes \(1\): conv1\.conv\.weight \(64, 3, 1, 7, 7\) "
                                         r"\(expected \(64, 2, 1, 7, 7\)\)"):
        build_encoder("slowonly_r50", FLOW, weights=mmaction_ckpt(tmp_path / "f.pth", sd))
    # a SlowFast checkpoint is not a SlowOnly one
    with pytest.raises(ValueError, match=r"missing keys.*unexpected keys \(\d+\): slow_path\."):
        build_encoder("slowonly_r50", FLOW, weights=mmaction_ckpt(
            tmp_path / "sf.pth", {f"slow_path.{k}": v for k, v in flow_sd.items()}))


def test_files_that_are_not_mmaction2_or_vggsound_checkpoints(flow_sd, tmp_path):
    vgg = tmp_path / "vggsound.pth.tar"
    torch.save({"model_state_dict": {"module.audnet.conv1.weight": torch.zeros(64, 1, 7, 7)}}, vgg)
    with pytest.raises(ValueError, match=r"vggsound\.pth\.tar is not an mmaction2 checkpoint: .*"
                                         r"found top-level entries model_state_dict"):
        build_encoder("slowonly_r50", FLOW, weights=str(vgg))
    with pytest.raises(ValueError, match=r"is an mmaction2 recognizer checkpoint .* 'slowonly_r50'"):
        build_encoder("resnet18_audio", (1, 64, 64), weights=mmaction_ckpt(tmp_path / "f.pth", flow_sd))
    junk = tmp_path / "notes.pth"
    junk.write_bytes(b"this is not a checkpoint\n" * 10)
    for name, shape in (("slowonly_r50", FLOW), ("resnet18_audio", (1, 64, 64))):
        with pytest.raises(ValueError, match=r"notes\.pth is not a PyTorch checkpoint"):
            build_encoder(name, shape, weights=str(junk))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_encoder("slowonly_r50", FLOW, weights=str(tmp_path / "absent.pth"))


def test_pickles_needing_unsafe_loading_are_refused(flow_sd, tmp_path):
    path = mmaction_ckpt(tmp_path / "f.pth", flow_sd, message_hub=Opaque())
    with pytest.raises(ValueError, match=r"refusing to load .*f\.pth.*Opaque.*weights_only=False.*runs code"):
        build_encoder("slowonly_r50", FLOW, weights=path)
    torch.save({"model_state_dict": {}, "args": Opaque()}, tmp_path / "h.pth.tar")
    with pytest.raises(ValueError, match=r"refusing to load .*h\.pth\.tar"):
        build_encoder("resnet18_audio", (1, 64, 64), weights=str(tmp_path / "h.pth.tar"))


# ---------------------------------------------------------------- trunk cache and the CLI

@pytest.fixture(scope="module")
def epic_root(tmp_path_factory):
    return write_epic_fixture(tmp_path_factory.mktemp("epic"), clips=3, frame_size=(64, 48), segment_frames=(20, 30))


def cli(root, results, *extra):
    flags = [f for k, v in SMALL.items() for f in ("--bench", f"{k}={v}")]
    return main(["train", "--benchmark", "epic_kitchens", "--data-root", str(root), "--target", "D1",
                 "--encoder-preset", "paper", "--epochs", "1", "--batch-size", "2", "--results", str(results),
                 "--quiet", *flags, *extra])


def test_cli_trains_the_paper_encoders_with_and_without_the_trunk_cache(epic_root, tmp_path):
    torch.set_num_threads(1)
    records = {}
    for k in (0, 2):
        assert cli(epic_root, tmp_path / f"r{k}", "--cache-trunk", str(k)) == 0
        (path,) = (tmp_path / f"r{k}" / "epic_kitchens" / "erm" / "D1").glob("*.json")
        records[k] = json.loads(path.read_text())
        assert records[k]["complete"] and np.isfinite(records[k]["epochs"][0]["train"]["loss_ce"])
        assert records[k]["epochs"][0]["test"]["n"] == 3 and records[k]["epochs"][0]["val"]["n"] == 6
    assert records[0]["config"]["cache_trunk"] == 0 and records[2]["config"]["cache_trunk"] == 2
    assert records[0]["run_id"] != records[2]["run_id"]
    assert not list((tmp_path / "r0").rglob("meta.json"))           # never on unless asked

    # the cache: K views per train clip, per domain and split, with the draws recorded
    (key,) = (tmp_path / "r2").rglob("trunk_cache/*")
    parts = sorted(p.parent.relative_to(key).as_posix() for p in key.rglob("meta.json"))
    assert parts == ["D1/target", "D2/test", "D2/train", "D3/test", "D3/train"]
    train = key / "D2" / "train"
    flow = np.load(train / "flow.npy", mmap_mode="r")
    assert flow.shape[:2] == (2, 3) and flow.dtype == np.float16
    views = [json.loads(line) for line in (train / "views.jsonl").read_text().splitlines()]
    assert sorted((v["clip"], v["view"]) for v in views) == [(i, k) for i in range(3) for k in range(2)]
    assert all(len(v["draws"]) >= 3 for v in views)                 # offsets, crop boxes, flips per view
    assert not np.array_equal(flow[0], flow[1])                      # independent augmentations

    # a recorded seed replays its view: the trunk on it gives the cached row (float16 rounding)
    from mmdg.train import RunConfig, build_run
    cfg = RunConfig(target="D1", benchmark="epic_kitchens",
                    benchmark_kwargs={"data_root": str(epic_root), **SMALL}, encoder_preset="paper")
    bench, _, method = build_run(cfg)
    enc = method.model.encoders["flow"]
    v = next(v for v in views if v["clip"] == 1 and v["view"] == 1)
    sample, draws = _sample(bench.dataset("D2", "train"), 1, v["seed"], train=True)
    assert draws == v["draws"]
    with torch.no_grad():
        row = torch.cat([p.flatten() for p in enc.forward_trunk(sample["inputs"]["flow"][None])])
    torch.testing.assert_close(torch.from_numpy(flow[1, 1].astype(np.float32)), row, rtol=2e-3, atol=2e-3)


def test_cache_refuses_encoders_without_a_frozen_trunk(epic_root, tmp_path, capsys):
    flags = [f for k, v in SMALL.items() for f in ("--bench", f"{k}={v}")]
    argv = ["train", "--benchmark", "epic_kitchens", "--data-root", str(epic_root), "--target", "D1",
            "--encoder-preset", "cpu", "--epochs", "1", "--results", str(tmp_path), "--quiet", "--cache-trunk", "2",
            *flags]
    assert main(argv) == 2
    assert "cache_trunk needs every encoder to have a frozen trunk" in capsys.readouterr().err


def test_checkpoint_flag_reaches_the_encoders(epic_root, tmp_path, capsys):
    assert cli(epic_root, tmp_path, "--checkpoint", "flow=" + str(tmp_path / "none.pth")) == 2
    assert "none.pth" in capsys.readouterr().err
    assert cli(epic_root, tmp_path, "--checkpoint", "phone=x.pth") == 2
    assert "checkpoints given for modalities ['phone']" in capsys.readouterr().err


def test_frozen_trunk_keeps_statistics_and_only_layer4_learns():
    enc = build_encoder("slowfast_r101", (3, 8, 32, 32))
    enc.train()
    stem_bn, tail_bn = enc.net.slow_path.conv1.bn, enc.net.fast_path.layer4[0].conv1.bn
    before = stem_bn.running_mean.clone(), tail_bn.running_mean.clone()
    enc(torch.randn(2, 3, 8, 32, 32)).square().sum().backward()
    assert torch.equal(stem_bn.running_mean, before[0]) and not torch.equal(tail_bn.running_mean, before[1])
    with_grad = {n.split(".")[1] + "." + n.split(".")[2] for n, p in enc.named_parameters() if p.grad is not None}
    assert with_grad == {"slow_path.layer4", "fast_path.layer4"}
    assert all(not p.requires_grad for n, p in enc.named_parameters() if "layer4" not in n)


def test_slowfast_needs_four_frames():
    with pytest.raises(ValueError, match="at least 4 frames"):
        build_encoder("slowfast_r101", (3, 2, 32, 32))
