"""SynthFoley's visual side: the object's trajectory, the RGB clip and its analytic motion field."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import MOTIONS, strength
from .factors import conditions

LINEAR_MOTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SWEEP = 1.0          # distance travelled by the linear motions, in half image widths
EXPAND = math.log(2.5)  # log growth of "expand" over the clip
SPIN = math.pi       # rotation of "rotate" over the clip, in radians
ORBIT_RADIUS = 0.35
OSCILLATE_AMPLITUDE = 0.4
TINT = 0.08          # nuisance tint amplitude (pixel units) at nuisance_strength 1


@dataclass
class Trajectory:
    """Object pose per frame in normalised image coordinates ([-1, 1], y downwards)."""

    center: torch.Tensor    # (N, T, 2)
    velocity: torch.Tensor  # (N, T, 2), d center / d clip time
    scale: torch.Tensor     # (N, T), object radius
    growth: torch.Tensor    # (N, T), d log(scale) / d clip time
    angle: torch.Tensor     # (N, T)
    spin: torch.Tensor      # (N, T), d angle / d clip time


def trajectory(config: dict, f: dict[str, torch.Tensor], g: torch.Generator) -> Trajectory:
    """The class motion of each sample plus a random-walk wobble."""
    n, frames = f["label"].shape[0], config["frames"]
    t = torch.linspace(0.0, 1.0, frames)
    cue = strength(config, "video")
    center = torch.stack([f["x0"], f["y0"]], -1)[:, None].expand(n, frames, 2).clone()
    velocity = torch.zeros(n, frames, 2)
    log_scale, growth = torch.zeros(n, frames), torch.zeros(n, frames)
    angle, spin = f["angle"][:, None].expand(n, frames).clone(), torch.zeros(n, frames)
    for c, motion in enumerate(MOTIONS[:config["num_classes"]]):
        i = f["label"] == c
        v, ph, turn = f["speed"][i, None], f["phase"][i, None], f["turn"][i, None]
        if motion in LINEAR_MOTIONS:
            direction = torch.tensor(LINEAR_MOTIONS[motion])
            center[i] += (SWEEP * v * (t - 0.5))[..., None] * direction
            velocity[i] = (SWEEP * v).expand(-1, frames)[..., None] * direction
        elif motion == "expand":
            log_scale[i], growth[i] = EXPAND * v * (t - 0.5), (EXPAND * v).expand(-1, frames)
        elif motion == "rotate":
            angle[i] += turn * SPIN * v * t
            spin[i] = (turn * SPIN * v).expand(-1, frames)
        elif motion == "orbit":
            a, r = ph + 2 * math.pi * turn * t, ORBIT_RADIUS * v
            center[i] += r[..., None] * torch.stack([a.cos(), a.sin()], -1)
            velocity[i] = (2 * math.pi * turn * r)[..., None] * torch.stack([-a.sin(), a.cos()], -1)
        else:  # oscillate: one horizontal back-and-forth
            a, amp = ph + 2 * math.pi * t, OSCILLATE_AMPLITUDE * v
            center[i, :, 0] += amp * a.sin()
            velocity[i, :, 0] = 2 * math.pi * amp * a.cos()
    # A random-walk wobble, stronger when the visual cue is weakened.
    steps = torch.randn(n, frames, 2, generator=g) * (0.02 + 0.10 * (1.0 - cue))
    wobble = steps.cumsum(1)
    wobble = wobble - wobble.mean(1, keepdim=True)
    center += wobble
    velocity += torch.gradient(wobble, spacing=1.0 / (frames - 1), dim=1)[0]
    scale = (f["size"] * (0.55 + 0.45 * cue))[:, None] * log_scale.exp()
    return Trajectory(center, velocity, scale, growth, angle, spin)


def render_video(config: dict, f, traj: Trajectory, domain: str, g: torch.Generator) -> torch.Tensor:
    """RGB clips (N, 3, T, H, W), normalised as ``(x - 0.5) / 0.25``."""
    c = conditions(config, "video", domain)
    mask = _object(config, f, traj)[0][:, None]  # (N, 1, T, H, W)
    n, w = mask.shape[0], config["width"]
    exposure = f["brightness"][:, None, None, None]
    background = _background(config, n, c, g) + _tint(config, f["nuisance"]) + exposure
    background = background[:, :, None, :, :]  # static scene: (N, 3, 1, H, W)
    colour = (c["object"] + f["shade"][:, None])[:, :, None, None, None]
    opacity = 0.2 + 0.8 * strength(config, "video")
    x = background + opacity * mask * (colour - background)
    x = _blur(x, float(c["blur"]) * w)
    x = (x - 0.5) * c["contrast"] + 0.5 + c["brightness"]
    x = x + c["pixel_noise"] * torch.randn(x.shape, generator=g)
    return ((x - 0.5) / 0.25).contiguous()


def render_flow(config: dict, f, traj: Trajectory, domain: str, g: torch.Generator) -> torch.Tensor:
    """Motion fields (N, 2, T, H, W): the object's pixel velocity plus noise, zero off the object."""
    c = conditions(config, "video", domain)
    mask, dx, dy = _object(config, f, traj)
    grow, spin = traj.growth[..., None, None], traj.spin[..., None, None]
    vx = traj.velocity[..., 0, None, None] + grow * dx - spin * dy
    vy = traj.velocity[..., 1, None, None] + grow * dy + spin * dx
    flow = torch.stack([vx, vy], 1) * c["flow_scale"]
    flow = flow + c["flow_noise"] * torch.randn(flow.shape, generator=g)
    flow = _blur(mask[:, None] * flow, float(c["blur"]) * config["width"])
    return flow.contiguous()


