"""OGM-GE: On-the-fly Gradient Modulation with Generalisation Enhancement (Peng et al., CVPR 2022).

Per batch, from the fused classifier's per-modality logit shares (``Term.confidence`` of the
``ce`` term): ``s_m = sum_i softmax(share_m)_i[y_i]``, ``rho_m = s_m / s_other`` (mean of the
other modalities for M > 2); the dominant modality (rho > 1) gets
``k = 1 - tanh(alpha (rho - 1))``, the others k = 1.  Its encoder gradient is multiplied by
k and, with GE, Gaussian noise N(0, std(grad)) is added per parameter tensor.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import check_number
from ._grads import class_confidence, total_loss
from .base import STRATEGIES, Strategy
from .ratios import discrepancy_ratios, suppression


def ogm_coefficients(q_sums: torch.Tensor, alpha: float, literal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(rho, k) from per-modality confidence sums (M,): k = 1 - tanh(alpha (rho - 1)) where rho > 1.

    ``literal``: 1 - tanh(alpha rho) instead, the released code's formula.
    """
    rho, _ = discrepancy_ratios(q_sums, q_sums)
    return rho, suppression(rho, alpha, ogm_form=not literal)


@STRATEGIES.register("ogm_ge")
class OGMGE(Strategy, nn.Module):
    """OGM-GE as a gradient strategy: one backward of all terms, then the encoders' gradients
    are modulated.

    * The gradient modulated is that of the *total* loss (all terms), as in the reference,
      where the loss is the fused CE alone: OGM-GE scales the whole encoder gradient.  The
      ratio comes from the fused CE term's confidences (the term named ``ce``, else the first
      ``cls`` term with confidences).
    * Which parameters: by default every trainable encoder parameter (theta^m).  The reference
      modulates only 4-D parameters (the conv kernels of its 2-D ResNets; its authors answer
      that fc layers of a backbone may be modulated too); ``conv_only=True`` restricts it to
      parameters with >= 4 dimensions (2-D and 3-D conv kernels), which makes OGM-GE a no-op
      on encoders without convolutions (the MLP encoders).  Heads, fusion and objectives'
      modules get the plain summed gradient.
    * Coefficient: ``1 - tanh(alpha (rho - 1))`` (continuous at rho = 1).  The released code,
      and its comment quoting Eq. 10, write ``1 - tanh(alpha rho)``; ``literal=True`` uses that.
    * GE: noise ``N(0, std(g) + 1e-8)`` is added to every modulated tensor of every modality
      (dominant or not), with the std of the already-scaled gradient, as the reference does.
      A one-element tensor gets std 0.  The noise comes from torch's global RNG, so runs stay
      deterministic under the trainer's seeding (and resume, which restores the RNG).
    * Epoch window: modulation (and noise) happen only while
      ``modulation_starts <= epoch <= modulation_ends``; outside it the step is the plain sum.
      The trainer tells the strategy the epoch through :meth:`epoch_end` (the epoch is saved in
      checkpoints).  Outside the trainer the epoch is 0.  (The reference's window test is
      written the wrong way round and never switches modulation off.)
    * M > 2 modalities: "other" is the mean of the others' sums (as GMP's generalisation).

    Cost: one backward pass (like ``sum``), plus elementwise work on the encoder gradients.
    Logs ``ogm_ge/rho_<m>`` and ``ogm_ge/k_<m>`` every step.
    """

    name = "ogm_ge"

    def __init__(self, alpha: float = 0.1, ge: bool = True, conv_only: bool = False,
                 modulation_starts: int = 0, modulation_ends: int = 50, literal: bool = False):
        nn.Module.__init__(self)
        self.alpha = check_number("OGM-GE", "alpha", alpha)
        for key, v in (("ge", ge), ("conv_only", conv_only), ("literal", literal)):
            if not isinstance(v, bool):
                raise ValueError(f"OGM-GE {key} must be a bool, got {v!r}")
        for key, v in (("modulation_starts", modulation_starts), ("modulation_ends", modulation_ends)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"OGM-GE {key} must be an int >= 0, got {v!r}")
        if modulation_ends < modulation_starts:
            raise ValueError(f"OGM-GE modulation_ends ({modulation_ends}) must be >= modulation_starts "
                             f"({modulation_starts})")
        self.ge, self.conv_only, self.literal = ge, conv_only, literal
        self.modulation_starts, self.modulation_ends = modulation_starts, modulation_ends
        self.epoch = 0

    # the current epoch travels with checkpoints
    def get_extra_state(self):
        return {"epoch": self.epoch}

    def set_extra_state(self, state):
        self.epoch = int(state["epoch"])

    def epoch_end(self, epoch, method, row, val_loader) -> None:
        self.epoch = epoch + 1

    @property
    def active(self) -> bool:
        return self.modulation_starts <= self.epoch <= self.modulation_ends

    def backward(self, terms, model, params):
        q = class_confidence(terms, "OGM-GE") if self.active else None
        total_loss(terms).backward()
        if q is None:
            return {}
        enc = model.encoder_parameters()
        mods = list(enc)
        missing = [m for m in mods if m not in q]
        if missing:
            raise KeyError(f"OGM-GE: no confidence for modalities {missing} (it has {sorted(q)})")
        dev = next((p.device for ps in enc.values() for p in ps), q[mods[0]].device)
        sums = torch.stack([q[m].detach().float().sum().to(dev) for m in mods])
        rho, k = ogm_coefficients(sums, self.alpha, self.literal)
        for i, m in enumerate(mods):
            for p in enc[m]:
                if p.grad is None or (self.conv_only and p.dim() < 4):
                    continue
                p.grad.mul_(k[i].to(p.grad.dtype))
                if self.ge:
                    std = p.grad.std() if p.grad.numel() > 1 else p.grad.new_zeros(())
                    p.grad.add_(torch.randn_like(p.grad) * (std + 1e-8))
        logs = {f"ogm_ge/rho_{m}": rho[i].detach() for i, m in enumerate(mods)}
        logs.update({f"ogm_ge/k_{m}": k[i].detach() for i, m in enumerate(mods)})
        return logs
