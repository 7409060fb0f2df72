"""Floating-point operations of a training step, counted by ``torch.utils.flop_counter``.

The counter adds up the FLOPs of matrix multiplications and convolutions (forward and backward;
elementwise ops, norms and the optimizer update are not counted) as the ops run.  On the
``meta`` device nothing is computed, so the papers' full-size models and clips can be counted on
any machine: :func:`paper_step_flops` builds them there.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .data.base import Batch
from .methods import build_method
from .models.model import build_model
from .models.presets import preset_encoders


def count_flops(fn, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def training_step_flops(method, batch: Batch) -> dict[str, int]:
    """FLOPs of one step (the method's forward terms and backward) and of its frozen trunks' forward."""
    step = count_flops(lambda: method.backward(method.terms(batch)[1]))
    trunk = 0
    for m in method.model.modalities:
        enc = method.model.encoders[m]
        if getattr(enc, "trunk_is_frozen", lambda: False)():
            trunk += count_flops(enc.forward_trunk, batch.inputs[m])
    return {"step": step, "trunk_forward": trunk, "tail_step": step - trunk}


def paper_step_flops(shapes: dict[str, tuple[int, ...]], num_classes: int, batch_size: int, method: str = "erm",
                     n_sources: int = 2, hparams: dict | None = None, preset: str = "paper") -> dict[str, int]:
    """:func:`training_step_flops` of ``method`` with the ``preset`` encoders on inputs ``shapes``, on meta."""
    with torch.device("meta"):
        model = build_model(shapes, preset_encoders(preset, list(shapes)), num_classes)
        model.train()
        m = build_method(method, model, n_sources, hparams or {})
        batch = Batch({k: torch.empty(batch_size, *s) for k, s in shapes.items()},
                      torch.zeros(batch_size, dtype=torch.long), torch.zeros(batch_size, dtype=torch.long))
        return training_step_flops(m, batch)


def paper_forward_flops(shapes: dict[str, tuple[int, ...]], num_classes: int, preset: str = "paper") -> dict[str, int]:
    """FLOPs of one sample's evaluation forward (the whole model, and the frozen trunks' part), on meta."""
    with torch.device("meta"):
        model = build_model(shapes, preset_encoders(preset, list(shapes)), num_classes)
        model.eval()
        x = {k: torch.empty(1, *s) for k, s in shapes.items()}
        with torch.no_grad():
            total = count_flops(model, x)
            trunk = sum(count_flops(model.encoders[m].forward_trunk, x[m]) for m in shapes
                        if getattr(model.encoders[m], "trunk_is_frozen", lambda: False)())
    return {"forward": total, "trunk_forward": trunk}
