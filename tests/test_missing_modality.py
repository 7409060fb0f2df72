"""Missing-modality evaluation: a hand computation on a tiny linear model, and the trainer's record."""
import numpy as np
import pytest
import torch
from torch import nn

import mmdg.train as train_mod
from mmdg.data.base import TensorDataset, make_loader
from mmdg.evaluation import flat_missing, missing_modality_eval
from mmdg.models.fusion import ConcatFusion
from mmdg.models.heads import SharesHead
from mmdg.models.model import MultimodalModel
from mmdg.train import RunConfig, train

from conftest import MLP_ENCODERS


class Scale(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s, self.out_dim = s, 2

    def forward(self, x):
        return self.s * x


class Swap(nn.Module):
    """A 'translator' objective: predicts the missing modality as minus the other one."""

    def translate(self, feats, missing):
        (other,) = feats.values()
        return -other


class Holder(nn.Module):
    def __init__(self, model, objectives):
        super().__init__()
        self.model, self.objectives = model, nn.ModuleList(objectives)


W = np.array([[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, -1.0], [-1.0, -1.0, 1.0, 1.0]])
B = np.array([0.1, 0.0, -0.2])


def _model():
    model = MultimodalModel({"a": Scale(2.0), "b": Scale(1.0)}, ConcatFusion({"a": 2, "b": 2}), SharesHead(4, 3))
    with torch.no_grad():
        model.classifier.net.weight.copy_(torch.tensor(W, dtype=torch.float32))
        model.classifier.net.bias.copy_(torch.tensor(B, dtype=torch.float32))
    return model


def _data(seed, n):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorDataset({"a": a, "b": b}, y, torch.zeros(n, dtype=torch.long))


def test_missing_modality_eval_equals_a_hand_computation():
    src, tgt = _data(0, 10), _data(1, 13)
    res = missing_modality_eval(Holder(_model(), [Swap()]), make_loader(src, 4), make_loader(tgt, 5), "cpu")
    fa, fb = 2.0 * tgt.inputs["a"].double().numpy(), tgt.inputs["b"].double().numpy()
    sa, sb = 2.0 * src.inputs["a"].double().numpy(), src.inputs["b"].double().numpy()
    y = tgt.label.numpy()

    def acc(za, zb):
        return 100.0 * np.mean((np.concatenate([za, zb], 1) @ W.T + B).argmax(1) == y)

    def rescaled(t, s):   # the translation, scaled to the mean source norm of the missing modality
        return t * np.linalg.norm(s, axis=1).mean() / np.linalg.norm(t, axis=1, keepdims=True)

    assert res["n"] == 13 and res["full"] == pytest.approx(acc(fa, fb))
    assert res["zero"]["a"] == pytest.approx(acc(0 * fa, fb))
    assert res["zero"]["b"] == pytest.approx(acc(fa, 0 * fb))
    assert res["source_mean"]["a"] == pytest.approx(acc(np.broadcast_to(sa.mean(0), fa.shape), fb))
    assert res["source_mean"]["b"] == pytest.approx(acc(fa, np.broadcast_to(sb.mean(0), fb.shape)))
    assert res["translation"]["a"] == pytest.approx(acc(rescaled(-fb, sa), fb))
    assert res["translation"]["b"] == pytest.approx(acc(fa, rescaled(-fa, sb)))
    # the values differ between fills on this data (the test is not vacuous)
    assert len({res["zero"]["a"], res["source_mean"]["a"], res["translation"]["a"], res["full"]}) > 1
    # no translator: no translation entry
    assert "translation" not in missing_modality_eval(Holder(_model(), []), make_loader(src, 4),
                                                      make_loader(tgt, 5), "cpu")


def test_missing_modality_eval_restores_modes_and_rng():
    holder = Holder(_model(), [Swap()])
    holder.train()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    missing_modality_eval(holder, make_loader(_data(0, 6), 3), make_loader(_data(1, 6), 3), "cpu")
    assert holder.training and holder.model.training
    assert torch.equal(torch.get_rng_state(), before)


def _cfg(method, **hp):
    return RunConfig(target="d0", benchmark="toy", method=method, epochs=3, batch_size=16,
                     encoders=MLP_ENCODERS, hparams=hp)


def test_trainer_records_the_selected_epochs_missing_modality_results(monkeypatch):
    torch.set_num_threads(1)
    rec = train(_cfg("simmmdg", con_hidden=16, con_dim=8, trans_hidden=16), progress=False)
    f = rec["final"]
    # the evaluation's full-modality accuracy is the trainer's target accuracy at the selected epoch
    assert f["missing_full"] == pytest.approx(f["test_acc"])
    keys = {k for k in f if k.startswith("missing_") and k != "missing_full"}
    assert keys == {f"missing_{fill}_{m}" for fill in ("zero", "source_mean", "translation") for m in "ab"}
    assert all(0 <= f[k] <= 100 for k in keys)
    assert flat_missing(rec["epochs"], f["selected_epoch"]) == {k: f[k] for k in keys | {"missing_full"}}
    # evaluated only on epochs that tie or beat every earlier source-validation accuracy
    best = -1.0
    for e in rec["epochs"]:
        assert ("missing" in e) == (e["val"]["acc"] >= best)
        best = max(best, e["val"]["acc"])
    # ERM learns no translation; the hook does not change training (same history without it)
    erm = train(_cfg("erm"), progress=False)
    assert "missing_zero_a" in erm["final"] and "missing_translation_a" not in erm["final"]
    monkeypatch.setattr(train_mod, "missing_for_epoch", lambda *a, **k: None)
    bare = train(_cfg("erm"), progress=False)
    assert [e["test"] for e in bare["epochs"]] == [e["test"] for e in erm["epochs"]]
    assert [e["train"] for e in bare["epochs"]] == [e["train"] for e in erm["epochs"]]
    assert not any(k.startswith("missing_") for k in bare["final"])


def test_missing_table_averages_targets_then_seeds():
    import pandas as pd
    from mmdg.experiments.robustness import missing_table
    rows = []
    for seed, base in ((0, 10.0), (1, 20.0)):
        for target, shift in (("t0", 0.0), ("t1", 2.0)):
            rows.append({"method": "simmmdg", "seed": seed, "target": target, "missing_full": 90.0,
                         "missing_zero_a": base + shift, "missing_source_mean_a": 50.0,
                         "missing_translation_a": 60.0 + shift})
    rows.append({"method": "erm", "seed": 0, "target": "t0", "missing_full": 80.0, "missing_zero_a": 5.0,
                 "missing_source_mean_a": 40.0, "missing_translation_a": float("nan")})
    rows.append({"method": "old", "seed": 0, "target": "t0", "missing_full": float("nan")})
    table = missing_table(pd.DataFrame(rows))
    # per-seed target means 11 and 21: mean 16, sample std sqrt(50) = 7.07
    assert table.loc[("simmmdg", "a"), "zero-filled"] == "16.0\u00a0±\u00a07.1"
    assert table.loc[("simmmdg", "a"), "translated"] == "61.0\u00a0±\u00a00.0"
    assert table.loc[("simmmdg", "a"), "seeds"] == 2
    assert table.loc[("erm", "a"), "translated"] == "–" and table.loc[("erm", "a"), "source mean"] == "40.0"
    assert "old" not in table.index.get_level_values(0)
    with pytest.raises(KeyError, match="missing-modality"):
        missing_table(pd.DataFrame([{"method": "x", "seed": 0, "target": "t"}]))
