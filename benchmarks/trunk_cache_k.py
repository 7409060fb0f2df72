"""Accuracy effect of the trunk cache's K (views per clip) on an EPIC-Kitchens fixture.

Trains the `paper` encoders (random init: no checkpoints here) on a generated fixture at a small
clip size, once without the cache (a fresh augmentation every epoch) and once per K with
``cache_trunk=K``, for each seed, and prints target and source-validation accuracy (mean ± std over
seeds) and the wall time per run.  A fixture is tiny and synthetic, so read the differences
against the spread over seeds.

Usage: python benchmarks/trunk_cache_k.py [--ks 1,2,4] [--seeds 0,1] [--epochs 6] [--clips 8]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mmdg.data.fixtures import write_epic_fixture
from mmdg.train import RunConfig, train

SMALL = {"rgb_frames": 4, "flow_frames": 2, "short_side": 48, "crop_size": 32, "rgb_eval_crop": 32,
         "flow_eval_crop": 48, "audio_samples": 16000}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="1,2,4", help="comma-separated K values (0 = no cache is always run)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--clips", type=int, default=8, help="fixture clips per domain and split")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--target", default="D1")
    a = ap.parse_args(argv)
    ks = [0] + [int(k) for k in a.ks.split(",") if int(k) > 0]
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_epic_fixture(Path(tmp) / "epic", clips=a.clips, frame_size=(64, 48), segment_frames=(20, 30))
        for k in ks:
            for seed in seeds:
                cfg = RunConfig(target=a.target, benchmark="epic_kitchens",
                                benchmark_kwargs={"data_root": str(root), **SMALL}, encoder_preset="paper",
                                epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=seed, cache_trunk=k)
                t = time.perf_counter()
                rec = train(cfg, checkpoint=Path(tmp) / f"k{k}s{seed}" / "ckpt.pt", progress=False)
                rows.append({"K": k, "seed": seed, "test_acc": rec["final"]["test_acc"],
                             "val_acc": rec["final"]["val_acc"], "last_test_acc": rec["final"]["last_test_acc"],
                             "seconds": time.perf_counter() - t})
                print(f"K={k or 'off'} seed {seed}: target {rows[-1]['test_acc']:.1f}  source-val "
                      f"{rows[-1]['val_acc']:.1f}  last-epoch target {rows[-1]['last_test_acc']:.1f}  "
                      f"{rows[-1]['seconds']:.0f} s", flush=True)
    print(f"\nEPIC fixture ({a.clips} clips per domain and split), target {a.target}, paper encoders (random "
          f"init), {a.epochs} epochs, batch {a.batch_size}, lr {a.lr}, seeds {seeds}, "
          f"{torch.get_num_threads()} threads")
    for k in ks:
        r = [x for x in rows if x["K"] == k]
        ms = lambda key: (f"{statistics.mean(x[key] for x in r):.1f} ± "  # noqa: E731
                          f"{statistics.stdev(x[key] for x in r) if len(r) > 1 else 0:.1f}")
        print(f"  K={k or 'off (fresh views)':>18}: target {ms('test_acc')}  source-val {ms('val_acc')}  "
              f"last-epoch target {ms('last_test_acc')}  {statistics.mean(x['seconds'] for x in r):.0f} s/run")
    return rows


if __name__ == "__main__":
    main()
