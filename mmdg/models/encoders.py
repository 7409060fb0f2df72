"""Modality encoders: ``x (N, *in_shape) -> z (N, out_dim)``.

Every encoder is an ``nn.Module`` with an ``out_dim`` attribute; parameters with
``requires_grad=False`` (a frozen trunk) are not trained and not modulated.
Factories take the per-sample input shape first: ``ENCODERS.build(name, in_shape=..., **kw)``.

- ``mlp``: flatten + Linear-ReLU blocks (feature-level benchmarks).
- ``small3d`` / ``small2d`` / ``imu1d``: small from-scratch conv nets for CPU runs on
  video or flow (C, T, H, W), spectrograms (C, F, T) and inertial windows (C, T).
- ``r2plus1d_18`` / ``r3d_18`` / ``mc3_18`` (video, flow) and ``resnet18_audio``
  (spectrograms): torchvision ResNets with the stem adapted to ``in_shape[0]`` channels,
  returning the pooled 512-d feature.  Options: ``freeze_until`` (a stage name), ``weights``
  (a local checkpoint file, never downloaded), ``strict`` and ``channels_last``.
- ``slowfast_r101`` (video) and ``slowonly_r50`` (flow): the papers' mmaction2 backbones, in
  :mod:`.video3d`; they load mmaction2 recognizer checkpoints.

Freezing (SimMMDG, research note §1.4, freezes conv1..layer3 and trains layer4): the frozen
stages form ``self.trunk`` (``requires_grad=False``, run under ``torch.no_grad()``, always
in eval mode) and the rest form ``self.tail``, whose parameters are exactly the trainable
set.  Stated deviation: the SimMMDG script calls ``train()`` on the whole video/flow
recognizer, so BatchNorm running statistics of its frozen video and flow layers still
update; ours stay fixed (its audio trunk is kept in eval mode, as ours is).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models import video as tv_video

from ..registry import Registry
from .checkpoints import safe_load
from .split import TrunkSplit

ENCODERS = Registry("encoder")


def check_input(name: str, x: torch.Tensor, in_shape: tuple[int, ...], exact: bool = False) -> None:
    """Raise a ValueError unless ``x`` is (N, *in_shape): rank and channels always, all sizes if ``exact``."""
    ok = x.dim() == len(in_shape) + 1 and (
        tuple(x.shape[1:]) == tuple(in_shape) if exact else x.shape[1] == in_shape[0])
    if not ok:
        dims = ", ".join(str(d) if exact or i == 0 else "*" for i, d in enumerate(in_shape))
        raise ValueError(f"encoder {name!r} expects input of shape (N, {dims}) "
                         f"(built for in_shape {tuple(in_shape)}), got {tuple(x.shape)}")


def _check_rank(name: str, in_shape: tuple[int, ...], axes: str) -> None:
    if len(in_shape) != len(axes):
        raise ValueError(f"encoder {name!r} needs in_shape ({', '.join(axes)}), got {tuple(in_shape)}")


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Flatten, then Linear-ReLU blocks; for feature-level benchmarks."""

    def __init__(self, in_shape: tuple[int, ...], hidden: int = 64, out_dim: int = 64, depth: int = 2):
        super().__init__()
        self.in_shape = tuple(in_shape)
        d = int(torch.Size(in_shape).numel())
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth - 1):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers += [nn.Linear(d, out_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("mlp", x, self.in_shape, exact=True)
        return self.net(x)


# ---------------------------------------------------------------- small conv nets (CPU)

class SmallConvEncoder(nn.Module):
    """Conv-BN-ReLU blocks of stride 2 over every axis, then global average pooling.

    Widths ``(*widths, out_dim)``; the dimensionality (1D/2D/3D) follows ``len(in_shape) - 1``.
    """

    def __init__(self, name: str, in_shape: tuple[int, ...], widths: tuple[int, ...], out_dim: int,
                 kernel: int = 3):
        super().__init__()
        nd = len(in_shape) - 1
        conv, bn = {1: (nn.Conv1d, nn.BatchNorm1d), 2: (nn.Conv2d, nn.BatchNorm2d),
                    3: (nn.Conv3d, nn.BatchNorm3d)}[nd]
        blocks, c = [], in_shape[0]
        for w in (*widths, out_dim):
            blocks += [conv(c, w, kernel, stride=2, padding=kernel // 2, bias=False), bn(w), nn.ReLU(inplace=True)]
            c = w
        pool = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)[nd - 1](1)
        self.net = nn.Sequential(*blocks, pool, nn.Flatten(1))
        self.name, self.in_shape, self.out_dim = name, tuple(in_shape), out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.name, x, self.in_shape)
        return self.net(x)


@ENCODERS.register("small3d")
def small3d(in_shape: tuple[int, ...], widths: tuple[int, ...] = (16, 32, 64), out_dim: int = 128) -> nn.Module:
    """Video (3, T, H, W) or flow (2, T, H, W)."""
    _check_rank("small3d", in_shape, "CTHW")
    return SmallConvEncoder("small3d", in_shape, tuple(widths), out_dim)


@ENCODERS.register("small2d")
def small2d(in_shape: tuple[int, ...], widths: tuple[int, ...] = (16, 32, 64), out_dim: int = 128) -> nn.Module:
    """Spectrograms (C, F, T)."""
    _check_rank("small2d", in_shape, "CFT")
    return SmallConvEncoder("small2d", in_shape, tuple(widths), out_dim)


@ENCODERS.register("imu1d")
def imu1d(in_shape: tuple[int, ...], widths: tuple[int, ...] = (32, 64, 64), out_dim: int = 64,
          kernel: int = 5) -> nn.Module:
    """Inertial windows (C, T)."""
    _check_rank("imu1d", in_shape, "CT")
    return SmallConvEncoder("imu1d", in_shape, tuple(widths), out_dim, kernel)


# ---------------------------------------------------------------- checkpoint loading

WRAPPER_PREFIXES = ("module.", "backbone.", "model.", "encoder.", "audnet.", "trunk.", "tail.")
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


def _strip(key: str) -> str:
    """Drop leading wrapper prefixes (DDP ``module.``, mmaction ``backbone.``, VGGSound ``audnet.``, ...)."""
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def _listing(items: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


MMACTION_MARKERS = ("slow_path.", "fast_path.", "conv1.conv.weight")  # ResNet3d: ConvModule stems


def _redirect_mmaction(sd: dict, path: Path, who: str) -> None:
    """Raise a ValueError for an mmaction2 recognizer checkpoint given to a torchvision ResNet.

    Its ResNet3d layout (``conv1.conv``/``conv1.bn``, ``slow_path``/``fast_path`` with lateral
    connections, Bottleneck blocks) belongs to the ``slowfast_r101`` / ``slowonly_r50`` encoders.
    """
    keys = [str(k) for k in sd]
    if any(m in k for k in keys for m in MMACTION_MARKERS):
        raise ValueError(
            f"{who}: {path} is an mmaction2 recognizer checkpoint (keys like "
            f"{_listing([k for k in keys if any(m in k for m in MMACTION_MARKERS)], 3)}), which does not fit "
            "the torchvision video ResNets; load SlowFast-R101 (RGB) checkpoints into encoder 'slowfast_r101' and "
            "SlowOnly-R50 (flow) ones into 'slowonly_r50' (both in --encoder-preset paper).")


def load_backbone_weights(module: nn.Module, path: str | Path, stem_key: str, strict: bool = True,
                          who: str = "encoder") -> None:
    """Load a torchvision-style state_dict from the local file ``path`` into ``module``.

    Accepts a bare state_dict or a dict wrapping it under ``state_dict``/``model_state_dict``/
    ``model``; wrapper prefixes are stripped and classifier keys (``fc.*``) ignored.  A stem
    conv whose input channels differ from the checkpoint's gets the checkpoint's channel mean
    repeated over its channels (cross-modality init, e.g. RGB -> flow).  Raises if nothing
    matches; with ``strict`` also on any missing, unexpected or mis-shaped key (else warns).

    Loads today: torchvision video/image ResNet state_dicts, and the VGGSound ResNet-18 audio
    checkpoint (``H.pth.tar``: ``model_state_dict`` with ``module.audnet.*`` keys in the torchvision
    resnet18 layout, 1-channel ``conv1``) into ``resnet18_audio``.  Refused with
    ValueError: mmaction2 SlowFast / SlowOnly checkpoints (see :func:`_redirect_mmaction`); a pickle
    that needs more than tensors and plain containers (see :func:`.checkpoints.safe_load`).
    """
    path = Path(path)
    sd = safe_load(path, who)
    while isinstance(sd, dict) and (wrap := next((k for k in CHECKPOINT_KEYS if isinstance(sd.get(k), dict)), None)):
        sd = sd[wrap]
    if not isinstance(sd, dict):
        raise ValueError(f"{who}: {path} holds a {type(sd).__name__}, not a state_dict")
    _redirect_mmaction(sd, path, who)
    own = module.state_dict()
    matched, unexpected, mismatched = {}, [], []
    for key, t in sd.items():
        k = _strip(str(key))
        if k.startswith("fc."):
            continue
        if k not in own or not isinstance(t, torch.Tensor):
            unexpected.append(str(key))
            continue
        if k == f"{stem_key}.weight" and t.dim() == own[k].dim() and t.shape[1] != own[k].shape[1]:
            t = t.mean(1, keepdim=True).expand(-1, own[k].shape[1], *t.shape[2:])
        if t.shape != own[k].shape:
            mismatched.append(f"{key} {tuple(t.shape)} vs {tuple(own[k].shape)}")
            continue
        matched[k] = t
    if not matched:
        raise ValueError(f"{who}: no key of {path} matches the encoder; checkpoint keys: "
                         f"{_listing([str(k) for k in sd])}; expected keys like: {_listing(list(own))}")
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    problems = [f"{label}: {_listing(keys)}" for label, keys in
                (("missing (kept at init)", missing), ("unexpected (ignored)", unexpected),
                 ("shape mismatch (ignored)", mismatched)) if keys]
    if problems:
        msg = f"{who}: loaded {len(matched)} tensors from {path}; " + "; ".join(problems)
        if strict:
            raise ValueError(msg + " (pass strict=False to load the matching keys only)")
        warnings.warn(msg, stacklevel=3)
    module.load_state_dict(matched, strict=False)


# ---------------------------------------------------------------- torchvision ResNets

VIDEO_STAGES = (("stem", ("stem",)), ("layer1", ("layer1",)), ("layer2", ("layer2",)),
                ("layer3", ("layer3",)), ("layer4", ("layer4",)))
IMAGE_STAGES = (("stem", ("conv1", "bn1", "relu", "maxpool")), *VIDEO_STAGES[1:])


def _set_in_channels(net: nn.Module, stem_key: str, channels: int) -> None:
    """Replace the stem conv by one with ``channels`` inputs (same config, torchvision's init)."""
    old = net.get_submodule(stem_key)
    if old.in_channels == channels:
        return
    new = type(old)(channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                    dilation=old.dilation, groups=old.groups, bias=old.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    parent, _, child = stem_key.rpartition(".")
    setattr(net.get_submodule(parent), child, new)


class ResNetEncoder(TrunkSplit, nn.Module):
    """A torchvision ResNet split at ``freeze_until`` into a frozen ``trunk`` and a trainable ``tail``.

    ``tail`` holds the remaining stages, the global average pool and a flatten, so the output
    is the pooled feature (the torchvision ``fc`` is dropped).
    """

    def __init__(self, name: str, in_shape: tuple[int, ...], net: nn.Module, stages, stem_key: str,
                 freeze_until: str | None = None, weights: str | None = None, strict: bool = True,
                 channels_last: bool = False):
        super().__init__()
        names = [s for s, _ in stages]
        if freeze_until is not None and freeze_until not in names:
            raise ValueError(f"encoder {name!r}: unknown freeze_until {freeze_until!r}; "
                             f"valid stage names: {names} (or None)")
        _set_in_channels(net, stem_key, in_shape[0])
        children = dict(net.named_children())
        body = nn.Sequential(OrderedDict((c, children[c]) for _, cs in stages for c in cs))
        if weights is not None:
            load_backbone_weights(body, weights, stem_key, strict, who=f"encoder {name!r}")
        cut = names.index(freeze_until) + 1 if freeze_until else 0
        frozen = [c for _, cs in stages[:cut] for c in cs]
        self.trunk = nn.Sequential(OrderedDict((c, children[c]) for c in frozen))
        self.tail = nn.Sequential(OrderedDict([*((c, m) for c, m in body.named_children() if c not in frozen),
                                               ("avgpool", net.avgpool), ("flatten", nn.Flatten(1))]))
        self.trunk.requires_grad_(False)
        self.memory_format = torch.contiguous_format
        if channels_last:
            self.memory_format = torch.channels_last_3d if len(in_shape) == 4 else torch.channels_last
            self.to(memory_format=self.memory_format)
        self.name, self.in_shape, self.out_dim = name, tuple(in_shape), net.fc.in_features
        self.cached_shapes = {}
        self.train()

    def trunk_parameters(self):
        return list(self.trunk.parameters())

    def train(self, mode: bool = True) -> "ResNetEncoder":
        super().train(mode)
        self.trunk.train(False)  # frozen BatchNorm statistics never update
        return self

    def forward_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = x.contiguous(memory_format=self.memory_format)
        if len(self.trunk):
            with torch.no_grad():
                x = self.trunk(x)
        return (x,)

    def forward_tail(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.tail(parts[0].contiguous(memory_format=self.memory_format))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_cached_input(x):
            return self.tail_from_cache(x)
        check_input(self.name, x, self.in_shape)
        return self.forward_tail(self.forward_trunk(x))


def _video_resnet(arch: str, in_shape: tuple[int, ...], freeze_until: str | None = None,
                  weights: str | None = None, strict: bool = True, channels_last: bool = False) -> nn.Module:
    """torchvision ``arch`` (random init) on video (3, T, H, W) or flow (2, T, H, W); 512-d output."""
    _check_rank(arch, in_shape, "CTHW")
    net = getattr(tv_video, arch)(weights=None)
    return ResNetEncoder(arch, in_shape, net, VIDEO_STAGES, "stem.0", freeze_until, weights, strict, channels_last)


for _arch in ("r2plus1d_18", "r3d_18", "mc3_18"):
    ENCODERS.register(_arch)(partial(_video_resnet, _arch))


@ENCODERS.register("resnet18_audio")
def resnet18_audio(in_shape: tuple[int, ...], freeze_until: str | None = None, weights: str | None = None,
                   strict: bool = True, channels_last: bool = False) -> nn.Module:
    """torchvision resnet18 (random init) on spectrograms (1, F, T), as the VGGSound audio net; 512-d output."""
    _check_rank("resnet18_audio", in_shape, "CFT")
    net = resnet18(weights=None)
    return ResNetEncoder("resnet18_audio", in_shape, net, IMAGE_STAGES, "conv1", freeze_until, weights, strict,
                         channels_last)


def build_encoder(name: str, in_shape: tuple[int, ...], **kwargs) -> nn.Module:
    return ENCODERS.build(name, in_shape=tuple(in_shape), **kwargs)


from . import video3d  # noqa: E402,F401  (registers slowfast_r101 and slowonly_r50)
