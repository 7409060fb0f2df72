"""mmaction2's 3D ResNets in plain PyTorch: SlowFast-R101 (RGB) and SlowOnly-R50 (flow), as SimMMDG uses them.

Written from the architecture (Feichtenhofer et al., "SlowFast Networks", ICCV 2019, and
mmaction2's configuration of it); module names follow mmaction2's ``ResNet3d`` /
``ResNet3dPathway`` / ``ResNet3dSlowFast`` so that the state dict of an mmaction2 backbone
(``slow_path.layer1.0.conv1.conv.weight``, ``...bn.running_var``, ``slow_path.layer2_lateral.conv.weight``,
...) loads into these modules key for key.  ``tests/test_resnet3d_parity.py`` checks the outputs
against mmaction2 1.2.0 itself in float64.

Pieces:

- :class:`ConvBN`: a bias-free Conv3d, optionally followed by BatchNorm3d and ReLU (mmcv's
  ``ConvModule`` layout: children ``conv`` and ``bn``).
- :class:`Bottleneck3d`: 1x1x1 (or 3x1x1 when "inflated") -> 1x3x3 (spatial stride) -> 1x1x1 with
  4x expansion, a projection shortcut when the shape changes, ReLU after the sum.
- :class:`Pathway`: stem conv (``conv1``) + 1x3x3 max pool + four stages ``layer1..layer4``;
  with ``lateral`` it owns the fast-to-slow connections ``conv1_lateral`` and
  ``layer{1,2,3}_lateral`` (time-strided (5,1,1) convs whose outputs are concatenated to the slow
  pathway's channels), and its stages take the extra channels.
- :class:`SlowFast`: the fast pathway sees every ``resample_rate // speed_ratio``-th frame, the slow
  one every ``resample_rate``-th; returns ``(slow, fast)`` feature maps.

Every module takes ``(N, C, T, H, W)``.  The split used for freezing is :meth:`forward_trunk`
(stem..layer3, with the laterals) / :meth:`forward_tail` (layer4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
EXPANSION = 4


class ConvBN(nn.Module):
    """Conv3d without bias, then (optionally) BatchNorm3d and ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(cout) if norm else None
        self.act = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x) if self.act is not None else x


