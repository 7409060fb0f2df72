"""Default encoders per modality name and profile (overridable per run)."""
from __future__ import annotations

PRESETS: dict[str, dict[str, dict]] = {
    # Small from-scratch encoders that train in seconds to minutes on a 2-core CPU.
    "cpu": {
        "video": {"name": "small3d"},
        "flow": {"name": "small3d"},
        "audio": {"name": "small2d"},
        "phone": {"name": "imu1d"},
        "watch": {"name": "imu1d"},
        "*": {"name": "mlp"},
    },
    # Reference-sized backbones (SimMMDG pipeline: torchvision stand-ins for SlowFast / VGGSound).
    "gpu": {
        "video": {"name": "r2plus1d_18"},
        "flow": {"name": "r2plus1d_18"},
        "audio": {"name": "resnet18_audio"},
        "phone": {"name": "imu1d"},
        "watch": {"name": "imu1d"},
        "*": {"name": "mlp"},
    },
    # The papers' encoders (SimMMDG's): mmaction2 SlowFast-R101 (RGB) and SlowOnly-R50 (flow), the
    # VGGSound ResNet-18 (audio); conv1..layer3 frozen, layer4 trained; video/flow embeddings after
    # the heads' dropout 0.5.  Checkpoints: --checkpoint video=...,flow=...,audio=...
    "paper": {
        "video": {"name": "slowfast_r101", "freeze_until": "layer3", "dropout": 0.5},
        "flow": {"name": "slowonly_r50", "freeze_until": "layer3", "dropout": 0.5},
        "audio": {"name": "resnet18_audio", "freeze_until": "layer3"},
        "phone": {"name": "imu1d"},
        "watch": {"name": "imu1d"},
        "*": {"name": "mlp"},
    },
}


def preset_encoders(profile: str, modalities: list[str]) -> dict[str, dict]:
    if profile not in PRESETS:
        raise KeyError(f"unknown encoder preset {profile!r}; valid choices: {sorted(PRESETS)}")
    table = PRESETS[profile]
    return {m: dict(table.get(m, table["*"])) for m in modalities}
