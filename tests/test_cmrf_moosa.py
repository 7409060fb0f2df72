"""CMRF (SMA teacher, Beta-mixed teachers, distillation, weighted unimodal CE) and MOOSA
(entropy weighting, entropy minimisation, jigsaw, masked translation): references and runs."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmdg.data.base import Batch
from mmdg.methods import build_method, resolve
from mmdg.models.model import ModelOutput, build_model
from mmdg.objectives import Context, build_objective
from mmdg.objectives.cmrf import beta_halves, distill_loss, mix_pair, sma_update
from mmdg.objectives.simmmdg import supcon_loss, translation_loss
from mmdg.objectives.moosa import (entropy_min_loss, entropy_weighted_ce, jigsaw_batch, prediction_entropy,
                                   sample_permutations)
from mmdg.train import RunConfig, train

from conftest import MLP_ENCODERS

CTX = Context(["a", "b"], {"a": 4, "b": 4}, 3, 2)


def _np_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(1, keepdims=True))


# ---------------------------------------------------------------- CMRF: SMA teacher

def test_sma_update_is_the_equal_weight_running_mean_and_copies_integer_buffers():
    teacher, online = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([1.0, 4.0]))
        online.weight.copy_(torch.tensor([4.0, -2.0]))
        online.running_mean.copy_(torch.tensor([3.0, 3.0]))
    online.num_batches_tracked.fill_(7)
    sma_update(teacher, online, 2)                       # (2 t + o) / 3
    assert teacher.weight.tolist() == pytest.approx([2.0, 2.0])
    assert teacher.running_mean.tolist() == pytest.approx([1.0, 1.0])   # (2*0 + 3) / 3
    assert int(teacher.num_batches_tracked) == 7
    sma_update(teacher, online, 0)                       # a copy
    assert teacher.weight.tolist() == pytest.approx([4.0, -2.0])
    with pytest.raises(ValueError, match="count"):
        sma_update(teacher, online, -1)


def _toy_model():
    return build_model({"a": (4,), "b": (4,)}, {m: {"name": "mlp", "hidden": 8, "out_dim": 4} for m in "ab"}, 3)


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch({"a": torch.randn(n, 4, generator=g), "b": torch.randn(n, 4, generator=g)},
                 torch.arange(n) % 3, torch.arange(n) % 2)


def test_cmrf_teacher_follows_the_sma_schedule():
    """Copies up to sma_start, then the running mean of theta_start .. theta_s (hand-set weights)."""
    torch.manual_seed(0)
    model = _toy_model()
    ctx = Context(["a", "b"], {"a": 4, "b": 4}, 3, 2)
    obj = build_objective("cmrf_flatten", ctx, sma_start=1, dim=4, hidden=8)
    obj.bind(model, [obj])
    obj.train()
    lin = model.classifier.net
    values = [1.0, 2.0, 4.0, 9.0]
    seen = []
    for s, v in enumerate(values):
        with torch.no_grad():
            lin.bias.fill_(v)
        obj(model(_batch().inputs), _batch())
        seen.append(obj.teacher["model"].classifier.net.bias[0].item())
    # steps 0, 1: copies; step 2: mean(theta_1, theta_2); step 3: mean(theta_1..theta_3)
    assert seen == pytest.approx([1.0, 2.0, 3.0, 5.0])
    assert int(obj.step) == 4
    assert not any(p.requires_grad for p in obj.teacher.parameters())


def test_beta_halves_have_the_law_of_rejection_sampling():
    torch.manual_seed(0)
    hi = beta_halves(20000, 0.1, True, torch.zeros(1))
    lo = beta_halves(20000, 0.1, False, torch.zeros(1))
    assert hi.shape == (20000, 1) and bool((hi >= 0.5).all()) and bool((lo <= 0.5).all())
    rng = np.random.default_rng(0)
    draws = rng.beta(0.1, 0.1, 80000)
    ref_hi = draws[draws > 0.5][:20000]
    assert hi.mean().item() == pytest.approx(ref_hi.mean(), abs=0.01)
    assert lo.mean().item() == pytest.approx(1 - ref_hi.mean(), abs=0.01)
    with pytest.raises(ValueError, match="alpha"):
        beta_halves(3, 0.0, True, torch.zeros(1))


def test_mix_pair_and_distill_loss_by_hand():
    ta = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    tb = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    ma, mb = mix_pair(ta, tb, torch.tensor([[0.75]], dtype=torch.float64), torch.tensor([[0.25]], dtype=torch.float64))
    assert ma.tolist() == [[0.75, 0.25]] and mb.tolist() == [[0.25, 0.75]]
    # student a = (1, 0): distance to n(0.75, 0.25) = sqrt((1 - 3/sqrt10)^2 + (1/sqrt10)^2)
    s = {"a": torch.tensor([[2.0, 0.0]], dtype=torch.float64, requires_grad=True),
         "b": torch.tensor([[0.0, 3.0]], dtype=torch.float64)}
    d = math.sqrt((1 - 3 / math.sqrt(10)) ** 2 + 0.1)
    got = distill_loss(s, {"a": [ma], "b": [mb]}, {"a": 1.0, "b": 0.5})
    assert got.item() == pytest.approx(d + 0.5 * d, rel=1e-10)
    got.backward()
    assert s["a"].grad is not None and torch.isfinite(s["a"].grad).all()


def test_cmrf_flatten_loss_is_supcon_then_adds_distillation():
    torch.manual_seed(1)
    model = _toy_model()
    obj = build_objective("cmrf_flatten", CTX, alpha_con=2.0, distill=5.0, sma_start=0, dim=4, hidden=8)
    obj.bind(model, [obj])
    obj.train()
    batch = _batch()
    out = model(batch.inputs)
    term0 = obj(out, batch)              # step 0: teacher copied, no distillation yet
    s = obj.project(obj.projectors, out.feats)
    sup = supcon_loss(torch.stack([s["a"], s["b"]], 1), batch.label, 0.1, 0.07)
    assert term0.loss.item() == pytest.approx(2.0 * sup.item(), rel=1e-5)
    assert "cmrf_distill" not in term0.logs and term0.kind == "other"
    term1 = obj(out, batch)              # step 1: teacher = mean(theta_0, theta_1) = the online weights
    assert term1.logs["cmrf_distill"].item() >= 0
    assert term1.loss.item() == pytest.approx(2.0 * sup.item() + 5.0 * term1.logs["cmrf_distill"].item(), rel=1e-5)
    term1.loss.backward()
    assert all(p.grad is None for p in obj.teacher.parameters())
    assert any(p.grad is not None for p in obj.projectors.parameters())


def test_cmrf_distillation_vanishes_when_modalities_agree():
    """Equal teacher features across modalities: every mixture equals them, so distance 0."""
    t = torch.randn(5, 3, dtype=torch.float64)
    ctx3 = Context(["a", "b", "c"], {m: 4 for m in "abc"}, 3, 2)
    obj = build_objective("cmrf_flatten", ctx3, dim=3, hidden=4)
    mixed = obj.teacher_targets({"a": t, "b": t.clone(), "c": t.clone()})
    assert [len(v) for v in mixed.values()] == [2, 2, 2]       # one mixed teacher per pair it is in
    got = distill_loss({m: 2 * t for m in "abc"}, mixed, {m: 1.0 for m in "abc"})
    assert got.item() == pytest.approx(0.0, abs=1e-5)


def test_cmrf_unimodal_is_the_weighted_sum_of_head_cross_entropies():
    obj = build_objective("cmrf_unimodal", CTX, weight=2.0, down=("b",), down_weight=0.5)
    batch = _batch(6)
    feats = {"a": torch.randn(6, 4), "b": torch.randn(6, 4)}
    out = ModelOutput(feats, torch.zeros(6, 3), {})
    term = obj(out, batch)
    want = 0.0
    for m, w in (("a", 1.0), ("b", 0.5)):
        lin = obj.heads[m]
        logits = feats[m].double().numpy() @ lin.weight.double().detach().numpy().T + lin.bias.double().detach().numpy()
        ce = -_np_log_softmax(logits)[np.arange(6), batch.label.numpy()].mean()
        want += w * ce
    assert term.loss.item() == pytest.approx(2.0 * want, rel=1e-5)
    assert term.kind == "cls" and set(term.confidence) == {"a", "b"}


# ---------------------------------------------------------------- MOOSA: pure losses

def test_entropy_weighted_ce_matches_a_float64_reference_and_gradcheck():
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    y = torch.tensor([0, 3, 1, 1, 2])
    got, w = entropy_weighted_ce(logits, y, temperature=0.5)
    lsm = [_np_log_softmax(lg.detach().numpy()) for lg in logits]
    ent = np.stack([-(np.exp(l) * l).sum(1) for l in lsm], 1)
    ww = np.exp(-ent / 0.5)
    ww /= ww.sum(1, keepdims=True)
    ce = np.stack([-l[np.arange(5), y.numpy()] for l in lsm], 1)
    assert got.item() == pytest.approx((ww * ce).sum(1).mean(), rel=1e-10)
    assert np.allclose(w.detach().numpy(), ww)
    assert prediction_entropy(logits[0]).detach().numpy() == pytest.approx(ent[:, 0])
    # the weights are differentiated through too (reference): autograd equals finite differences
    assert torch.autograd.gradcheck(lambda *ls: entropy_weighted_ce(list(ls), y, 0.5)[0], tuple(logits))
    # equal heads: uniform weights, the plain mean cross-entropy
    same = [logits[0]] * 3
    assert entropy_weighted_ce(same, y)[0].item() == pytest.approx(ce[:, 0].mean(), rel=1e-10)
    with pytest.raises(ValueError, match="temperature"):
        entropy_weighted_ce(logits, y, 0.0)


def test_entropy_min_loss_of_uniform_predictions_by_hand():
    k = 4
    got = entropy_min_loss([torch.zeros(3, k, dtype=torch.float64), torch.zeros(2, k, dtype=torch.float64)])
    assert got.item() == pytest.approx(-math.log(1 / k + 1e-5), rel=1e-12)
    peaked = torch.tensor([[50.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert entropy_min_loss([peaked]).item() < 1e-4


def test_jigsaw_batch_by_hand_and_permutations():
    a = torch.tensor([[1.0, 2.0], [10.0, 20.0]])
    b = torch.tensor([[3.0, 4.0], [30.0, 40.0]])
    rows, labels = jigsaw_batch([a, b], 2, torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))
    assert rows.tolist() == [[1, 2, 3, 4], [10, 20, 30, 40], [4, 3, 2, 1], [40, 30, 20, 10]]
    assert labels.tolist() == [0, 0, 1, 1]
    torch.manual_seed(0)
    perms = sample_permutations(4, 24)                      # all 4! permutations
    assert len({tuple(p) for p in perms.tolist()}) == 24
    assert all(sorted(p) == [0, 1, 2, 3] for p in perms.tolist())
    with pytest.raises(ValueError, match="jigsaw_perms"):
        sample_permutations(3, 7)
    with pytest.raises(ValueError, match="splits"):
        jigsaw_batch([torch.zeros(1, 3)], 2, perms)


def test_moosa_jigsaw_objective_classifies_the_permutations():
    obj = build_objective("moosa_jigsaw", CTX, splits=2, perms=6, hidden=8)
    assert obj.perms.shape == (6, 4)
    out = ModelOutput({"a": torch.randn(5, 4), "b": torch.randn(5, 4)}, torch.zeros(5, 3), {})
    term = obj(out, _batch(5))
    rows, labels = jigsaw_batch([out.feats["a"], out.feats["b"]], 2, obj.perms)
    ref = torch.nn.functional.cross_entropy(obj.classifier(rows), labels)
    assert term.loss.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match="splits"):
        build_objective("moosa_jigsaw", Context(["a", "b"], {"a": 6, "b": 4}, 3, 2), splits=4, perms=2)


def test_masked_translation_masks_the_source_only_while_training():
    torch.manual_seed(0)
    obj = build_objective("masked_translation", CTX, weight=1.0, hidden=8, dropout=0.0, mask_ratio=0.3)
    feats = {"a": torch.randn(7, 4), "b": torch.randn(7, 4)}
    out = ModelOutput(feats, torch.zeros(7, 3), {})
    obj.eval()
    plain = np.mean([translation_loss(obj.translators[f"{s}->{t}"](feats[s]), feats[t]).item()
                     for s, t in (("a", "b"), ("b", "a"))])
    assert obj(out, _batch(7)).loss.item() == pytest.approx(plain, rel=1e-6)
    obj.train()
    z = torch.ones(4000, 50)
    assert (obj.mask(z) == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    # translate (missing-modality evaluation) uses the unmasked feature
    assert torch.allclose(obj.translate({"a": feats["a"]}, "b"), obj.translators["a->b"](feats["a"]))
    with pytest.raises(ValueError, match="mask_ratio"):
        build_objective("masked_translation", CTX, mask_ratio=1.0)


def test_moosa_heads_term_is_entropy_weighted_ce_plus_entropy_min():
    obj = build_objective("moosa_heads", CTX, temperature=2.0, ent_weight=0.1)
    feats = {"a": torch.randn(6, 4), "b": torch.randn(6, 4)}
    fused = torch.randn(6, 3)
    out = ModelOutput(feats, fused, {"a": fused / 2, "b": fused / 2})
    term = obj(out, _batch(6))
    logits = [obj.heads["a"](feats["a"]), obj.heads["b"](feats["b"]), fused]
    want = entropy_weighted_ce(logits, _batch(6).label, 2.0)[0] + 0.1 * entropy_min_loss(logits)
    assert term.loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert term.kind == "cls" and set(term.confidence) == {"a", "b"}


# ---------------------------------------------------------------- methods: runs, composition, errors

SMALL_CMRF = {"con_hidden": 16, "cmrf_dim": 8, "cmrf_sma_start": 0, "cmrf_down": "b"}
SMALL_MOOSA = {"con_hidden": 16, "con_dim": 8, "trans_hidden": 16, "jigsaw_perms": 16, "jigsaw_hidden": 16}
SMALL_MER = {"mer_hidden": 16, "mer_dim": 8}


def _cfg(method, **hp):
    return RunConfig(target="d0", benchmark="toy", method=method, epochs=3, batch_size=16,
                     encoders=MLP_ENCODERS, hparams=hp)


@pytest.mark.parametrize("name,hp", [
    ("cmrf", SMALL_CMRF), ("cmrf+gmp", SMALL_CMRF), ("cmrf+mer", {**SMALL_CMRF, **SMALL_MER}),
    ("moosa", SMALL_MOOSA), ("moosa+gmp", SMALL_MOOSA), ("moosa+mer", {**SMALL_MOOSA, **SMALL_MER}),
])
def test_methods_train_lower_their_loss_and_compose(name, hp):
    torch.set_num_threads(1)
    rec = train(_cfg(name, **hp), progress=False, keep_model=True)
    rows = [e["train"] for e in rec["epochs"]]
    total = [sum(v for k, v in r.items() if k.startswith("loss_") and k != "loss_domain_adv") for r in rows]
    assert all(math.isfinite(t) for t in total) and total[-1] < total[0], (name, rows)
    method = rec["_method"]
    names = [o.name for o in method.objectives]
    if name.startswith("cmrf"):
        assert names[:3] == ["ce", "cmrf_unimodal", "cmrf_flatten"]
        assert method.objectives[1].mod_weights == {"a": 1.0, "b": 0.5}
        assert all("cmrf_distill" in r for r in rows)     # sma_start=0: distillation from step 1 on
    else:
        assert names[:5] == ["moosa_heads", "supcon_shared", "ss_distance", "moosa_jigsaw", "masked_translation"]
        assert rows[-1]["jigsaw"] < rows[0]["jigsaw"]
    if name.endswith("+gmp"):
        assert "domain_adv" in names and method.strategy.name == "gmp"
    if name.endswith("+mer"):
        assert names[-1] == "mer"
    own = {id(p) for o in method.objectives for p in o.parameters() if p.requires_grad}
    assert own <= {id(p) for p in method.trainable_parameters()}
    assert math.isfinite(rec["final"]["test_acc"])


def test_cmrf_teacher_is_checkpointed_and_excluded_from_training():
    method = build_method("cmrf", _toy_model(), 2, {"con_hidden": 8, "cmrf_dim": 4})
    flat = method.objectives[2]
    assert flat.teacher is not None and flat._online[0] is method.model
    teacher_ids = {id(p) for p in flat.teacher.parameters()}
    assert teacher_ids and not teacher_ids & {id(p) for p in method.trainable_parameters()}
    keys = method.state_dict().keys()
    assert any(k.startswith("objectives.2.teacher.model.") for k in keys) and "objectives.2.step" in keys


@pytest.mark.parametrize("name,overrides,param", [
    ("cmrf", {"cmrf_temp": 0.0}, "cmrf_temp"),
    ("cmrf", {"cmrf_distill": -1.0}, "cmrf_distill"),
    ("cmrf", {"cmrf_mix_alpha": 0.0}, "cmrf_mix_alpha"),
    ("cmrf", {"cmrf_sma_start": -1}, "cmrf_sma_start"),
    ("cmrf", {"con_hidden": 0}, "con_hidden"),
    ("cmrf+gmp", {"cmrf_down_weight": -0.5}, "cmrf_down_weight"),
    ("moosa", {"ent_temp": 0.0}, "ent_temp"),
    ("moosa", {"ent_min": -1.0}, "ent_min"),
    ("moosa", {"mask_ratio": 1.0}, "mask_ratio"),
    ("moosa", {"jigsaw_splits": 0}, "jigsaw_splits"),
    ("moosa+mer", {"con_temp": -0.1}, "con_temp"),
])
def test_bad_hyperparameters_name_the_parameter(name, overrides, param):
    with pytest.raises(ValueError, match=param):
        resolve(name, overrides)


def test_bad_objective_arguments_name_the_parameter():
    for obj, kw, param in [("cmrf_flatten", {"temperature": 0}, "temperature"),
                           ("cmrf_flatten", {"mix_alpha": -1}, "mix_alpha"),
                           ("cmrf_flatten", {"sma_start": 1.5}, "sma_start"),
                           ("cmrf_unimodal", {"down_weight": -1}, "down_weight"),
                           ("moosa_heads", {"ent_weight": float("nan")}, "ent_weight"),
                           ("moosa_jigsaw", {"perms": 0}, "perms"),
                           ("moosa_jigsaw", {"perms": 30}, "jigsaw_perms")]:
        with pytest.raises(ValueError, match=param):
            build_objective(obj, Context(["a", "b"], {"a": 4, "b": 4}, 3, 2), **kw) if obj != "moosa_jigsaw" \
                else build_objective(obj, Context(["a"], {"a": 4}, 3, 2), splits=4, **kw)
    with pytest.raises(ValueError, match="2 modalities"):
        build_objective("cmrf_flatten", Context(["a"], {"a": 4}, 3, 2))
    with pytest.raises(TypeError, match="cmrf_sma_start"):
        resolve("cmrf", {"cmrf_sma_start": 1.5})
    model = _toy_model()
    obj = build_objective("cmrf_flatten", CTX, dim=4, hidden=8)
    with pytest.raises(RuntimeError, match="bound"):
        obj(model(_batch().inputs), _batch())
