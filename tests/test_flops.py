"""The FLOP counter against hand-derived counts, and meta-device counting against real execution."""
import torch
from torch import nn

from mmdg.data.base import Batch
from mmdg.flops import count_flops, paper_step_flops, training_step_flops
from mmdg.methods import build_method
from mmdg.models.model import build_model
from mmdg.models.presets import preset_encoders


def test_conv_and_linear_counts_are_two_flops_per_multiply_add():
    conv = nn.Conv3d(3, 8, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
    x = torch.randn(2, 3, 4, 16, 16)
    # output 2 x 8 x 4 x 8 x 8 voxels, each 3 * 7 * 7 multiply-adds
    assert count_flops(conv, x) == 2 * (2 * 8 * 4 * 8 * 8) * (3 * 7 * 7)
    lin = nn.Linear(5, 3)
    assert count_flops(lin, torch.randn(4, 5)) == 2 * 4 * 5 * 3


def test_meta_count_of_a_paper_step_equals_the_count_of_a_real_step():
    shapes = {"video": (3, 4, 32, 32), "audio": (1, 32, 16)}
    meta = paper_step_flops(shapes, 8, 2, "erm")
    torch.manual_seed(0)
    model = build_model(shapes, preset_encoders("paper", list(shapes)), 8)
    method = build_method("erm", model, 2, {})
    batch = Batch({m: torch.randn(2, *s) for m, s in shapes.items()}, torch.tensor([0, 1]), torch.tensor([0, 1]))
    real = training_step_flops(method, batch)
    assert real == meta
    # the trunk runs forward only; the tail forward and backward (about 3x its forward) is the rest
    assert 0 < meta["trunk_forward"] < meta["step"] and meta["tail_step"] == meta["step"] - meta["trunk_forward"]


def test_trunk_cache_step_benchmark_runs_and_counts_less_work_cached():
    from conftest import load_script
    out = load_script("benchmarks/trunk_cache_step.py").main(
        ["--size", "32", "--frames", "4", "--audio-frames", "16", "--batch", "2", "--rounds", "1", "--warmup", "0"])
    assert out["uncached_s"] > 0 and out["cached_s"] > 0
    assert 0 < out["flops"]["tail_step"] < out["flops"]["step"]
