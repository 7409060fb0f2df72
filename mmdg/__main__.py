"""Command line: ``python -m mmdg {train,sweep,collect,list}``."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import yaml


def _value(text: str):
    """Parse a CLI value as YAML (numbers, booleans, lists, dicts), falling back to the string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _pairs(items: list[str] | None, flag: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: {flag} expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v)
    return out


def _seed(text: str) -> int:
    """A seed: an int in [0, 2**63 - 1) (argparse names the flag on error)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= seed < 2**63 - 1:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**63 - 1), got {text}")
    return seed


def _seeds(text: str) -> list[int]:
    items = text.split(",")
    if any(not s.strip() for s in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integer seeds, got {text!r} (an empty entry)")
    return [_seed(s.strip()) for s in items]


def _names(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",")]
    if any(not s for s in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r} (an empty entry)")
    return items


def _add_run_args(p: argparse.ArgumentParser) -> None:
    from .train import RunConfig
    d = RunConfig(target="-")
    p.add_argument("--benchmark", default=d.benchmark, help="benchmark name (see `python -m mmdg list`)")
    p.add_argument("--bench", action="append", metavar="KEY=VALUE", help="benchmark keyword argument")
    p.add_argument("--data-root", help="root of a real dataset copy (EPIC-Kitchens / HAC); sets data_root")
    p.add_argument("--hp", action="append", metavar="KEY=VALUE", help="method hyperparameter override")
    p.add_argument("--modalities", help="comma-separated subset of the benchmark's modalities")
    p.add_argument("--encoders", help='JSON: {"video": {"name": "r3d_18", "freeze_until": "layer3"}, ...}')
    p.add_argument("--encoder-preset", default=None,
                   help=f"cpu, gpu or paper (default {d.encoder_preset}; not with --encoders)")
    p.add_argument("--checkpoint", action="append", metavar="MOD=PATH[,MOD=PATH]",
                   help="pretrained encoder weights per modality, e.g. video=slowfast.pth,flow=...,audio=...")
    p.add_argument("--cache-trunk", type=int, default=d.cache_trunk, metavar="K",
                   help="precompute K augmented frozen-trunk outputs per clip; train layer4 + heads on them")
    p.add_argument("--fusion", default=d.fusion, help="concat, sum, film or gated")
    p.add_argument("--head-hidden", type=int, default=d.head_hidden)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--device", default=d.device)
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--results", default="results", help="results directory")
    p.add_argument("--overwrite", action="store_true", help="replace existing run records")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _config(a, method: str, target: str, seed: int):
    from .train import RunConfig
    bench = _pairs(a.bench, "--bench")
    if a.data_root:
        if "data_root" in bench and str(bench["data_root"]) != a.data_root:
            raise ValueError(f"--data-root {a.data_root!r} conflicts with --bench data_root="
                             f"{bench['data_root']!r}; give one of them")
        bench["data_root"] = a.data_root
    try:
        encoders = json.loads(a.encoders) if a.encoders else None
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: --encoders is not valid JSON: {e}")
    if encoders is not None and not isinstance(encoders, dict):
        raise ValueError(f"--encoders must be a JSON object modality -> encoder spec, got {a.encoders!r}")
    if encoders is not None and a.encoder_preset is not None:
        raise ValueError("--encoders and --encoder-preset conflict (the preset would be ignored); give one")
    return RunConfig(target=target, benchmark=a.benchmark, benchmark_kwargs=bench, method=method,
                     hparams=_pairs(a.hp, "--hp"),
                     modalities=a.modalities.split(",") if a.modalities else None,
                     encoders=encoders, encoder_preset=a.encoder_preset or RunConfig.encoder_preset,
                     checkpoints={k: str(v) for k, v in _pairs([i for c in a.checkpoint or [] for i in c.split(",")],
                                                                "--checkpoint").items()},
                     cache_trunk=a.cache_trunk, fusion=a.fusion,
                     head_hidden=a.head_hidden, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                     weight_decay=a.weight_decay, seed=seed, device=a.device, amp=not a.no_amp,
                     num_workers=a.num_workers)


def _targets(a) -> list[str]:
    if a.targets and a.targets != "all":
        try:
            return _names(a.targets)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"--targets: {e}") from None
    from .data import build_benchmark
    return list(build_benchmark(a.benchmark, **_pairs(a.bench, "--bench")).domains)


def cmd_train(a) -> int:
    from .experiments.sweep import grid, run_one
    cfg = _config(a, a.method, a.target, a.seed)
    grid(cfg, [cfg.method], [cfg.target], [cfg.seed])  # validate names, ranges, device first
    from . import distributed
    if distributed.launched():  # torchrun --nproc-per-node N -m mmdg train ...
        from .experiments.torchrun import run
        path, rec, skipped = run(cfg, Path(a.results), a.overwrite, progress=not a.quiet)
        if not distributed.is_main():
            return 3 if rec.get("status") == "diverged" else 0
    else:
        path, rec, skipped = run_one(cfg, Path(a.results), a.overwrite, progress=not a.quiet)
    print(f"{'exists' if skipped else 'wrote'} {path}")
    if rec.get("status") == "diverged":
        print(f"error: {rec['diverged']['message']}; the run is recorded as diverged (not a result)",
              file=sys.stderr)
        return 3
    f = rec["final"]
    print(f"selected epoch {f['selected_epoch']}: source-val {f['val_acc']:.2f}  target {f['test_acc']:.2f}  "
          f"(oracle target {f['oracle_test_acc']:.2f} at epoch {f['oracle_epoch']})")


def cmd_sweep(a) -> int:
    from .experiments.launchers import check_launch, launch, slurm_options
    from .experiments.sweep import check_results_dir, grid
    from .experiments.hsearch import check_trials, launch_search
    check_launch(a.launcher, a.jobs)
    check_trials(a.hparam_trials)
    slurm = slurm_options(a, _pairs) if a.launcher == "slurm" else None
    check_results_dir(Path(a.results))
    base = _config(a, "erm", "-", 0)
    configs = grid(base, a.methods, _targets(a), a.seeds)
    opts = dict(launcher=a.launcher, jobs=a.jobs, overwrite=a.overwrite, progress=not a.quiet, slurm=slurm)
    if a.hparam_trials:
        summary, _ = launch_search(configs, a.hparam_trials, Path(a.results), **opts)
    else:
        summary = launch(configs, Path(a.results), **opts)
    print("\n".join(summary.lines()))
    return 0 if summary.ok else 1


def cmd_collect(a) -> None:
    import pandas as pd
    from .experiments.collect import format_summary, load_runs, summarize
    from .experiments.collect import mixed_cells
    from .experiments.selection import selection
    rule = selection(a.selection)
    metric = f"{a.metric}@{rule.name}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped records are listed below
        runs = load_runs(Path(a.results))
    for path, why in runs.attrs.get("excluded", []):
        print(f"excluded {path}: {why}", file=sys.stderr)
    if a.benchmark:
        runs = runs[runs["benchmark"] == a.benchmark]
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_colwidth", 80):
        for bench, df in runs.groupby("benchmark"):
            print(f"\n{bench}: {a.metric} at the {rule.label} (mean ± std over seeds)")
            for key, target, diffs in mixed_cells(df, ["method"]):
                print(f"note: {key[0]} on {target} mixes configurations ({'; '.join(diffs)}): "
                      f"split into one row each", file=sys.stderr)
            print(format_summary(summarize(df, metric, mixed="split")).to_string())
    if a.csv:
        runs.to_csv(a.csv, index=False)
        print(f"\nwrote {a.csv}")


def cmd_list(a) -> None:
    from .data import BENCHMARKS
    from .methods import METHODS, PLUGINS
    from .models.encoders import ENCODERS
    from .models.fusion import FUSIONS
    from .objectives import OBJECTIVES
    from .strategies import STRATEGIES
    print("benchmarks:", ", ".join(BENCHMARKS.names()))
    print("methods:")
    for name, m in METHODS.items():
        print(f"  {name:12s} {m.doc}  hparams={ {k: h.default for k, h in m.hparams.items()} }")
    print("plugins (append as method+plugin):")
    for name, p in PLUGINS.items():
        print(f"  +{name:11s} {p.doc}  hparams={ {k: h.default for k, h in p.hparams.items()} }")
    print("objectives:", ", ".join(OBJECTIVES.names()))
    print("strategies:", ", ".join(STRATEGIES.names()))
    print("encoders:", ", ".join(ENCODERS.names()))
    print("fusions:", ", ".join(FUSIONS.names()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmdg", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train one method on one leave-one-domain-out split")
    p.add_argument("--method", default="erm")
    p.add_argument("--target", required=True, help="held-out target domain")
    p.add_argument("--seed", type=_seed, default=0)
    _add_run_args(p)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("sweep", help="grid of methods x targets x seeds (existing runs are skipped)")
    p.add_argument("--methods", required=True, type=_names, help="comma-separated method names")
    p.add_argument("--targets", default="all", help="comma-separated target domains, or all")
    p.add_argument("--seeds", default=[0, 1], type=_seeds, help="comma-separated seeds (default 0,1)")
    p.add_argument("--hparam-trials", type=int, default=0, metavar="N",
                   help="hyperparameter search: the default plus N random draws per method and target "
                        "(seeded by the trial index), the best by source validation retrained with --seeds")
    _add_run_args(p)
    from .experiments.launchers import add_launcher_args
    add_launcher_args(p)
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("collect", help="tables of collected run records")
    p.add_argument("--results", default="results")
    p.add_argument("--benchmark", default=None)
    p.add_argument("--metric", default="test_acc", help="test_acc, val_acc or <part>_acc_<modality>")
    p.add_argument("--selection", default="source_val",
                   help="model selection rule: source_val (protocol), last, or oracle (best target "
                        "epoch, labelled ORACLE)")
    p.add_argument("--csv", default=None, help="also write the per-run table as CSV")
    p.set_defaults(fn=cmd_collect)
    p = sub.add_parser("list", help="registered benchmarks, methods, objectives, strategies, encoders")
    p.set_defaults(fn=cmd_list)
    a = parser.parse_args(argv)
    from .experiments.results import RunLocked
    plain, warnings.formatwarning = warnings.formatwarning, lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        return a.fn(a) or 0
    except (KeyError, ValueError, TypeError, OSError, RunLocked) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = plain


if __name__ == "__main__":
    sys.exit(main())
