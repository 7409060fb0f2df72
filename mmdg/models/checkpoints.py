"""Reading pretrained checkpoints safely: only tensors and plain containers are unpickled.

- :func:`safe_load`: ``torch.load(weights_only=True)``; a file whose pickle needs arbitrary Python
  objects is refused (unpickling those runs code named by the file), as is a file that is not a
  torch checkpoint at all.
- :func:`mmaction_backbone_state`: the ``backbone.*`` tensors of an mmaction2 recognizer checkpoint
  (``{"state_dict": {"backbone.…", "cls_head.…"}, "meta": …}``), prefix removed; the ``cls_head.*``
  classifier (Kinetics-400 classes) is dropped.
- :func:`load_strict`: copy a state dict into a module, failing on any missing, unexpected or
  mis-shaped key with the first few of each listed.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

MMACTION_PREFIXES = ("backbone.", "cls_head.")


def listing(items: list[str], limit: int = 5) -> str:
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def safe_load(path: str | Path, who: str):
    """The object in the local file ``path``, unpickled with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{who}: checkpoint file not found: {path} (weights are never downloaded)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), None)
        if detail is None:
            raise ValueError(f"{who}: {path} is not a PyTorch checkpoint (UnpicklingError: "
                             f"{lines[0] if lines else 'unreadable'})") from None
        raise ValueError(
            f"{who}: refusing to load {path}: its pickle holds Python objects beyond tensors and plain "
            f"containers ({detail}). Loading it would need torch.load(weights_only=False), which runs code "
            "named inside the file. If you trust the file, re-save just its tensors, e.g. "
            "torch.save({'state_dict': torch.load(p, weights_only=False)['state_dict']}, new_path), "
            "and pass new_path.") from None
    except Exception as e:  # noqa: BLE001  (a truncated or foreign file fails in many ways inside the unpickler)
        first = str(e).strip().splitlines()
        raise ValueError(f"{who}: {path} is not a PyTorch checkpoint ({type(e).__name__}: "
                         f"{first[0] if first else 'unreadable'})") from None


def mmaction_backbone_state(obj, path: str | Path, who: str) -> dict[str, torch.Tensor]:
    """The backbone tensors of an mmaction2 checkpoint object, without the ``backbone.`` prefix."""
    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    keys = [str(k) for k in sd] if isinstance(sd, dict) else []
    if not keys or not any(k.startswith("backbone.") for k in keys):
        found = (f"top-level entries {listing([str(k) for k in obj])}" if isinstance(obj, dict)
                 else f"a {type(obj).__name__}")
        if keys:
            found += f"; state_dict keys like {listing(keys, 3)}"
        raise ValueError(f"{who}: {path} is not an mmaction2 checkpoint: expected a dict whose 'state_dict' "
                         f"has 'backbone.*' (and 'cls_head.*') keys; found {found}")
    other = [k for k in keys if not k.startswith(MMACTION_PREFIXES)]
    if other:
        raise ValueError(f"{who}: {path}: state_dict keys outside backbone./cls_head.: {listing(other)}")
    return {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}


def load_strict(module: nn.Module, sd: dict, path: str | Path, who: str) -> None:
    """``module.load_state_dict(sd)`` with every mismatch named (``num_batches_tracked`` may be absent)."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in sd.items()
              if k in own and (not isinstance(v, torch.Tensor) or v.shape != own[k].shape)]
    problems = [f"{label} ({len(keys)}): {listing(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)) if keys]
    if problems:
        raise ValueError(f"{who}: {path} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(sd, strict=False)
