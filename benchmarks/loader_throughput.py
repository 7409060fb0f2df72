"""Data-loader throughput (clips per second) of ``epic_kitchens`` and ``hac`` on generated fixtures.

A fixture in the real layout is written to a temporary folder (EPIC: 456 x 256 JPEG frames, 60 fps
RGB, 30 fps u/v flow, whole-video 16 kHz wav; HAC: 320 x 240 H.264 mp4 of 72 frames, flow mp4s,
wav), then the training split of one domain is read through ``mmdg.data.make_loader`` (the
trainer's loader) with the reference clip settings: 32 RGB frames at 224 x 224, 8 flow frames,
the 257 x 1004 spectrogram, train-time augmentation.  Every count of workers is timed in the same
run, over the same clips; each pass is timed from the loader's start (worker start-up included)
to its last batch, and the median of ``--repeats`` passes is reported.

This measures decoding and augmentation only (no model).  The numbers are for the machine that
runs the script; the header line says which (CPU only here unless a GPU machine runs it, and the
GPU is not used by the loader anyway).

``--save DIR`` also writes the rates, machine, date and code commit to
``DIR/loader_throughput_<N>cores.json`` (N: the machine's CPU cores), which Chapter 10 renders.

Usage: python benchmarks/loader_throughput.py [--benchmark epic_kitchens|hac|all] [--workers 0,2]
           [--clips 16] [--batch-size 4] [--repeats 3] [--modalities video,flow,audio] [--save DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from mmdg.data import build_benchmark, make_loader
from mmdg.data.fixtures import write_epic_fixture, write_hac_fixture
from mmdg.experiments.measurements import write_measurement
from mmdg.train import environment

DOMAIN = {"epic_kitchens": "D1", "hac": "human"}


def write(name: str, root: str, clips: int) -> None:
    if name == "epic_kitchens":
        write_epic_fixture(root, domains=("D1",), clips=clips)
    else:
        write_hac_fixture(root, domains=("human",), clips=clips)


def clips_per_second(dataset, workers: int, batch_size: int, repeats: int) -> float:
    """Median over ``repeats`` passes of clips / seconds, timed from the loader's start to its last batch.

    Worker start-up is included: excluding the first batch would also hide the batches that the
    other workers prefetch meanwhile, which inflates the rate of a short pass many times over.
    """
    rates = []
    for r in range(repeats):
        loader = make_loader(dataset, batch_size, shuffle=True, drop_last=False, seed=r, num_workers=workers)
        t0, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default="all", choices=["all", *DOMAIN])
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    p.add_argument("--clips", type=int, default=16, help="training clips in the fixture's domain")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modalities", default="video,flow,audio")
    p.add_argument("--save", metavar="DIR", help="also write the rates as JSON in DIR")
    a = p.parse_args(argv)
    names = list(DOMAIN) if a.benchmark == "all" else [a.benchmark]
    workers = [int(w) for w in a.workers.split(",")]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, GPU: {gpu}"
    print(f"machine: {machine}, torch threads {torch.get_num_threads()}")
    print(f"clip settings: reference defaults; modalities {a.modalities}; batch {a.batch_size}; "
          f"median of {a.repeats} passes over {a.clips} clips, worker start-up included")
    rates: dict[str, dict[str, float]] = {}
    for name in names:
        with tempfile.TemporaryDirectory() as root:
            t0 = time.perf_counter()
            write(name, root, a.clips)
            print(f"\n{name}: fixture written in {time.perf_counter() - t0:.1f} s")
            bench = build_benchmark(name, data_root=root, modalities=a.modalities)
            ds = bench.dataset(DOMAIN[name], "train")
            shapes = {m: tuple(x.shape) for m, x in ds[0]["inputs"].items()}
            print(f"  sample shapes {shapes}")
            for w in workers:
                rates.setdefault(name, {})[str(w)] = clips_per_second(ds, w, a.batch_size, a.repeats)
                print(f"  workers={w}: {rates[name][str(w)]:.2f} clips/s")
    if a.save:
        record = {"clips": a.clips, "batch_size": a.batch_size, "repeats": a.repeats, "modalities": a.modalities,
                  "clip_settings": "reference", "clips_per_s": rates}
        env = {**environment(torch.device("cpu")), "machine": machine}
        print(f"saved {write_measurement(a.save, 'loader_throughput', f'{os.cpu_count()}cores', record, env)}")


if __name__ == "__main__":
    main()
