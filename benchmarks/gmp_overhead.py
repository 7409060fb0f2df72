"""Step-time overhead of GMP over the plain sum strategy (same model, objectives and data).

One optimisation step = forward of all terms, the strategy's backward, Adam step.
Strategies are measured interleaved (one round = one step of each in turn, repeated), so load
changes on a shared machine hit all of them alike.  Reported: median and minimum step time per
strategy, and the headline ratio = median over rounds of (strategy step / base step of the
same round); the ratio of minimum step times is printed too (robust on a loaded machine).

Configs:
  cpu  small3d video (3x8x32x32) + small2d audio (1x64x64), batch 16, fp32, all trainable;
  gpu  r2plus1d_18 video (3x16x112x112) + resnet18_audio (1x257x1004), batch 16, trunk frozen
       up to layer3 (layer4 + heads trainable), bf16 autocast; ``--channels-last``, ``--compile``.
       Runs on ``--device`` (default cuda; skipped when CUDA is not available).  ``--tiny``
       shrinks its inputs (video 3x4x32x32, audio 1x32x64) so that the same models, freezing
       and code path can be checked on a CPU (``--config gpu --device cpu --tiny``).

Both ratios (fast engine / base and naive engine / base) come from the same run.
"fast" takes one autograd pass per loss over all trainable parameters; "naive" follows the
paper's pseudocode (one autograd.grad per modality and loss).

``--save DIR`` also writes each configuration's numbers, machine, date and code commit to
``DIR/gmp_overhead_<config>[_tiny][_channels_last][_compile].json``, which the book's Chapter 4
renders (``results/book/benchmarks`` for the CPU book, ``results/gpu/benchmarks`` for a GPU run).

Usage: python benchmarks/gmp_overhead.py [--config cpu|gpu|all] [--steps N] [--warmup W]
           [--device cuda|cpu] [--tiny] [--channels-last] [--compile] [--save DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from mmdg.data.base import Batch
from mmdg.experiments.measurements import write_measurement
from mmdg.methods import build_method
from mmdg.models.model import build_model
from mmdg.train import environment

CONFIGS = {
    "cpu": {"shapes": {"video": (3, 8, 32, 32), "audio": (1, 64, 64)},
            "encoders": {"video": {"name": "small3d"}, "audio": {"name": "small2d"}},
            "device": "cpu", "amp": False},
    "gpu": {"shapes": {"video": (3, 16, 112, 112), "audio": (1, 257, 1004)},
            "encoders": {"video": {"name": "r2plus1d_18", "freeze_until": "layer3"},
                         "audio": {"name": "resnet18_audio", "freeze_until": "layer3"}},
            "device": "cuda", "amp": True},
}
TINY_SHAPES = {"video": (3, 4, 32, 32), "audio": (1, 32, 64)}
TARGETS = {"cpu": 1.7, "gpu": 1.10}   # the ceilings for GMP fast / Base
VARIANTS = (("base (sum)", "base", {}),
            ("gmp fast", "gmp", {"gmp_engine": "fast"}),
            ("gmp naive", "gmp", {"gmp_engine": "naive"}))


def make(cfg: dict, method: str, hparams: dict, args, num_classes: int = 8):
    torch.manual_seed(0)
    encoders = {m: dict(spec) for m, spec in cfg["encoders"].items()}
    if args.channels_last and cfg["device"] != "cpu":
        for spec in encoders.values():
            spec["channels_last"] = True
    model = build_model(cfg["shapes"], encoders, num_classes)
    meth = build_method(method, model, 2, hparams).to(cfg["device"])
    if args.compile:
        # GMP differentiates the same graph twice (retain_graph=True), which AOTAutograd's donated
        # buffers forbid; turn them off (the base run gets the same setting, for a fair comparison).
        import torch._functorch.config as functorch_config
        functorch_config.donated_buffer = False
        for enc in meth.model.encoders.values():
            enc.compile()
    opt = torch.optim.Adam(meth.trainable_parameters(), lr=1e-4)
    return meth, opt


def batch_for(cfg: dict, n: int, num_classes: int = 8) -> Batch:
    g = torch.Generator().manual_seed(1)
    inputs = {m: torch.randn(n, *s, generator=g) for m, s in cfg["shapes"].items()}
    b = Batch(inputs, torch.randint(0, num_classes, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))
    return b.to(cfg["device"])


def step(meth, opt, batch: Batch, cfg: dict) -> None:
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cfg["amp"] else contextlib.nullcontext()
    opt.zero_grad(set_to_none=True)
    with amp:
        _, terms = meth.terms(batch)
    meth.backward(terms)
    opt.step()


def config(name: str, args) -> dict:
    """The named config with the command-line overrides (device, tiny shapes) applied."""
    cfg = dict(CONFIGS[name])
    if name == "gpu":
        cfg["device"] = args.device
        cfg["amp"] = args.device.startswith("cuda")   # bf16 autocast on CUDA only
        if args.tiny:
            cfg["shapes"] = dict(TINY_SHAPES)
    return cfg


def settings(name: str, cfg: dict, args) -> tuple[str, str]:
    """A readable description of the measured settings, and the file-name suffix for them."""
    flags = [("tiny shapes", "tiny", name == "gpu" and args.tiny),
             ("channels-last", "channels_last", args.channels_last and cfg["device"] != "cpu"),
             ("torch.compile", "compile", args.compile)]
    on = [(word, suffix) for word, suffix, used in flags if used]
    words = ["bf16 autocast" if cfg["amp"] else "fp32", *(w for w, _ in on), *([] if args.compile else ["eager"])]
    return ", ".join(words), "_".join([name, *(s for _, s in on)])


def run(name: str, args) -> dict[str, float]:
    cfg = config(name, args)
    cuda = cfg["device"].startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batch = batch_for(cfg, args.batch)
    runs = [(label, *make(cfg, method, hp, args)) for label, method, hp in VARIANTS]
    times: dict[str, list[float]] = {label: [] for label, *_ in runs}
    for i in range(args.warmup + args.steps):
        for label, meth, opt in runs:
            sync()
            t0 = time.perf_counter()
            step(meth, opt, batch, cfg)
            sync()
            if i >= args.warmup:
                times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    # per-round ratios: the steps of one round run back to back, so they see the same machine load
    ratio = {k: statistics.median(t / b for t, b in zip(v, times["base (sum)"])) for k, v in times.items()}
    dev = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
    flags = f"compile={args.compile}, amp={cfg['amp']}" + (f", channels_last={args.channels_last}" if name == "gpu" else "")
    shapes = ", ".join(f"{m} {'x'.join(map(str, s))}" for m, s in cfg["shapes"].items())
    print(f"[{name}] {dev}; {shapes}; batch {args.batch}, {args.steps} timed rounds after {args.warmup} "
          f"warm-up; {flags}")
    for label, t in med.items():
        q1, q3 = statistics.quantiles(times[label], n=4)[0::2] if len(times[label]) > 1 else (t, t)
        print(f"  {label:<11} median {1e3 * t:8.2f} ms (IQR {1e3 * q1:.2f}-{1e3 * q3:.2f})  min {1e3 * best[label]:8.2f} ms"
              f"   x{ratio[label]:.3f} of base (median per-round ratio), x{best[label] / best['base (sum)']:.3f} (min)")
    print(f"  ratio GMP fast / base = {ratio['gmp fast']:.3f};  GMP naive / base = {ratio['gmp naive']:.3f}"
          f"   (ratios of min step times: {best['gmp fast'] / best['base (sum)']:.3f}, "
          f"{best['gmp naive'] / best['base (sum)']:.3f})")
    if args.save:
        words, suffix = settings(name, cfg, args)
        record = {"config": name, "settings": words, "shapes": cfg["shapes"], "batch": args.batch,
                  "steps": args.steps, "warmup": args.warmup, "target": TARGETS[name],
                  "median_ms": {k: 1e3 * v for k, v in med.items()}, "min_ms": {k: 1e3 * v for k, v in best.items()},
                  "ratio": ratio, "ratio_min": {k: best[k] / best["base (sum)"] for k in best}}
        print(f"  saved {write_measurement(args.save, 'gmp_overhead', suffix, record, environment(torch.device(cfg['device'])))}")
    return {"fast": ratio["gmp fast"], "naive": ratio["gmp naive"]}


def main(argv=None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=["cpu", "gpu", "all"], default="all")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoders")
    ap.add_argument("--channels-last", action="store_true", help="channels_last encoders (gpu config)")
    ap.add_argument("--device", default="cuda", help="device of the gpu config (default cuda)")
    ap.add_argument("--tiny", action="store_true", help="tiny input shapes for the gpu config (CPU check)")
    ap.add_argument("--save", metavar="DIR", help="also write each configuration's numbers as JSON in DIR")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 2:
        ap.error("--steps must be >= 1, --warmup >= 0 and --batch >= 2")
    names = ["cpu", "gpu"] if args.config == "all" else [args.config]
    results = {}
    for name in names:
        cfg = config(name, args)
        if cfg["device"].startswith("cuda") and not torch.cuda.is_available():
            print(f"[{name}] skipped: CUDA is not available (use --device cpu --tiny to check it on a CPU)")
            continue
        results[name] = run(name, args)
    return results


if __name__ == "__main__":
    main()
