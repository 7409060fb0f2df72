"""Frozen-trunk feature cache (``RunConfig.cache_trunk = K``, CLI ``--cache-trunk K``); off by default.

With the papers' encoders frozen to layer3, the forward pass through the trunk dominates a
training step, and its output depends only on the clip and its augmentation draw.  So, once per
run configuration, :func:`cached_split` runs every encoder's frozen trunk on

- K augmented views of each source-train clip (independent draws of temporal offset,
  RandomResizedCrop box, flip and audio noise/mask; the seed of every view and its scalar draws
  are recorded in ``views.jsonl``), and
- the one deterministic view of each validation and target clip,

and stores the outputs as float16, memory-mapped ``.npy`` arrays, one folder per domain and split
(``<root>/<key>/<domain>/<split>/<modality>.npy``, shape ``(K, N, D)``).  Training then runs only
layer4 and the heads; each time a train clip is drawn it gets one of its K views, uniformly at
random from the trainer's seeded generator (so a different view most epochs).

What changes (stated): augmentation is limited to K draws per clip instead of a fresh one per
epoch, and the trunk outputs are rounded to float16.  Every encoder must have a frozen trunk
(:class:`mmdg.models.split.TrunkSplit`); the key hashes the benchmark settings, domain, split, K,
seed and the trunk weights, so a changed checkpoint or clip setting never reuses stale features,
while the runs of a sweep that differ only in method share one cache (it lives beside the run
checkpoints, ``<results>/_checkpoints/trunk_cache/``, and is kept when they are deleted).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .data.base import Batch, TensorDataset, collate, relabel_and_concat
from .data.protocol import DGSplit
from .data.video_datasets import ClipDataset

DTYPE = np.float16


class DrawLog:
    """A numpy Generator that records its scalar (and small-array) draws, for ``views.jsonl``."""

    def __init__(self, seed: int):
        self.rng, self.draws = np.random.default_rng(seed), []

    def _keep(self, v):
        a = np.asarray(v)
        self.draws.append(a.tolist() if a.size <= 16 else f"array{tuple(a.shape)}")
        return v

    def integers(self, *a, **k):
        return self._keep(self.rng.integers(*a, **k))

    def uniform(self, *a, **k):
        return self._keep(self.rng.uniform(*a, **k))

    def random(self, *a, **k):
        return self._keep(self.rng.random(*a, **k))


def _trunk_digest(model) -> str:
    h = hashlib.sha256()
    for m in model.modalities:
        enc = model.encoders[m]
        h.update(f"{m}:{type(enc).__name__}:{getattr(enc, 'name', '')}".encode())
        for p in enc.trunk_parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _check_encoders(model) -> None:
    bad = [f"{m} ({type(model.encoders[m]).__name__})" for m in model.modalities
           if not (hasattr(model.encoders[m], "trunk_is_frozen") and model.encoders[m].trunk_is_frozen())]
    if bad:
        raise ValueError(f"cache_trunk needs every encoder to have a frozen trunk (e.g. --encoder-preset paper, "
                         f"or freeze_until='layer3'); these have none: {bad}")


def _sample(ds: Dataset, i: int, seed: int, train: bool) -> tuple[dict, list]:
    """Sample ``i`` of ``ds`` with its augmentation drawn from ``seed``; returns (sample, draws)."""
    log = DrawLog(seed) if train else None
    if isinstance(ds, ClipDataset) and train:
        ds._rng = lambda: log   # this dataset object is ours (built for the cache); route its draws here
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sample = ds[i]
    return sample, (log.draws if log is not None else [])


@torch.no_grad()
def _trunk_rows(model, samples: list[dict], device) -> dict[str, tuple[np.ndarray, tuple]]:
    batch: Batch = collate(samples).to(device)
    out = {}
    for m in model.modalities:
        parts = model.encoders[m].forward_trunk(batch.inputs[m])
        rows = torch.cat([p.float().flatten(1) for p in parts], dim=1)
        out[m] = (rows.cpu().numpy().astype(DTYPE), tuple(tuple(p.shape[1:]) for p in parts))
    return out


def build_part(ds: Dataset, folder: Path, model, views: int, train: bool, seed: int, device,
               batch_size: int = 8) -> Path:
    """Write the trunk outputs of ``views`` views of every sample of ``ds`` into ``folder`` (atomically)."""
    if (folder / "meta.json").exists():
        return folder
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(ds)
    arrays, shapes, labels, log = {}, {}, np.zeros(n, dtype=np.int64), []
    for k in range(views):
        for start in range(0, n, batch_size):
            samples = []
            for i in range(start, min(n, start + batch_size)):
                s = int(np.random.SeedSequence([seed, i, k]).generate_state(1)[0])
                sample, draws = _sample(ds, i, s, train)
                samples.append(sample)
                labels[i] = sample["label"]
                log.append({"clip": i, "view": k, "seed": s, "draws": draws})
            for m, (rows, part_shapes) in _trunk_rows(model, samples, device).items():
                if m not in arrays:
                    arrays[m] = np.lib.format.open_memmap(tmp / f"{m}.npy", mode="w+", dtype=DTYPE,
                                                          shape=(views, n, rows.shape[1]))
                    shapes[m] = part_shapes
                arrays[m][k, start:start + len(rows)] = rows
    for a in arrays.values():
        a.flush()
    np.save(tmp / "labels.npy", labels)
    (tmp / "views.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (tmp / "meta.json").write_text(json.dumps({"views": views, "n": n, "train": train,
                                               "shapes": {m: [list(s) for s in v] for m, v in shapes.items()}}))
    try:
        tmp.rename(folder)
    except OSError:            # another process finished the same part first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class CachedClips(Dataset):
    """Memory-mapped trunk outputs of one domain and split; train parts pick one of their K views."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.labels = np.load(self.folder / "labels.npy")
        self._arrays = None

    def shapes(self) -> dict[str, tuple[tuple[int, ...], ...]]:
        return {m: tuple(tuple(s) for s in v) for m, v in self.meta["shapes"].items()}

    def __len__(self) -> int:
        return int(self.meta["n"])

    def __getitem__(self, i: int) -> dict:
        if self._arrays is None:  # opened lazily, so DataLoader workers map the files themselves
            self._arrays = {m: np.load(self.folder / f"{m}.npy", mmap_mode="r") for m in self.meta["shapes"]}
        k = int(torch.randint(self.meta["views"], ())) if self.meta["views"] > 1 else 0
        return {"inputs": {m: torch.from_numpy(np.asarray(a[k, i], dtype=np.float32)) for m, a in self._arrays.items()},
                "label": int(self.labels[i]), "domain": 0}