def _object(config: dict, f: dict[str, torch.Tensor], traj: Trajectory) -> tuple[torch.Tensor, ...]:
    """Soft object mask (N, T, H, W) and pixel offsets from the object centre (dx, dy)."""
    h, w = config["height"], config["width"]
    xs = (torch.arange(w) + 0.5) / w * 2 - 1
    ys = (torch.arange(h) + 0.5) / h * 2 - 1
    dx = xs - traj.center[..., 0, None, None]          # (N, T, 1, W)
    dy = ys[:, None] - traj.center[..., 1, None, None]  # (N, T, H, 1)
    cos, sin = traj.angle.cos()[..., None, None], traj.angle.sin()[..., None, None]
    scale = traj.scale[..., None, None]
    u = (cos * dx + sin * dy) / scale
    v = (cos * dy - sin * dx) / (scale * f["aspect"][:, None, None, None])
    p = f["roundness"][:, None, None, None]
    radius = (u.abs() ** p + v.abs() ** p) ** (1 / p)
    mask = ((1 - radius) * scale * w / 2 + 0.5).clamp(0, 1)  # about one pixel of soft edge
    return mask, dx.expand_as(mask), dy.expand_as(mask)


def _background(config: dict, n: int, c: dict[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Palette colour times a (tiled) grating of random orientation and phase: (N, 3, H, W)."""
    h, w = config["height"], config["width"]
    xs = ((torch.arange(w) + 0.5) / w * 2 - 1)[None, None, :]
    ys = ((torch.arange(h) + 0.5) / h * 2 - 1)[None, :, None]
    theta, phase = torch.rand(2, n, 1, 1, generator=g) * 2 * math.pi
    k = math.pi * c["texture_freq"]  # texture_freq cycles across the image
    along, across = xs * theta.cos() + ys * theta.sin(), ys * theta.cos() - xs * theta.sin()
    texture = torch.sin(k * along + phase) + c["tiles"] * torch.sin(k * across)
    return c["background"][None, :, None, None] * (1 + c["texture_amp"] * texture[:, None])


def _tint(config: dict, nuisance: torch.Tensor) -> torch.Tensor:
    """Nuisance colour: K hues evenly spaced on the chroma circle (grey axis untouched): (N, 3, 1, 1)."""
    e1 = torch.tensor([2.0, -1.0, -1.0]) / math.sqrt(6)
    e2 = torch.tensor([0.0, 1.0, -1.0]) / math.sqrt(2)
    hue = 2 * math.pi * nuisance.float()[:, None] / config["num_classes"]
    amplitude = TINT * config["nuisance_strength"]
    return (amplitude * (hue.cos() * e1 + hue.sin() * e2))[..., None, None]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (replicate borders) over the last two dims; sigma in pixels."""
    if sigma < 0.1:
        return x
    rows, cols = _blur_matrix(x.shape[-2], sigma), _blur_matrix(x.shape[-1], sigma)
    return rows @ x @ cols.T


def _blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """(n, n) matrix of a 1-D Gaussian blur whose taps beyond the border hit the edge pixel."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    source = (torch.arange(n)[:, None] + offsets).clamp(0, n - 1)  # (n, taps)
    return torch.zeros(n, n).scatter_add_(1, source, (taps / taps.sum()).expand(n, -1).contiguous())
