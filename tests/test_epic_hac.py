"""EPIC-Kitchens and HAC loaders on generated fixtures in the real layout, down to the CLI."""
import json
import math
import shutil

import numpy as np
import pytest
import soundfile
import torch

from mmdg.__main__ import main
from mmdg.data import build_benchmark, make_split, media
from mmdg.data import video_datasets as vd
from mmdg.data.epic import FRAME
from mmdg.data.fixtures import write_epic_fixture, write_hac_fixture
from mmdg.data.media import MediaError

# Small clips for CPU: 4 RGB frames every 2, 2 flow frames every 4, 48 px short side, 1 s of audio.
SMALL = {"rgb_frames": 4, "flow_frames": 2, "short_side": 48, "crop_size": 32, "rgb_eval_crop": 32,
         "flow_eval_crop": 48, "audio_samples": 16000}


@pytest.fixture(scope="module")
def epic_root(tmp_path_factory):
    return write_epic_fixture(tmp_path_factory.mktemp("epic"), clips=3, frame_size=(64, 48), segment_frames=(20, 30))


@pytest.fixture(scope="module")
def hac_root(tmp_path_factory):
    return write_hac_fixture(tmp_path_factory.mktemp("hac"), clips=2, frame_size=(64, 48), frames=30)


def copy_of(root, tmp_path):
    return shutil.copytree(root, tmp_path / "copy")


# ---------------------------------------------------------------- sampling and transforms

def test_eval_clip_is_centred_and_loops_when_short():
    # span 32 * 2 = 64 in 100 frames: offset int((100 - 64 + 1) / 2) = 18
    assert vd.sample_indices(100, 32, 2, train=False).tolist() == list(range(18, 18 + 64, 2))
    # 40 frames < 63: offset 0, looped modulo 40
    assert vd.sample_indices(40, 32, 2, train=False).tolist() == [(2 * k) % 40 for k in range(32)]


def test_train_clip_offsets_cover_exactly_the_valid_range():
    rng = np.random.default_rng(0)
    starts = {int(vd.sample_indices(100, 8, 4, True, rng)[0]) for _ in range(3000)}
    assert starts == set(range(0, 100 - 32 + 1))
    assert vd.sample_indices(20, 8, 4, True, rng).tolist() == [(4 * k) % 20 for k in range(8)]


def test_random_resized_box_bounds_and_fallback():
    rng = np.random.default_rng(1)
    for _ in range(200):
        x0, y0, x1, y1 = vd.random_resized_box(256, 456, rng)
        assert 0 <= x0 < x1 <= 456 and 0 <= y0 < y1 <= 256
        assert 0.08 * 256 * 456 * 0.9 <= (x1 - x0) * (y1 - y0) <= 256 * 456
        assert 3 / 4 * 0.9 <= (x1 - x0) / (y1 - y0) <= 4 / 3 * 1.1
    # no attempt can fit (area > image): the centred square of the short side
    assert vd.random_resized_box(256, 456, rng, area=(2.0, 3.0)) == (100, 0, 356, 256)