class Bottleneck3d(nn.Module):
    """ResNet bottleneck; ``inflate`` gives the first conv a temporal extent of 3."""

    def __init__(self, cin: int, planes: int, spatial_stride: int = 1, inflate: bool = False):
        super().__init__()
        k1, p1 = ((3, 1, 1), (1, 0, 0)) if inflate else (1, 0)
        self.conv1 = ConvBN(cin, planes, k1, padding=p1)
        self.conv2 = ConvBN(planes, planes, (1, 3, 3), stride=(1, spatial_stride, spatial_stride), padding=(0, 1, 1))
        self.conv3 = ConvBN(planes, planes * EXPANSION, 1, act=False)
        self.downsample = None
        if spatial_stride != 1 or cin != planes * EXPANSION:
            self.downsample = ConvBN(cin, planes * EXPANSION, 1, stride=(1, spatial_stride, spatial_stride), act=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class Pathway(nn.Module):
    """One ResNet3d pathway (a SlowOnly network on its own).

    ``inflate``: per stage, whether its blocks' first conv is (3,1,1).  ``lateral``: take the fast
    pathway's features after the stem and layers 1-3 through ``(5,1,1)`` convs of temporal stride
    ``speed_ratio`` with ``2 * C_fast`` outputs, where ``C_fast = C_slow // channel_ratio``.
    ``with_pool2``: a (2,1,1) temporal max pool after layer1 (mmaction2's ``pool2``).
    """

    def __init__(self, depth: int, in_channels: int = 3, base_channels: int = 64, conv1_kernel=(1, 7, 7),
                 inflate=(0, 0, 1, 1), lateral: bool = False, speed_ratio: int = 4, channel_ratio: int = 8,
                 fusion_kernel: int = 5, with_pool2: bool = False):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"Pathway depth {depth}; supported: {sorted(DEPTHS)}")
        self.lateral, self.with_pool2 = lateral, with_pool2
        pad = tuple((k - 1) // 2 for k in conv1_kernel)
        self.conv1 = ConvBN(in_channels, base_channels, conv1_kernel, stride=(1, 2, 2), padding=pad)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))

        def fuse(c_slow: int) -> ConvBN:  # fast features (c_slow // ratio channels) -> 2x that, T / speed
            c_fast = c_slow // channel_ratio
            return ConvBN(c_fast, 2 * c_fast, (fusion_kernel, 1, 1), stride=(speed_ratio, 1, 1),
                          padding=((fusion_kernel - 1) // 2, 0, 0), norm=False, act=False)

        if lateral:
            self.conv1_lateral = fuse(base_channels)
        cin = base_channels + (2 * base_channels // channel_ratio if lateral else 0)
        self.stage_names = []
        for i, blocks in enumerate(DEPTHS[depth]):
            planes = base_channels * 2 ** i
            stride = 1 if i == 0 else 2
            layer = [Bottleneck3d(cin if b == 0 else planes * EXPANSION, planes, stride if b == 0 else 1,
                                  bool(inflate[i])) for b in range(blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            self.stage_names.append(f"layer{i + 1}")
            cout = planes * EXPANSION
            if lateral and i < 3:
                self.add_module(f"layer{i + 1}_lateral", fuse(cout))
            cin = cout + (2 * cout // channel_ratio if lateral and i < 3 else 0)
        self.out_channels = cout

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, self.stage_names[i])(x)
        return self.pool2(x) if i == 0 and self.with_pool2 else x

    def fuse(self, i: int | None, x: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        """Concatenate the lateral of the fast features after stage ``i`` (None: after the stem)."""
        conv = self.conv1_lateral if i is None else getattr(self, f"layer{i + 1}_lateral")
        return torch.cat([x, conv(fast)], dim=1)

    def forward_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.stem(x)
        for i in range(3):
            x = self.stage(i, x)
        return (x,)

    def forward_tail(self, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (self.stage(3, parts[0]),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tail(self.forward_trunk(x))[0]


class SlowFast(nn.Module):
    """Two pathways with lateral fusion; ``forward`` returns ``(slow, fast)`` layer4 maps."""

    def __init__(self, depth: int = 101, in_channels: int = 3, resample_rate: int = 4, speed_ratio: int = 4,
                 channel_ratio: int = 8, fast_base_channels: int = 8, slow_inflate=(0, 0, 1, 1),
                 fast_inflate=(1, 1, 1, 1), slow_conv1_kernel=(1, 7, 7), fast_conv1_kernel=(5, 7, 7)):
        super().__init__()
        self.resample_rate, self.speed_ratio = resample_rate, speed_ratio
        self.slow_path = Pathway(depth, in_channels, 64, slow_conv1_kernel, slow_inflate, lateral=True,
                                 speed_ratio=speed_ratio, channel_ratio=channel_ratio)
        self.fast_path = Pathway(depth, in_channels, fast_base_channels, fast_conv1_kernel, fast_inflate)
        self.out_channels = self.slow_path.out_channels + self.fast_path.out_channels

    @staticmethod
    def _every(x: torch.Tensor, step: int) -> torch.Tensor:
        """Nearest-neighbour temporal subsampling by ``step`` (frames 0, step, 2 step, ...)."""
        return x if step == 1 else F.interpolate(x, scale_factor=(1.0 / step, 1.0, 1.0), mode="nearest")

    def forward_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slow = self.slow_path.stem(self._every(x, self.resample_rate))
        fast = self.fast_path.stem(self._every(x, self.resample_rate // self.speed_ratio))
        slow = self.slow_path.fuse(None, slow, fast)
        for i in range(3):
            slow, fast = self.slow_path.stage(i, slow), self.fast_path.stage(i, fast)
            slow = self.slow_path.fuse(i, slow, fast)
        return slow, fast

    def forward_tail(self, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        slow, fast = parts
        return self.slow_path.stage(3, slow), self.fast_path.stage(3, fast)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_tail(self.forward_trunk(x))


def slowfast_r101(in_channels: int = 3) -> SlowFast:
    """SimMMDG's RGB backbone: tau 4, alpha 4, beta 1/8, R101 both pathways, slow inflate (0,0,1,1)."""
    return SlowFast(101, in_channels)


def slowonly_r50(in_channels: int = 2) -> Pathway:
    """SimMMDG's flow backbone: SlowOnly-R50, conv1 (1,7,7), inflate (0,0,1,1), no pool2."""
    return Pathway(50, in_channels, 64, (1, 7, 7), (0, 0, 1, 1), with_pool2=False)
