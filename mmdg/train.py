"""The trainer: one leave-one-domain-out run of one method, checkpointed every epoch.

Protocol (SimMMDG reference): train on the source domains' train splits, validate
on their test splits, test on the target.  The reported model is the epoch with
the best source-validation accuracy (ties go to the later epoch, as in the
reference); the best-target epoch is recorded too, always labelled ``oracle``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import pickle
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__, code_version, distributed
from .data.base import benchmark_for_target
from .data.base import make_loader
from .data.protocol import DGSplit, make_split
from .data.samplers import make_train_loader
from .evaluation.missing import flat_missing, missing_for_epoch
from .io import atomic_torch_save, move_aside
from .methods import Method, build_method, resolve
from .models.model import MultimodalModel, build_model
from .models.presets import preset_encoders
from .optim import make_optimizer


@dataclass
class RunConfig:
    """Everything that defines a run; its hash names the run's record and checkpoint."""

    target: str
    benchmark: str = "synth_foley"
    benchmark_kwargs: dict = field(default_factory=dict)
    method: str = "erm"
    hparams: dict = field(default_factory=dict)
    modalities: list[str] | None = None          # None: all modalities of the benchmark
    encoders: dict[str, dict] | None = None      # None: the preset below
    encoder_preset: str = "cpu"
    checkpoints: dict[str, str] = field(default_factory=dict)  # modality -> pretrained weights file
    cache_trunk: int = 0                          # K > 0: cache K augmented trunk outputs per clip
    fusion: str = "concat"
    fusion_kwargs: dict = field(default_factory=dict)
    head_hidden: int = 0
    head_dropout: float = 0.0
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    amp: bool = True                              # bf16 autocast on CUDA; ignored on CPU
    num_workers: int = 0
    eval_batch_size: int = 128
    trace: bool = False                           # keep per-step strategy logs (rho, sigma, ...)

    def __post_init__(self):
        for name, kinds in (("target", str), ("benchmark", str), ("method", str), ("encoder_preset", str),
                            ("fusion", str), ("device", str), ("benchmark_kwargs", dict), ("hparams", dict),
                            ("fusion_kwargs", dict), ("checkpoints", dict), ("amp", bool), ("trace", bool),
                            ("modalities", (list, tuple, type(None))), ("encoders", (dict, type(None)))):
            if not isinstance(getattr(self, name), kinds):
                expected = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
                raise TypeError(f"RunConfig.{name} must be {expected}, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63 - 1:
            raise ValueError(f"RunConfig.seed must be an int in [0, 2**63 - 1), got {self.seed!r}")
        if self.modalities is not None and (not self.modalities
                                            or not all(isinstance(m, str) and m for m in self.modalities)):
            raise ValueError(f"RunConfig.modalities must be None or a non-empty list of names, got {self.modalities!r}")
        checks = {"epochs": (self.epochs, 1), "batch_size": (self.batch_size, 1), "cache_trunk": (self.cache_trunk, 0),
                  "eval_batch_size": (self.eval_batch_size, 1), "num_workers": (self.num_workers, 0)}
        for name, (value, low) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"RunConfig.{name} must be an int >= {low}, got {value!r}")
        for name in ("lr", "weight_decay", "head_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"RunConfig.{name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """A short hash of the settings that change results (not device or workers)."""
        d = self.to_dict()
        for k in ("device", "num_workers", "eval_batch_size"):
            d.pop(k)
        for k in ("checkpoints", "cache_trunk"):  # added later: unset, they keep older runs' ids
            if not d[k]:
                d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU) or a torch device name; a ValueError names a bad one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device name; expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine (use cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain types (loadable with weights_only)."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "keys": torch.tensor(keys, dtype=torch.int64), "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["keys"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"].cpu())  # RNG states are CPU tensors, whatever map_location did
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: MultimodalModel, loader, device: torch.device, amp: bool = True) -> dict:
    """Accuracy of the fused prediction and of each modality's branch (argmax of its logit share)."""
    model.eval()
    correct = {"acc": 0}
    correct.update({f"acc_{m}": 0 for m in model.modalities})
    loss, n = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, amp):
            out = model(batch.inputs)
        loss += torch.nn.functional.cross_entropy(out.logits.float(), batch.label, reduction="sum").item()
        correct["acc"] += (out.logits.argmax(1) == batch.label).sum().item()
        for m, s in out.shares.items():
            correct[f"acc_{m}"] += (s.argmax(1) == batch.label).sum().item()
        n += len(batch)
    if n == 0:
        raise ValueError("evaluation set is empty")
    return {**{k: 100.0 * v / n for k, v in correct.items()}, "loss": loss / n, "n": n}


def build_run(cfg: RunConfig, split: DGSplit | None = None, benchmark=None):
    """Benchmark split, model and method of a run, constructed deterministically from the seed."""
    bench = (benchmark if benchmark is not None
             else benchmark_for_target(cfg.benchmark, cfg.target, **cfg.benchmark_kwargs))
    split = split if split is not None else make_split(bench, cfg.target)
    mods = list(cfg.modalities or bench.modalities)
    unknown = [m for m in mods if m not in bench.modalities]
    if unknown:
        raise ValueError(f"RunConfig.modalities has {unknown}, not in benchmark {bench.name!r} "
                         f"(modalities {list(bench.modalities)})")
    encoders = cfg.encoders if cfg.encoders is not None else preset_encoders(cfg.encoder_preset, mods)
    missing = [m for m in mods if not isinstance(encoders.get(m), dict)]
    if missing:
        raise ValueError(f"RunConfig.encoders (CLI: --encoders) has no encoder spec (a dict) for modality(ies) "
                         f"{missing}; "
                         f"it has {sorted(encoders)}, the run uses {mods}")
    encoders = {m: encoders[m] for m in mods}
    stray = sorted(set(cfg.checkpoints) - set(mods))
    if stray:
        raise ValueError(f"checkpoints given for modalities {stray} that this run lacks; it has {mods}")
    encoders = {m: {**e, "weights": cfg.checkpoints[m]} if m in cfg.checkpoints else e for m, e in encoders.items()}
    seed_everything(cfg.seed)
    model = build_model(bench.input_shapes(), encoders, bench.num_classes, cfg.fusion, cfg.fusion_kwargs,
                        cfg.head_hidden, cfg.head_dropout)
    method = build_method(cfg.method, model, len(split.sources), cfg.hparams)
    return bench, split, method


def trunk_cache_dir(checkpoint: Path | None) -> Path:
    """Where ``cache_trunk`` stores trunk outputs: beside the run checkpoints, else ``.cache/trunk``."""
    return Path(checkpoint).parent / "trunk_cache" if checkpoint is not None else Path(".cache") / "trunk"


def _git_commit() -> str:
    """Short HEAD commit of the checkout, with ``+dirty`` if the library's code differs from it."""
    try:
        root = Path(__file__).resolve().parents[1]
        run = lambda *args: subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)  # noqa: E731
        commit = run("rev-parse", "--short", "HEAD").stdout.strip()
        if not commit:
            return "unknown"
        return commit + ("+dirty" if run("diff", "--quiet", "HEAD", "--", "mmdg").returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": str(device), "device_name": name, "torch": torch.__version__, "mmdg": __version__,
            "commit": _git_commit(), "code": code_version.current(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "threads": torch.get_num_threads()}


def select(epochs: list[dict], modalities: list[str]) -> dict:
    """Target accuracy at the best source-validation epoch (later epoch wins ties) and the oracle."""
    best = max(range(len(epochs)), key=lambda i: (epochs[i]["val"]["acc"], i))
    oracle = max(range(len(epochs)), key=lambda i: (epochs[i]["test"]["acc"], i))
    e, o = epochs[best], epochs[oracle]
    final = {"selected_epoch": e["epoch"], "val_acc": e["val"]["acc"], "test_acc": e["test"]["acc"],
             "oracle_epoch": o["epoch"], "oracle_test_acc": o["test"]["acc"],
             "last_test_acc": epochs[-1]["test"]["acc"]}
    for m in modalities:
        final[f"val_acc_{m}"] = e["val"][f"acc_{m}"]
        final[f"test_acc_{m}"] = e["test"][f"acc_{m}"]
    return final


def _mean_logs(acc: dict[str, torch.Tensor], steps: int | dict[str, int]) -> dict[str, float]:
    """Epoch means; ``steps`` is the step count, or per key the number of steps that logged it
    (a strategy may log only every few steps, e.g. GMP's ``gmp_log_every``)."""
    return {k: (v / (steps[k] if isinstance(steps, dict) else steps)).item() for k, v in acc.items()}


def _stack_trace(trace: list[dict[str, torch.Tensor]]) -> dict[str, list]:
    """Per-step strategy logs as lists per key, with the step indices that logged them (``_step``)."""
    logged = [(i, s) for i, s in enumerate(trace) if s]
    if not logged:
        return {}
    keys = list(dict.fromkeys(k for _, s in logged for k in s))
    out: dict[str, list] = {"_step": [i for i, _ in logged]}
    for k in keys:
        out[k] = [s[k].tolist() if k in s else float("nan") for _, s in logged]
    return out


class Diverged(RuntimeError):
    """A loss, gradient or metric that is not finite; ``record`` is the run's record (status ``diverged``)."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


def _not_finite(epoch: int, step: int | None, what: str, value) -> dict:
    where = f"epoch {epoch}" + (f" step {step}" if step is not None else "")
    return {"epoch": epoch, "step": step, "what": what, "value": str(value),
            "message": f"run diverged at {where}: {what} is {value}"}


def _check_step(terms, named_params, epoch: int, step: int, after_backward: bool) -> dict | None:
    """None if every loss term (or, ``after_backward``, every gradient) is finite, else what is not."""
    if not after_backward:
        losses = torch.stack([t.loss.detach().float().reshape(()) for t in terms])
        if bool(torch.isfinite(losses).all()):
            return None
        bad = next(i for i in range(len(terms)) if not torch.isfinite(losses[i]))
        return _not_finite(epoch, step, f"loss term {terms[bad].name!r}", losses[bad].item())
    grads = [p.grad.detach() for _, p in named_params if p.grad is not None]
    if not grads or bool(torch.isfinite(torch.stack([g.abs().amax().float() for g in grads])).all()):
        return None
    name = next(n for n, p in named_params if p.grad is not None and not torch.isfinite(p.grad).all())
    return _not_finite(epoch, step, f"the gradient of {name}", "not finite")


def _check_epoch(row: dict, epoch: int) -> dict | None:
    for part in ("train", "val", "test"):
        for k, v in row[part].items():
            if (part != "train" or k.startswith("loss_")) and isinstance(v, float) and not math.isfinite(v):
                return _not_finite(epoch, None, f"{part} {k}", v)
    return None


def _load_checkpoint(path: Path, device: torch.device) -> dict | None:
    """The checkpoint's state, or None after moving an unreadable one aside (never unpickles objects)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError:
        raise
    except Exception as e:  # truncated, random bytes, or a pickle holding objects
        why = ("it holds Python objects other than tensors and plain types, which are never unpickled"
               if isinstance(e, pickle.UnpicklingError) else f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
        move_aside(path, f"unreadable checkpoint ({why}); the run restarts from epoch 0")
        return None
    keys = {"run_id", "epoch", "history", "method", "optimizer", "rng"}
    if not isinstance(state, dict) or not keys <= set(state):
        move_aside(path, f"not a run checkpoint (expected the keys {sorted(keys)}); the run restarts from epoch 0")
        return None
    return state


def _check_batch_norm(cfg: RunConfig, method: Method) -> None:
    """The objectives' projector heads normalise (N, C) features: a batch of one cannot be normalised."""
    norms = [f"objectives.{n}" for n, m in method.objectives.named_modules() if isinstance(m, torch.nn.BatchNorm1d)]
    if cfg.batch_size < 2 and norms:
        raise ValueError(f"batch_size={cfg.batch_size}: method {cfg.method!r} has BatchNorm1d layers in its losses "
                         f"({norms[0]}{', ...' if len(norms) > 1 else ''}), which cannot normalise a training batch "
                         f"of one sample; use batch_size >= 2")


def _loaders(cfg: RunConfig, split: DGSplit, method: Method, pin: bool):
    """The training loader (the method's sampler) and the source-validation and target-test loaders."""
    train_loader = make_train_loader(split.train, cfg.batch_size, cfg.seed, method.train_options.get("sampler", "shuffle"),
                                     num_workers=cfg.num_workers, pin_memory=pin)
    if len(train_loader) == 0:
        raise ValueError(f"training set of {len(split.train)} samples gives no full batch of "
                         f"batch_size={cfg.batch_size}")
    val_loader = make_loader(split.val, cfg.eval_batch_size, num_workers=cfg.num_workers, pin_memory=pin)
    test_loader = make_loader(split.test, cfg.eval_batch_size, num_workers=cfg.num_workers, pin_memory=pin)
    return train_loader, val_loader, test_loader


def _resume(cfg: RunConfig, checkpoint: Path | None, device: torch.device, method: Method,
            optimizer) -> tuple[list[dict], int]:
    """``(history, first epoch)``: from the checkpoint if there is a readable one, else a fresh, seeded start."""
    state = _load_checkpoint(Path(checkpoint), device) if checkpoint is not None and Path(checkpoint).exists() else None
    if state is None:
        seed_everything(cfg.seed + 1)
        return [], 0
    if state["run_id"] != cfg.run_id():
        raise ValueError(f"checkpoint {checkpoint} belongs to run {state['run_id']}, not {cfg.run_id()}")
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return state["history"], state["epoch"] + 1


def _train_epoch(cfg: RunConfig, method: Method, optimizer, train_loader, epoch: int, device: torch.device,
                 pin: bool, bar=None) -> tuple[dict, list[dict], dict | None]:
    """One epoch of steps: ``(mean train logs, per-step strategy logs if cfg.trace, divergence or None)``."""
    named_params = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    method.train()
    train_loader.set_epoch(epoch)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    trace: list[dict[str, torch.Tensor]] = []
    for step, batch in enumerate(train_loader):
        batch = batch.to(device, non_blocking=pin)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, cfg.amp):
            _, terms = method.terms(batch)
        bad = _check_step(terms, named_params, epoch, step, after_backward=False)
        logs = method.backward(terms) if bad is None else {}
        bad = bad or _check_step(terms, named_params, epoch, step, after_backward=True)
        if bad is not None:
            return {}, trace, bad
        optimizer.step()
        step_logs = {f"loss_{t.name}": t.loss.detach() for t in terms}
        for t in terms:
            step_logs.update({k: v for k, v in t.logs.items()})
        step_logs.update(logs)
        for k, v in step_logs.items():
            v = v.detach().float()
            if v.dim() == 0:
                sums[k] = sums[k] + v if k in sums else v.clone()
                counts[k] = counts.get(k, 0) + 1
        if cfg.trace:
            trace.append({k: v.detach().float().cpu() for k, v in logs.items()})
        if bar is not None:
            bar.update(1)
    return _mean_logs(sums, counts), trace, None


def _epoch_hooks(cfg: RunConfig, method: Method, epoch: int, row: dict, history: list[dict], loaders,
                 device: torch.device, on_epoch_end=None) -> None:
    """What runs after an epoch's evaluation and adds to its ``row``: the missing-modality evaluation,
    the method's parts' ``epoch_end`` hooks, then the caller's ``on_epoch_end`` (RNG state kept)."""
    val_loader, test_loader = loaders
    missing_for_epoch(method, history, row, val_loader, test_loader, device, cfg.amp)  # issue 18
    for part in (method.strategy, *method.objectives):   # epoch hooks (Grad-Blending, OGM-GE's window)
        part.epoch_end(epoch, method, row, val_loader)
    if on_epoch_end is not None:
        rng = rng_state()
        on_epoch_end(epoch, method, row)
        set_rng_state(rng)


def _save_checkpoint(cfg: RunConfig, path: Path, epoch: int, history: list[dict], method: Method, optimizer) -> None:
    atomic_torch_save({"run_id": cfg.run_id(), "epoch": epoch, "history": history,
                       "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                       "rng": rng_state(), "config": cfg.to_dict()}, path)


def _record(cfg: RunConfig, split: DGSplit, bench, method: Method, history: list[dict], device) -> dict:
    """The complete run record: config, history, the selected epoch's results, environment."""
    record = {"config": cfg.to_dict(), "run_id": cfg.run_id(), "split": split.name,
              "epochs": history, "final": select(history, method.model.modalities),
              "env": environment(device), "complete": True}
    record["final"].update(flat_missing(history, record["final"]["selected_epoch"]))  # issue 18
    if callable(getattr(bench, "skipped_samples", None)):  # file-backed benchmarks: samples skipped for bad media
        record["skipped_samples"] = bench.skipped_samples()
    return record


def train(cfg: RunConfig, checkpoint: Path | None = None, progress: bool = True,
          benchmark=None, split: DGSplit | None = None, stop_after: int | None = None,
          keep_model: bool = False, on_epoch_end=None) -> dict:
    """Run ``cfg``; checkpoint to ``checkpoint`` after every epoch and resume from it if present.

    ``stop_after`` ends the run after that many epochs of this call (to test
    resuming).  Returns the run record; with ``keep_model`` the trained method is
    attached as ``record["_method"]`` (not serialised).  ``on_epoch_end(epoch, method, row)``,
    if given, is called after each epoch's evaluation, before the checkpoint; it may add
    JSON-ready entries to ``row`` (kept in the history) and runs with the RNG state saved
    and restored, so it does not change the training run (e.g. ``mmdg.diagnostics.FeatureTracker``).

    Raises :class:`Diverged` (with the record, status ``diverged``) when a loss term, a gradient or
    an epoch metric is not finite.  The checkpoint is loaded with ``weights_only=True``; one that
    cannot be (truncated, random bytes, a pickle of objects) is moved aside and the run restarts.
    """
    hparams = resolve(cfg.method, cfg.hparams)[2]  # fail fast on bad names before building data
    device = resolve_device(cfg.device)
    bench, split, method = build_run(cfg, split, benchmark)
    _check_batch_norm(cfg, method)
    if cfg.cache_trunk:
        from .trunk_cache import cached_split
        split = cached_split(split, bench, method.model, cfg, trunk_cache_dir(checkpoint), device)
    method.to(device)
    optimizer = make_optimizer(method.trainable_parameters(), cfg.lr, cfg.weight_decay,
                               method.train_options)  # Adam unless the method says
    pin = device.type == "cuda"
    train_loader, val_loader, test_loader = _loaders(cfg, split, method, pin)
    if distributed.active():  # torchrun: this rank's shard, gathered objectives, per-term gradient means
        train_loader = distributed.prepare(method, train_loader, cfg.batch_size)
    history, start = _resume(cfg, checkpoint, device, method, optimizer)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.epochs * len(train_loader), initial=start * len(train_loader),
                   desc=f"{cfg.method} -> {cfg.target} s{cfg.seed}", leave=False)

    def diverged(info: dict) -> Diverged:
        if bar is not None:
            bar.close()
        return Diverged(info["message"], {"config": cfg.to_dict(), "run_id": cfg.run_id(), "split": split.name,
                                          "epochs": history, "final": None, "env": environment(device),
                                          "complete": False, "status": "diverged", "diverged": info})

    done_now = 0
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        train_logs, trace, bad = _train_epoch(cfg, method, optimizer, train_loader, epoch, device, pin, bar)
        if bad is not None:
            raise diverged(bad)
        row = {"epoch": epoch, "train": train_logs,
               "val": evaluate(method.model, val_loader, device, cfg.amp),
               "test": evaluate(method.model, test_loader, device, cfg.amp),
               "seconds": time.time() - t0}
        if (bad := _check_epoch(row, epoch)) is not None:
            raise diverged(bad)
        if cfg.trace:
            row["trace"] = _stack_trace(trace)
        _epoch_hooks(cfg, method, epoch, row, history, (val_loader, test_loader), device, on_epoch_end)
        history.append(row)
        if checkpoint is not None and distributed.is_main():
            _save_checkpoint(cfg, Path(checkpoint), epoch, history, method, optimizer)
        done_now += 1
        if stop_after is not None and done_now >= stop_after and epoch + 1 < cfg.epochs:
            if bar is not None:
                bar.close()
            return {"config": cfg.to_dict(), "run_id": cfg.run_id(), "epochs": history, "final": None,
                    "complete": False}
    if bar is not None:
        bar.close()
    record = _record(cfg, split, bench, method, history, device)
    record["hparams"] = hparams  # the method's full resolved set, for tables that filter on columns
    if keep_model:
        record["_method"] = method
    return record
