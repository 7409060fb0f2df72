"""Encoders: shape contract, frozen trunk, local weight loading, input validation (CPU, tiny inputs)."""
from collections import OrderedDict

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models import video as tv_video

from mmdg.models.encoders import ENCODERS, build_encoder

VIDEO = ("r2plus1d_18", "r3d_18", "mc3_18")
SHAPES = {  # name -> (in_shape variants, out_dim)
    "r2plus1d_18": ([(3, 4, 32, 32), (2, 4, 32, 32)], 512),
    "r3d_18": ([(3, 4, 32, 32), (2, 4, 32, 32)], 512),
    "mc3_18": ([(3, 4, 32, 32), (2, 4, 32, 32)], 512),
    "resnet18_audio": ([(1, 64, 64)], 512),
    "slowfast_r101": ([(3, 8, 32, 32), (3, 4, 24, 24)], 2304),
    "slowonly_r50": ([(2, 4, 32, 32), (2, 2, 24, 24)], 2048),
    "small3d": ([(3, 8, 16, 16), (2, 8, 16, 16), (3, 1, 4, 4)], 128),
    "small2d": ([(1, 32, 16), (1, 3, 3)], 128),
    "imu1d": ([(3, 50), (6, 8)], 64),
    "mlp": ([(10,)], 64),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_every_registered_encoder_is_covered():
    assert sorted(SHAPES) == ENCODERS.names()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_contract(name):
    shapes, out_dim = SHAPES[name]
    for in_shape in shapes:
        enc = build_encoder(name, in_shape)
        z = enc(torch.randn(2, *in_shape))
        assert enc.out_dim == out_dim and z.shape == (2, out_dim)


@pytest.mark.parametrize("name", ["small3d", "small2d", "imu1d"])
def test_small_out_dim_configurable(name):
    in_shape = SHAPES[name][0][0]
    assert build_encoder(name, in_shape, out_dim=7)(torch.randn(3, *in_shape)).shape == (3, 7)


def test_channels_last_matches_default():
    x = torch.randn(2, 3, 4, 32, 32)
    ref = build_encoder("r3d_18", x.shape[1:]).eval()
    cl = build_encoder("r3d_18", x.shape[1:], channels_last=True).eval()
    cl.load_state_dict(ref.state_dict())
    assert cl.tail.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(cl(x), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,in_shape", [("r2plus1d_18", (2, 4, 32, 32)), ("resnet18_audio", (1, 64, 64))])
def test_freeze_until_layer3(name, in_shape):
    enc = build_encoder(name, in_shape, freeze_until="layer3")
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in enc.tail.named_parameters(prefix="tail")}
    assert trainable and all(n.startswith("tail.layer4.") for n in trainable)

    stats = {k: v.clone() for k, v in enc.trunk.state_dict().items()}
    enc.train()
    assert enc.training and not any(m.training for m in enc.trunk.modules())
    enc(torch.randn(2, *in_shape)).sum().backward()
    for k, v in enc.trunk.state_dict().items():
        assert torch.equal(v, stats[k]), k
    for n, p in enc.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def _by_torchvision_key(enc):
    """State dict keyed as in torchvision (the trunk./tail. split dropped)."""
    return {k.split(".", 1)[1]: v for k, v in enc.state_dict().items()}


def test_frozen_output_equals_unfrozen():
    in_shape = (1, 64, 64)
    full = build_encoder("resnet18_audio", in_shape).double().eval()
    frozen = build_encoder("resnet18_audio", in_shape, freeze_until="layer3").double()
    src = _by_torchvision_key(full)
    frozen.load_state_dict({k: src[k.split(".", 1)[1]] for k in frozen.state_dict()})
    x = torch.randn(2, *in_shape, dtype=torch.float64)
    torch.testing.assert_close(frozen.eval()(x), full(x), rtol=1e-12, atol=1e-12)


def test_unknown_freeze_until_lists_stages():
    with pytest.raises(ValueError, match="layer3"):
        build_encoder("r3d_18", (3, 4, 32, 32), freeze_until="layer9")


# ---------------------------------------------------------------- weights

def _params_equal(enc, net):
    ref, own = net.state_dict(), _by_torchvision_key(enc)
    assert own and all(torch.equal(v, ref[k]) for k, v in own.items())


@pytest.mark.parametrize("wrap", ["plain", "module", "state_dict"])
def test_load_torchvision_state_dict(tmp_path, wrap):
    net = resnet18(weights=None)
    net.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    sd = net.state_dict()
    if wrap == "module":
        sd = OrderedDict((f"module.{k}", v) for k, v in sd.items())
    elif wrap == "state_dict":
        sd = {"state_dict": sd, "epoch": 3}
    torch.save(sd, tmp_path / "w.pth")
    enc = build_encoder("resnet18_audio", (1, 64, 64), weights=str(tmp_path / "w.pth"), freeze_until="layer2")
    _params_equal(enc, net)


def test_load_encoder_checkpoint_and_video(tmp_path):
    src = build_encoder("mc3_18", (3, 4, 32, 32), freeze_until="layer3")
    torch.save({"model": src.state_dict()}, tmp_path / "enc.pt")
    dst = build_encoder("mc3_18", (3, 4, 32, 32), weights=str(tmp_path / "enc.pt"))
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(dst.eval()(x), src.eval()(x))


def test_cross_modality_stem_init(tmp_path):
    net = tv_video.r2plus1d_18(weights=None)
    torch.save(net.state_dict(), tmp_path / "rgb.pth")
    enc = build_encoder("r2plus1d_18", (2, 4, 32, 32), weights=str(tmp_path / "rgb.pth"))
    stem = enc.tail.stem[0].weight
    expected = net.stem[0].weight.mean(1, keepdim=True).expand(-1, 2, -1, -1, -1)
    assert stem.shape[1] == 2 and torch.equal(stem, expected)
    assert torch.equal(enc.tail.layer4[0].conv1[0][0].weight, net.layer4[0].conv1[0][0].weight)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_encoder("resnet18_audio", (1, 64, 64), weights=str(path))


def test_no_matching_keys_raises(tmp_path):
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no key"):
        build_encoder("resnet18_audio", (1, 64, 64), weights=str(tmp_path / "bad.pth"), strict=False)


def test_partial_checkpoint_strict_and_lenient(tmp_path):
    sd = {k: v for k, v in resnet18(weights=None).state_dict().items() if not k.startswith("layer4")}
    sd["cls_head.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "part.pth")
    with pytest.raises(ValueError, match="missing.*layer4.*unexpected.*cls_head"):
        build_encoder("resnet18_audio", (1, 64, 64), weights=str(tmp_path / "part.pth"))
    with pytest.warns(UserWarning, match="missing"):
        build_encoder("resnet18_audio", (1, 64, 64), weights=str(tmp_path / "part.pth"), strict=False)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("name,in_shape,bad", [
    ("r3d_18", (3, 4, 32, 32), (2, 2, 4, 32, 32)),      # wrong channels
    ("r3d_18", (3, 4, 32, 32), (2, 3, 32, 32)),         # wrong rank
    ("resnet18_audio", (1, 64, 64), (2, 64, 64)),
    ("small3d", (2, 8, 16, 16), (2, 3, 8, 16, 16)),
    ("imu1d", (3, 50), (2, 50, 3)),
    ("mlp", (10,), (2, 11)),
])
def test_input_validation(name, in_shape, bad):
    enc = build_encoder(name, in_shape)
    with pytest.raises(ValueError, match=rf"{name}.*expects.*got \({', '.join(map(str, bad))}\)"):
        enc(torch.randn(*bad))


def test_in_shape_rank_checked_at_build():
    with pytest.raises(ValueError, match=r"r2plus1d_18.*\(C, T, H, W\)"):
        build_encoder("r2plus1d_18", (3, 32, 32))