def test_eval_transform_centre_crops_and_normalises():
    s = vd.ClipSettings(short_side=8, crop_size=4, rgb_eval_crop=4, flow_eval_crop=6)
    frames = torch.randint(0, 256, (3, 3, 8, 10), dtype=torch.uint8)
    out = vd.FrameTransform(s, flow=False)(frames, train=False)
    mean, std = torch.tensor(vd.RGB_MEAN), torch.tensor(vd.RGB_STD)
    expected = (frames[:, :, 2:6, 3:7].float() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert out.shape == (3, 3, 4, 4)
    torch.testing.assert_close(out, expected.permute(1, 0, 2, 3))
    flow = vd.FrameTransform(s, flow=True)(frames[:, :2], train=False)
    torch.testing.assert_close(flow, ((frames[:, :2, 1:7, 2:8].float() - 128) / 128).permute(1, 0, 2, 3))


class FlipRng:
    """Makes every RandomResizedCrop try fail (whole square image) and always flips."""

    def uniform(self, low, high, size=None):
        return np.full(size, high)

    def integers(self, n):
        return 0

    def random(self):
        return 0.0


def test_train_flip_inverts_flow_u_only():
    s = vd.ClipSettings(short_side=8, crop_size=8, rgb_eval_crop=8, flow_eval_crop=8)
    frames = torch.randint(0, 256, (2, 2, 8, 8), dtype=torch.uint8)
    out = vd.FrameTransform(s, flow=True)(frames, train=True, rng=FlipRng())
    u = 255 - frames[:, 0].flip(-1).float()
    v = frames[:, 1].flip(-1).float()
    torch.testing.assert_close(out, (torch.stack([u, v]) - 128) / 128)


# ---------------------------------------------------------------- audio

def naive_psd(x, rate, nperseg=512, step=159):
    """Periodic Tukey(0.25) window, mean removal, explicit DFT sums, one-sided density scaling."""
    n = np.arange(nperseg)
    w = np.ones(nperseg)
    m, a = nperseg + 1, 0.25
    width = int(a * (m - 1) / 2)
    for k in range(nperseg):
        if k <= width:
            w[k] = 0.5 * (1 - np.cos(2 * np.pi * k / (a * (m - 1))))
        elif k >= m - 1 - width:
            w[k] = 0.5 * (1 - np.cos(2 * np.pi * (m - 1 - k) / (a * (m - 1))))
    freqs = np.arange(nperseg // 2 + 1)
    basis = np.exp(-2j * np.pi * np.outer(freqs, n) / nperseg)
    cols = []
    for start in range(0, len(x) - nperseg + 1, step):
        seg = x[start:start + nperseg]
        p = np.abs(basis @ ((seg - seg.mean()) * w)) ** 2 / (rate * (w ** 2).sum())
        p[1:-1] *= 2
        cols.append(p)
    return np.stack(cols, axis=1)


def test_power_spectrogram_matches_the_definition():
    x = np.random.default_rng(0).uniform(-1, 1, 512 + 159 * 6 + 50)
    got = media.power_spectrogram(x, 16000)
    assert got.shape == (257, 7)
    np.testing.assert_allclose(got, naive_psd(x, 16000), rtol=1e-9, atol=1e-18)


def test_power_spectrogram_matches_scipy_when_installed():
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(1).uniform(-1, 1, 160_000)
    _, _, ref = signal.spectrogram(x, 16000, nperseg=512, noverlap=353)
    assert ref.shape == (257, 1004)
    np.testing.assert_allclose(media.power_spectrogram(x, 16000), ref, rtol=1e-9, atol=1e-20)


def test_segment_tiling_and_silence():
    assert media.fit_length(np.array([0.1, 0.2, 0.3]), 7).tolist() == [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1]
    assert media.fit_length(np.array([]), 4).tolist() == [0, 0, 0, 0]
    assert media.fit_length(np.array([2.0, -3.0, 0.5, 0.0]), 2).tolist() == [1.0, -1.0]
    x = np.arange(16000 * 3) / 16000.0
    assert media.cut_segment(x, 16000, 0.5, 1.25).tolist() == x[8000:20000].tolist()


def test_reference_spectrogram_is_standardised_257_by_1004():
    x = np.random.default_rng(2).normal(0, 0.1, 160_000)
    spec = media.reference_spectrogram(x, 16000)
    assert spec.shape == (257, 1004)
    assert abs(spec.mean()) < 1e-9 and spec.std() == pytest.approx(1.0, abs=1e-6)


def test_train_augmentation_noise_and_frequency_band():
    spec = np.ones((257, 20))
    starts = set()
    rng = np.random.default_rng(0)
    for _ in range(3000):
        out = media.augment_spectrogram(spec, rng)
        zero = np.flatnonzero((out == 0).all(axis=1))
        assert len(zero) == 9 and zero[-1] - zero[0] == 8
        starts.add(int(zero[0]))
        rest = np.delete(out, zero, axis=0)
        assert np.abs(rest - 1).max() <= 0.05 and np.abs(rest - 1).max() > 0.04
    assert min(starts) == 0 and max(starts) == 256 - 9 - 1


# ---------------------------------------------------------------- EPIC

def epic(root, **kw):
    return build_benchmark("epic_kitchens", data_root=str(root), **{**SMALL, **kw})


def test_epic_eval_sample_reads_the_right_frames_and_audio(epic_root, monkeypatch):
    bench = epic(epic_root)
    ds = bench.dataset("D2", "test")
    seg = ds.segments[1]
    read = []
    real = media.read_jpeg_array
    monkeypatch.setattr(media, "read_jpeg_array", lambda p, gray=False: read.append(str(p)) or real(p, gray))
    sample = ds[1]
    rgb_dir = epic_root / "rgb" / "test" / "D2" / seg.video_id
    total = seg.stop_frame - seg.start_frame                     # 20..30 frames, clip spans 8
    first = int((total - 8 + 1) / 2)
    want_rgb = [str(rgb_dir / FRAME.format(seg.start_frame + first + 2 * k)) for k in range(4)]
    flow_total = total // 2
    flow_first = int((flow_total - 8 + 1) / 2) if flow_total > 7 else 0
    fstart = math.ceil(seg.start_frame / 2)
    flow_dir = epic_root / "flow" / "test" / "D2" / seg.video_id
    want_flow = [str(flow_dir / c / FRAME.format(fstart + (flow_first + 4 * k) % flow_total))
                 for c in ("u", "v") for k in range(2)]
    assert read == list(dict.fromkeys(want_rgb)) + list(dict.fromkeys(want_flow[:2])) + list(
        dict.fromkeys(want_flow[2:]))                             # each distinct frame decoded once
    assert sample["label"] == seg.label
    # audio: the whole wav cut at the timestamps, first 16000 samples (tiled), reference spectrogram
    wave, rate = soundfile.read(str(rgb_dir) + ".wav", dtype="float64")
    a, b = round(seg.start_seconds * rate), round(seg.stop_seconds * rate)
    piece = wave[a:b]
    piece = np.tile(piece, 10)[:16000] if len(piece) < 16000 else piece[:16000]
    want = media.reference_spectrogram(np.clip(piece, -1, 1), rate).astype(np.float32)
    np.testing.assert_allclose(sample["inputs"]["audio"][0].numpy(), want, rtol=1e-5, atol=1e-5)
    assert sample["inputs"]["video"].shape == (3, 4, 32, 32)
    assert sample["inputs"]["flow"].shape == (2, 2, 48, 48)   # evaluation flow crop is wider, as the reference


def test_epic_reference_sizes_at_real_resolution(tmp_path):
    root = write_epic_fixture(tmp_path, domains=("D1",), clips=1, segment_frames=(40, 40))
    from PIL import Image
    assert Image.open(next((root / "rgb" / "train" / "D1").rglob("*.jpg"))).size == (456, 256)
    bench = build_benchmark("epic_kitchens", data_root=str(root))
    x = bench.dataset("D1", "train")[0]["inputs"]
    assert {m: tuple(t.shape) for m, t in x.items()} == {
        "video": (3, 32, 224, 224), "flow": (2, 8, 224, 224), "audio": (1, 257, 1004)}
    assert bench.input_shapes() == {m: tuple(t.shape) for m, t in x.items()}


def test_log_mel_front_end(epic_root):
    bench = epic(epic_root, audio_frontend="log_mel", n_mels=40, modalities="audio")
    x = bench.dataset("D1", "test")[0]["inputs"]
    assert list(x) == ["audio"] and x["audio"].shape == (1, 40, 16000 // 160 + 1) == bench.input_shapes()["audio"]
    assert abs(float(x["audio"].mean())) < 1e-4


def test_missing_frame_names_sample_and_file_or_is_skipped(epic_root, tmp_path):
    root = copy_of(epic_root, tmp_path)
    bench = epic(root)
    seg = bench.segments("D1", "train")[0]
    victim = root / "rgb" / "train" / "D1" / seg.video_id / FRAME.format(seg.start_frame + 3)
    victim.unlink()
    with pytest.raises(MediaError, match=rf"sample D1/train uid {seg.uid} .*{victim.name}: frame file not found"):
        epic(root).dataset("D1", "train")
    bench = epic(root, skip_bad_media=True)
    assert len(bench.dataset("D1", "train")) == 2
    report = bench.skipped_samples()
    assert report["dropped_at_build"] == 1 and report["dropped"][0]["file"] == str(victim)


def test_corrupt_frame_at_read_time(epic_root, tmp_path):
    root = copy_of(epic_root, tmp_path)
    seg = epic(root).segments("D1", "test")[0]
    folder = root / "rgb" / "test" / "D1" / seg.video_id
    for f in range(seg.start_frame, seg.stop_frame):
        (folder / FRAME.format(f)).write_bytes(b"not a jpeg")
    ds = epic(root).dataset("D1", "test")
    with pytest.raises(MediaError, match=rf"sample D1/test uid {seg.uid} .*not a decodable JPEG"):
        ds[0]
    bench = epic(root, skip_bad_media=True)
    ds = bench.dataset("D1", "test")
    assert ds[0]["label"] == ds.segments[1].label
    assert bench.skipped_samples()["read_failures"] == 1


def test_no_data_root_is_a_clear_error():
    bench = build_benchmark("epic_kitchens")
    assert len(bench.segments("D1", "train")) == 1543         # the packaged splits need no media
    with pytest.raises(ValueError, match="needs data_root"):
        bench.dataset("D1", "train")


# ---------------------------------------------------------------- HAC

def hac(root, **kw):
    return build_benchmark("hac", data_root=str(root), **{**SMALL, **kw})


def test_hac_target_is_every_clip_of_the_domain(hac_root):
    bench = hac(hac_root)
    split = make_split(bench, "animal")
    assert len(split.train) == 4 and len(split.val) == 4
    target = bench.target_dataset("animal")
    assert [c.file for c in target.clips] == ([c.file for c in bench.clips("animal", "test")]
                                              + [c.file for c in bench.clips("animal", "train")])
    assert len(split.test) == 4 and not target.train


def test_hac_eval_sample_frames_and_audio_window(hac_root):
    bench = hac(hac_root)
    ds = bench.dataset("cartoon", "test")
    clip = ds.clips[0]
    sample = ds[0]
    # 30 frames: offsets over 29, span 8, centred at int(22 / 2) = 11 -> 11, 13, 15, 17; decoded k - 1
    video = media.read_video(hac_root / "cartoon" / "videos" / clip.file)
    want = vd.FrameTransform(bench.settings, flow=False)(video[[10, 12, 14, 16]], train=False)
    torch.testing.assert_close(sample["inputs"]["video"], want)
    wave, rate = soundfile.read(str(hac_root / "cartoon" / "audio" / f"{clip.stem}.wav"), dtype="float64")
    piece = wave[round(11 / 24 * rate):round(17 / 24 * rate)]
    piece = np.tile(piece, 10)[:16000]
    piece = np.tile(piece, 10)[:16000] if len(piece) < 16000 else piece
    want_audio = media.reference_spectrogram(np.clip(piece, -1, 1), rate).astype(np.float32)
    np.testing.assert_allclose(sample["inputs"]["audio"][0].numpy(), want_audio, rtol=1e-5, atol=1e-5)
    # flow: RGB-coded grey back to grey; offsets over 29 frames, span 8 -> 11, 15; decoded 10, 14
    fx = media.to_gray(media.read_video(hac_root / "cartoon" / "flow" / f"{clip.stem}_flow_x.mp4"))
    fy = media.to_gray(media.read_video(hac_root / "cartoon" / "flow" / f"{clip.stem}_flow_y.mp4"))
    want_flow = vd.FrameTransform(bench.settings, flow=True)(torch.cat([fx[[10, 14]], fy[[10, 14]]], 1), False)
    torch.testing.assert_close(sample["inputs"]["flow"], want_flow)


def test_hac_missing_flow_is_named(hac_root, tmp_path):
    root = copy_of(hac_root, tmp_path)
    clip = hac(root).clips("human", "train")[1]
    (root / "human" / "flow" / f"{clip.stem}_flow_y.mp4").unlink()
    with pytest.raises(MediaError, match=rf"sample human/train {clip.file}: .*_flow_y.mp4: file not found"):
        hac(root).dataset("human", "train")
    assert len(hac(root, modalities="video,audio").dataset("human", "train")) == 2
    bench = hac(root, skip_bad_media=True)
    assert len(bench.dataset("human", "train")) == 1 and bench.skipped_samples()["dropped_at_build"] == 1


def test_corrupt_mp4_names_the_sample(hac_root, tmp_path):
    root = copy_of(hac_root, tmp_path)
    clip = hac(root).clips("human", "test")[0]
    (root / "human" / "videos" / clip.file).write_bytes(b"\x00" * 100)
    with pytest.raises(MediaError, match=rf"sample human/test {clip.file}: .*cannot decode video"):
        hac(root).dataset("human", "test")[0]


# ---------------------------------------------------------------- one epoch of GMP through the CLI

def bench_flags():
    return [f for k, v in SMALL.items() for f in ("--bench", f"{k}={v}")]


@pytest.mark.parametrize("benchmark,target,fixture", [("epic_kitchens", "D1", "epic_root"),
                                                      ("hac", "cartoon", "hac_root")])
def test_cli_trains_one_epoch_of_gmp(benchmark, target, fixture, request, tmp_path, capsys):
    root = request.getfixturevalue(fixture)
    argv = ["train", "--benchmark", benchmark, "--data-root", str(root), "--method", "gmp", "--target", target,
            "--epochs", "1", "--batch-size", "2", "--encoder-preset", "cpu", "--results", str(tmp_path),
            "--quiet", *bench_flags()]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    (path,) = (tmp_path / benchmark / "gmp" / target).glob("*.json")
    record = json.loads(path.read_text())
    assert record["complete"] and record["config"]["benchmark_kwargs"]["data_root"] == str(root)
    assert record["skipped_samples"]["dropped_at_build"] == 0 and record["skipped_samples"]["read_failures"] == 0
    (epoch,) = record["epochs"]
    target_size = 3 if benchmark == "epic_kitchens" else 4   # HAC: the target's test + train lists
    assert epoch["test"]["n"] == target_size and epoch["val"]["n"] == 2 * (3 if benchmark == "epic_kitchens" else 2)
    assert math.isfinite(epoch["train"]["loss_ce"])


# ---------------------------------------------------------------- reference checkpoints

def test_vggsound_resnet18_checkpoint_layout_loads_into_resnet18_audio(tmp_path):
    from torchvision.models import resnet18
    from mmdg.models.encoders import build_encoder
    torch.manual_seed(0)
    net = resnet18(num_classes=309)                      # the VGGSound net: torchvision layout, 1-channel conv1
    net.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    for t in net.state_dict().values():
        if t.is_floating_point():
            t.normal_()
    sd = {f"module.audnet.{k}": v for k, v in net.state_dict().items()}   # DataParallel(AVENet) keys
    torch.save({"model_state_dict": sd, "epoch": 3}, tmp_path / "vggsound_avgpool.pth.tar")
    enc = build_encoder("resnet18_audio", (1, 64, 64), weights=str(tmp_path / "vggsound_avgpool.pth.tar"),
                        freeze_until="layer3")
    own = {**{k: v for k, v in enc.trunk.state_dict().items()}, **enc.tail.state_dict()}
    loaded = [k for k in net.state_dict() if not k.startswith("fc.")]
    for k in loaded:
        torch.testing.assert_close(own[k], net.state_dict()[k], msg=k)
    assert len(loaded) == len(net.state_dict()) - 2     # everything but fc.weight / fc.bias


def test_mmaction_slowfast_checkpoint_is_redirected_from_torchvision_encoders(tmp_path):
    from mmdg.models.encoders import build_encoder
    sd = {"backbone.slow_path.conv1.conv.weight": torch.zeros(64, 3, 1, 7, 7),
          "backbone.fast_path.conv1.conv.weight": torch.zeros(8, 3, 5, 7, 7),
          "cls_head.fc_cls.weight": torch.zeros(400, 2304)}
    torch.save({"state_dict": sd, "meta": {"epoch": 256}}, tmp_path / "slowfast_r101.pth")
    with pytest.raises(ValueError, match="mmaction2 recognizer checkpoint .* 'slowfast_r101'"):
        build_encoder("r2plus1d_18", (3, 4, 32, 32), weights=str(tmp_path / "slowfast_r101.pth"))


def test_mmaction_slowonly_flow_checkpoint_is_redirected(tmp_path):
    from mmdg.models.encoders import build_encoder
    torch.save({"state_dict": {"backbone.conv1.conv.weight": torch.zeros(64, 2, 1, 7, 7),
                               "backbone.layer1.0.conv1.conv.weight": torch.zeros(64, 64, 3, 1, 1)}},
               tmp_path / "slowonly_r50_flow.pth")
    with pytest.raises(ValueError, match="SlowOnly-R50 .* 'slowonly_r50'"):
        build_encoder("r3d_18", (2, 4, 32, 32), weights=str(tmp_path / "slowonly_r50_flow.pth"))


@pytest.mark.parametrize("name", ["epic_kitchens", "hac"])
def test_clip_settings_are_one_dataclass_for_both_benchmarks(name):
    bench = build_benchmark(name, short_side=8, crop_size=4, rgb_eval_crop=4, flow_eval_crop=8, mel_hop=80)
    assert bench.settings == vd.ClipSettings(short_side=8, crop_size=4, rgb_eval_crop=4, flow_eval_crop=8, mel_hop=80)
    assert build_benchmark(name).settings == vd.ClipSettings()                     # the reference's defaults
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['rgb_frame'\]; valid parameters: .*'rgb_frames'"):
        build_benchmark(name, rgb_frame=3)
    with pytest.raises(ValueError, match="clip setting crop_size"):
        build_benchmark(name, crop_size=0)
