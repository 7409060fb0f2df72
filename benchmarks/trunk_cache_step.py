"""Step time with the frozen-trunk cache against without it, `paper` encoders at a reduced size.

One optimisation step = the method's forward terms, its backward and an Adam step.  Uncached, the
step runs the whole model on clips (the frozen trunk under ``no_grad``); cached, it runs layer4 and
the heads on the trunk outputs of the same clips, taken from memory as ``mmdg.trunk_cache`` feeds
them (float16 rows; the cache's one-off build cost is printed separately).  Steps alternate
(one round = one uncached, one cached step) so load changes on a shared machine hit both alike.
Printed: median step times, the ratio of medians (cached / uncached), the median of per-round
ratios and the FLOP counts of both steps (``mmdg.flops``).

Usage: python benchmarks/trunk_cache_step.py [--size 64] [--frames 8] [--batch 4] [--rounds 5]
           [--method erm] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mmdg.data.base import Batch
from mmdg.flops import training_step_flops
from mmdg.methods import build_method
from mmdg.models.model import build_model
from mmdg.models.presets import preset_encoders
from mmdg.train import environment


def shapes_for(size: int, frames: int, audio_frames: int) -> dict[str, tuple[int, ...]]:
    return {"video": (3, frames, size, size), "flow": (2, max(1, frames // 4), size, size),
            "audio": (1, 257, audio_frames)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="crop size (the papers: 224)")
    ap.add_argument("--frames", type=int, default=8, help="RGB frames (the papers: 32); flow gets a quarter")
    ap.add_argument("--audio-frames", type=int, default=200, help="spectrogram frames (the papers: 1004)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--method", default="erm")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    shapes = shapes_for(a.size, a.frames, a.audio_frames)
    torch.manual_seed(0)
    model = build_model(shapes, preset_encoders("paper", list(shapes)), 8)
    method = build_method(a.method, model, 2, {})
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    batch = Batch({m: torch.randn(a.batch, *s, generator=g) for m, s in shapes.items()},
                  torch.randint(0, 8, (a.batch,), generator=g), torch.randint(0, 2, (a.batch,), generator=g))

    t0 = time.perf_counter()
    rows = {}
    with torch.no_grad():
        for m in model.modalities:
            parts = model.encoders[m].forward_trunk(batch.inputs[m])
            rows[m] = np.ascontiguousarray(torch.cat([p.flatten(1) for p in parts], 1).numpy().astype(np.float16))
            model.encoders[m].cached_shapes[rows[m].shape[1]] = tuple(tuple(p.shape[1:]) for p in parts)
    build = time.perf_counter() - t0

    def step(cached: bool) -> float:
        t = time.perf_counter()
        inputs = ({m: torch.from_numpy(r.astype(np.float32)) for m, r in rows.items()} if cached
                  else batch.inputs)
        opt.zero_grad(set_to_none=True)
        method.backward(method.terms(Batch(inputs, batch.label, batch.domain))[1])
        opt.step()
        return time.perf_counter() - t

    method.train()
    for _ in range(a.warmup):
        step(False), step(True)
    times = {False: [], True: []}
    for _ in range(a.rounds):
        for cached in (False, True):
            times[cached].append(step(cached))
    med = {k: statistics.median(v) for k, v in times.items()}
    per_round = statistics.median(c / u for u, c in zip(times[False], times[True]))
    flops_full = training_step_flops(method, batch)
    env = environment(torch.device("cpu"))
    out = {"shapes": shapes, "batch": a.batch, "method": a.method, "rounds": a.rounds,
           "uncached_s": med[False], "cached_s": med[True], "ratio_of_medians": med[True] / med[False],
           "median_round_ratio": per_round, "trunk_batch_build_s": build, "flops": flops_full}
    print(f"paper encoders, inputs {shapes}, batch {a.batch}, method {a.method}, {a.rounds} rounds, "
          f"{env['threads']} threads, {env['device_name']}, torch {env['torch']}, commit {env['commit']}")
    print(f"  uncached step: median {med[False] * 1e3:.0f} ms (min {min(times[False]) * 1e3:.0f})")
    print(f"  cached step:   median {med[True] * 1e3:.0f} ms (min {min(times[True]) * 1e3:.0f})")
    print(f"  cached / uncached: {out['ratio_of_medians']:.3f} (ratio of medians), "
          f"{per_round:.3f} (median of per-round ratios), {min(times[True]) / min(times[False]):.3f} (of minima)")
    print(f"  FLOPs per step: uncached {flops_full['step'] / 1e9:.1f} G, cached {flops_full['tail_step'] / 1e9:.1f} G "
          f"(trunk forward {flops_full['trunk_forward'] / 1e9:.1f} G); trunk outputs of the batch took {build:.2f} s")
    return out


if __name__ == "__main__":
    main()
