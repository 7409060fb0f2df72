"""The multimodal model: one encoder per modality, a fusion, a classifier with logit shares."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .encoders import build_encoder
from .fusion import build_fusion
from .heads import SharesHead


@dataclass
class ModelOutput:
    feats: dict[str, torch.Tensor]          # encoder features z^m, (N, d_m)
    logits: torch.Tensor                    # fused class logits, (N, K)
    shares: dict[str, torch.Tensor]         # modality shares of the logits, (N, K) each
    extra: dict = field(default_factory=dict)


class MultimodalModel(nn.Module):
    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, classifier: SharesHead):
        super().__init__()
        self.modalities = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.classifier = classifier

    def encode(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise KeyError(f"batch lacks modalities {missing}; it has {sorted(inputs)}")
        return {m: self.encoders[m](inputs[m]) for m in self.modalities}

    def classify(self, feats: dict[str, torch.Tensor], shares: bool = True) -> tuple[torch.Tensor, dict]:
        return self.classifier(self.fusion(feats), shares=shares)

    def forward(self, inputs: dict[str, torch.Tensor], shares: bool = True) -> ModelOutput:
        feats = self.encode(inputs)
        logits, sh = self.classify(feats, shares=shares)
        return ModelOutput(feats, logits, sh)

    def encoder_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters of each modality's encoder (theta^m)."""
        return {m: [p for p in self.encoders[m].parameters() if p.requires_grad] for m in self.modalities}


def build_model(input_shapes: dict[str, tuple[int, ...]], encoders: dict[str, dict], num_classes: int,
                fusion: str = "concat", fusion_kwargs: dict | None = None,
                head_hidden: int = 0, head_dropout: float = 0.0) -> MultimodalModel:
    """``encoders`` maps modality -> {"name": encoder name, **encoder kwargs}."""
    unknown = sorted(set(encoders) - set(input_shapes))
    if unknown:
        raise ValueError(f"encoders given for modalities {unknown} that the benchmark lacks; "
                         f"it has {sorted(input_shapes)}")
    encs = {}
    for m, spec in encoders.items():
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"encoder spec for modality {m!r} needs a 'name'; got {spec}")
        encs[m] = build_encoder(spec.pop("name"), input_shapes[m], **spec)
    fus = build_fusion(fusion, {m: e.out_dim for m, e in encs.items()}, **(fusion_kwargs or {}))
    head = SharesHead(fus.out_dim, num_classes, hidden=head_hidden, dropout=head_dropout)
    return MultimodalModel(encs, fus, head)