def cache_key(cfg, bench, model, views: int) -> str:
    d = {"benchmark": cfg.benchmark, "kwargs": cfg.benchmark_kwargs, "modalities": list(model.modalities),
         "views": views, "seed": cfg.seed, "trunk": _trunk_digest(model),
         "settings": str(getattr(bench, "settings", ""))}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_split(split: DGSplit, bench, model, cfg, root: Path, device="cpu") -> DGSplit:
    """``split`` with every dataset replaced by cached trunk outputs (built on first use)."""
    if any(isinstance(d, TensorDataset) for d in (split.train, split.val, split.test)):
        raise ValueError(f"cache_trunk is for clip benchmarks (epic_kitchens, hac); {cfg.benchmark!r} has "
                         "tensor datasets without augmentation")
    _check_encoders(model)
    model.to(device)
    base = Path(root) / cache_key(cfg, bench, model, cfg.cache_trunk)

    def part(domain: str, name: str, ds: Dataset, views: int, train: bool) -> CachedClips:
        return CachedClips(build_part(ds, base / domain / name, model, views, train, cfg.seed, device))

    train = [part(s, "train", bench.dataset(s, "train"), cfg.cache_trunk, True) for s in split.sources]
    val = [part(s, "test", bench.dataset(s, "test"), 1, False) for s in split.sources]
    test = [part(split.target, "target", bench.target_dataset(split.target), 1, False)]
    for p in (*train, *val, *test):
        for m, shapes in p.shapes().items():
            model.encoders[m].cached_shapes[sum(int(np.prod(s)) for s in shapes)] = shapes
    ids = list(range(len(split.sources)))
    return DGSplit(split.sources, split.target, relabel_and_concat(train, ids), relabel_and_concat(val, ids),
                   relabel_and_concat(test, [-1]))
