"""Missing-modality robustness: target accuracy with one modality's feature replaced.

For each modality ``m`` of the model, the target set is classified with ``z^m`` (the
encoder feature, the input of the fusion) replaced by

* ``zero``: zeros;
* ``source_mean``: the mean of ``z^m`` over the source validation split (the selected
  model in eval mode);
* ``translation`` (methods whose objectives learn a cross-modal translation: SimMMDG's
  ``translation``, MOOSA's ``masked_translation``): the translators' prediction from the
  other modalities (their mean for M > 2), rescaled to the mean source norm of ``z^m``:
  the translation losses compare L2-normalised vectors, so only the direction is learnt.

The replacement is at the feature level, where SimMMDG's translation operates; the other
modalities' features are untouched.  The trainer calls :func:`missing_for_epoch` after each
epoch whose source-validation accuracy ties or beats every earlier epoch, so the results of
the epoch that :func:`mmdg.train.select` picks (the best, later epoch on ties) are at hand at
the end without keeping any weights; :func:`flat_missing` puts them in the record's ``final``
as ``missing_<fill>_<modality>`` (accuracy in %), next to ``missing_full`` (no modality missing).
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

FILLS = ("zero", "source_mean", "translation")


def translator_of(method):
    """The first objective of ``method`` with a ``translate(feats, missing)`` method, or None."""
    return next((o for o in getattr(method, "objectives", []) if callable(getattr(o, "translate", None))), None)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _preserved(method):
    """Eval mode and untouched RNG streams inside; the previous modes and RNG state after."""
    modes = {mod: mod.training for mod in method.modules()}
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
             torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    method.eval()
    try:
        yield
    finally:
        for mod, training in modes.items():
            mod.training = training
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        if state[3] is not None:
            torch.cuda.set_rng_state_all(state[3])


def _source_stats(model, loader, device, amp) -> tuple[dict, dict]:
    sums, norms, n = {}, {}, 0
    for batch in loader:
        batch = batch.to(device)
        with _autocast(device, amp):
            feats = model.encode(batch.inputs)
        for m, z in feats.items():
            z = z.double()
            sums[m] = sums.get(m, 0) + z.sum(0)
            norms[m] = norms.get(m, 0) + z.norm(dim=1).sum()
        n += len(batch)
    if n == 0:
        raise ValueError("missing-modality evaluation: the source set is empty")
    return {m: s / n for m, s in sums.items()}, {m: v / n for m, v in norms.items()}


@torch.no_grad()
def missing_modality_eval(method, source_loader, target_loader, device, amp: bool = True) -> dict:
    """``{"full": acc, "zero": {m: acc}, "source_mean": {m: acc}[, "translation": {m: acc}], "n": N}``.

    ``method`` has ``.model`` (a :class:`~mmdg.models.model.MultimodalModel`) and ``.objectives``;
    accuracies in %.  Models with one modality get ``{}``.
    """
    model = method.model
    if len(model.modalities) < 2:
        return {}
    device = torch.device(device)
    trans = translator_of(method)
    fills = [f for f in FILLS if f != "translation" or trans is not None]
    with _preserved(method):
        mean, norm = _source_stats(model, source_loader, device, amp)
        correct = {f: {m: 0 for m in model.modalities} for f in fills}
        full, n = 0, 0
        for batch in target_loader:
            batch = batch.to(device)
            with _autocast(device, amp):
                feats = model.encode(batch.inputs)
                full += (model.classify(feats, shares=False)[0].argmax(1) == batch.label).sum().item()
                for m in model.modalities:
                    z = feats[m]
                    others = {k: v for k, v in feats.items() if k != m}
                    for f in fills:
                        if f == "zero":
                            fill = torch.zeros_like(z)
                        elif f == "source_mean":
                            fill = mean[m].to(z.dtype).expand_as(z)
                        else:
                            t = trans.translate(others, m).float()
                            fill = (t * (norm[m].float() / t.norm(dim=1, keepdim=True).clamp_min(1e-12))).to(z.dtype)
                        logits = model.classify({**feats, m: fill}, shares=False)[0]
                        correct[f][m] += (logits.argmax(1) == batch.label).sum().item()
            n += len(batch)
    if n == 0:
        raise ValueError("missing-modality evaluation: the target set is empty")
    out = {f: {m: 100.0 * c / n for m, c in per.items()} for f, per in correct.items()}
    return {"full": 100.0 * full / n, **out, "n": n}


def missing_for_epoch(method, history: list[dict], row: dict, source_loader, target_loader, device,
                      amp: bool = True) -> None:
    """Set ``row["missing"]`` if ``row``'s source-validation accuracy ties or beats all of ``history``."""
    if all(row["val"]["acc"] >= h["val"]["acc"] for h in history):
        row["missing"] = missing_modality_eval(method, source_loader, target_loader, device, amp)


def flat_missing(history: list[dict], selected_epoch: int) -> dict[str, float]:
    """``{"missing_full": .., "missing_<fill>_<m>": ..}`` of the selected epoch ({} if not evaluated)."""
    res = next((h.get("missing") for h in history if h["epoch"] == selected_epoch), None)
    if not res:
        return {}
    flat = {"missing_full": res["full"]}
    for f in FILLS:
        for m, acc in res.get(f, {}).items():
            flat[f"missing_{f}_{m}"] = acc
    return flat
