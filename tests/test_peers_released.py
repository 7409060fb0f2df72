"""CGGM, DRB, BALGRAD, GMP as released (gmp_variant="released") and MER-DG as released.

Each rule is checked on hand-derived numbers, each strategy against a float64 reference
written from the released code's per-parameter loops (not from the strategy), then short
training runs, the +gmp / +mer compositions and the errors.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset

from mmdg.data.base import TensorDataset, WithDomain
from mmdg.data.samplers import BalancedDomainLoader, make_train_loader
from mmdg.methods import METHODS, RECIPES, build_method, resolve
from mmdg.models.model import build_model
from mmdg.objectives.drb import kmeans, learning_state, minmax_scale, purity, reinit_strength
from mmdg.objectives.peers import symmetric_kl
from mmdg.optim import LARS, make_optimizer
from mmdg.strategies import GMP
from mmdg.strategies.balgrad import balgrad_weights, project_task
from mmdg.strategies.cggm import cggm_coefficients, direction_loss
from mmdg.strategies.ratios import discrepancy_ratios, suppression
from mmdg.strategies.gmp_released import released_combine
from mmdg.train import RunConfig, train

from conftest import MLP_ENCODERS, Toy
from test_balancing import _batch

D = torch.float64


def vec(*x):
    return torch.tensor(x, dtype=D)


def close(x, y, tol=1e-12):
    torch.testing.assert_close(torch.as_tensor(x, dtype=D), torch.as_tensor(y, dtype=D), rtol=tol, atol=tol)


def _method(name, hp=None, seed=0, head_hidden=0):
    torch.manual_seed(seed)
    model = build_model(Toy().input_shapes(), MLP_ENCODERS, 3, head_hidden=head_hidden)
    return build_method(name, model, 2, hp).to(D)


def _step(method, batch):
    for p in method.parameters():
        p.grad = None
    _, terms = method.terms(batch)
    logs = method.backward(terms)
    return {id(p): (None if p.grad is None else p.grad.clone()) for p in method.parameters()}, logs


def _auto(loss, params):
    g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [x if x is not None else torch.zeros_like(p) for x, p in zip(g, params)]


def _train(name, hp=None, epochs=2, lr=1e-2, **kw):
    cfg = RunConfig(target="d2", benchmark="toy", method=name, hparams=hp or {}, encoders=MLP_ENCODERS,
                    epochs=epochs, lr=lr, **kw)
    return train(cfg, benchmark=Toy(), progress=False, keep_model=True)


def _lowered(rec, key):
    first, last = rec["epochs"][0]["train"][key], rec["epochs"][-1]["train"][key]
    assert last < first, (key, first, last)


# ==================================================================================== CGGM
def test_cggm_coefficients_and_direction_loss_by_hand():
    # accuracies 0.5 / 0.25 after 0.25 / 0.25: d = (0.25, 0), sum d = 0.25
    #   B = ((0.25 - 0.25) / 0.25, (0.25 - 0) / 0.25) = (0, 1)       (the modality that gained least gets 1)
    close(cggm_coefficients(vec(0.5, 0.25), vec(0.25, 0.25)), [0.0, 1.0], tol=1e-7)
    # no change at all: d = 0, B = (1e-8 - 0) / 1e-8 = 1 for both
    close(cggm_coefficients(vec(0.5, 0.5), vec(0.5, 0.5)), [1.0, 1.0])
    # L_gm = (|0| + |1| - (0 * 0.3 + 1 * 0.5)) / 2 = 0.25
    close(direction_loss(vec(0.0, 1.0), vec(0.3, 0.5)), 0.25)
    close(direction_loss(vec(-2.0, 1.0), vec(0.5, 0.5)), (3.0 - (-1.0 + 0.5)) / 2)


def test_cggm_step_equals_a_float64_reference():
    m = _method("cggm", {"cggm_clip": 0.0})
    batch = _batch()
    got, logs = _step(m, batch)
    # reference: classifiers on detached features, accuracy, B from eps^0 = 0, L_gm on weight cosines
    out = m.model(batch.inputs)
    heads = m.objectives[1].heads
    acc = torch.stack([(heads[k](out.feats[k]).argmax(1) == batch.label).double().mean() for k in ("a", "b")])
    B = (acc.sum() + 1e-8 - acc) / (acc.sum() + 1e-8)
    W = m.model.classifier.net.weight
    cos = torch.stack([F.cosine_similarity(heads["a"].weight.detach().reshape(-1), W[:, :16].reshape(-1), dim=0),
                       F.cosine_similarity(heads["b"].weight.detach().reshape(-1), W[:, 16:].reshape(-1), dim=0)])
    lgm = (B.abs().sum() - (B * cos).sum()) / 2
    ce = F.cross_entropy(out.logits.float(), batch.label)          # the objectives' losses are float32
    cls = sum(F.cross_entropy(heads[k](out.feats[k].detach()).float(), batch.label) for k in ("a", "b"))
    total = ce + cls + 0.05 * lgm
    params = list(m.parameters())
    ref = dict(zip(map(id, params), _auto(total, params)))
    for i, k in enumerate(("a", "b")):
        for p in m.model.encoders[k].parameters():
            ref[id(p)] = ref[id(p)] * 1.3 * B[i]
    for p in params:
        torch.testing.assert_close(got[id(p)], ref[id(p)], rtol=1e-9, atol=1e-12)
    close(logs["cggm/B_a"], B[0], tol=1e-9)
    # the second step uses this step's accuracies as eps^{t-1}
    assert torch.equal(m.strategy.prev.double(), acc)


def test_cggm_clips_the_model_gradient_and_keeps_its_state_in_checkpoints():
    m = _method("cggm", {"cggm_clip": 0.01})
    _step(m, _batch())
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in m.model.parameters() if p.grad is not None))
    assert norm <= 0.01 * (1 + 1e-6)
    state = m.state_dict()
    fresh = _method("cggm", {"cggm_clip": 0.01}, seed=1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.strategy.prev, m.strategy.prev)


def test_cggm_training_lowers_the_loss_and_composes_with_mer():
    rec = _train("cggm")
    _lowered(rec, "loss_ce")
    assert rec["final"]["val_acc"] > 100 / 3 + 5
    objs, strat, _ = resolve("cggm+mer")
    assert [o for o, _ in objs] == ["ce", "cggm_heads", "mer"] and strat[0] == "cggm"
    _lowered(_train("cggm+mer", {"mer_hidden": 16}), "loss_ce")


def test_cggm_errors_name_the_parameter():
    with pytest.raises(ValueError, match="cggm_lambda"):
        _method("cggm", head_hidden=8)
    _method("cggm", {"cggm_lambda": 0.0}, head_hidden=8)       # without the direction term any head works
    with pytest.raises(ValueError, match="cggm_rho"):
        resolve("cggm", {"cggm_rho": -1.0})
    with pytest.raises(ValueError, match="'sum' strategy"):
        resolve("cggm+gmp")


# ===================================================================================== DRB
def test_drb_purity_scaling_and_strength_by_hand():
    # clusters {0}, {1, 2, 3}; labels 0, 0, 1, 1: cluster 0 majority 1 of 1, cluster 1 majority 2 of 3
    assert purity(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])) == pytest.approx(3 / 4)
    close(minmax_scale(vec(0, 2, 4)[:, None]).squeeze(1), [-1, 0, 1])
    close(minmax_scale(vec(5, 5)[:, None]).squeeze(1), [-1, -1])            # constant column -> low
    assert reinit_strength(0.75, 0.5, 3.0) == pytest.approx(math.tanh(0.75))
    # two well separated blobs are recovered exactly, whatever the seed
    x = torch.cat([torch.randn(20, 2, generator=torch.Generator().manual_seed(0)) * 0.1,
                   torch.randn(20, 2, generator=torch.Generator().manual_seed(1)) * 0.1 + 5])
    y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    for seed in (0, 1):
        assert purity(y, kmeans(x, 2, seed=seed)) == 1.0
    assert learning_state(x, y, x, y, 2) == (1.0, 1.0)


def test_drb_reinit_moves_each_encoder_towards_its_initial_weights(monkeypatch):
    import mmdg.objectives.drb as drb
    m = _method("drb", {"drb_every": 1, "drb_times": 1})
    obj = m.objectives[1]
    init = {id(p): p.detach().clone() for ps in m.model.encoder_parameters().values() for p in ps}
    with torch.no_grad():
        for ps in m.model.encoder_parameters().values():
            for p in ps:
                p.add_(1.0)
    moved = {id(p): p.detach().clone() for ps in m.model.encoder_parameters().values() for p in ps}
    gaps = {"a": (0.75, 0.5), "b": (0.5, 0.5)}
    calls = iter(["a", "b"])
    monkeypatch.setattr(drb, "learning_state", lambda *a, **k: gaps[next(calls)])
    obj.collecting = True
    m.terms(_batch())                                   # collect one batch of training features
    val = [Toy().dataset("d0", "test").with_domain(0).batch(torch.arange(8))]
    val = [type(b)({k: x.to(D) for k, x in b.inputs.items()}, b.label, b.domain) for b in val]
    row = {}
    obj.epoch_end(1, m, row, val)
    alpha = math.tanh(3 * 0.25)
    for p in m.model.encoders["a"].parameters():
        close(p, alpha * init[id(p)] + (1 - alpha) * moved[id(p)], tol=1e-12)
    for p in m.model.encoders["b"].parameters():                      # gap 0: unchanged
        close(p, moved[id(p)])
    assert row["drb"]["a"]["alpha"] == pytest.approx(alpha) and obj.done == 1
    assert not obj.reinit_after(2)                                    # drb_times = 1 reached


def test_drb_training_records_the_reinit_and_composes_with_gmp_and_mer(tmp_path):
    rec = _train("drb", {"drb_every": 1, "drb_times": 1}, epochs=3)
    assert "drb" not in rec["epochs"][0] and set(rec["epochs"][1]["drb"]) == {"a", "b"}
    assert "drb" not in rec["epochs"][2]
    _lowered(rec, "loss_ce")
    objs, strat, _ = resolve("drb+gmp")
    assert [o for o, _ in objs] == ["ce", "drb", "domain_adv"] and strat[0] == "gmp"
    rec = _train("drb+gmp+mer", {"drb_every": 1, "mer_hidden": 16}, epochs=2)
    assert "drb" in rec["epochs"][1]
    # the initial weights travel with the checkpoint: a resumed run equals an uninterrupted one
    cfg = RunConfig(target="d2", benchmark="toy", method="drb", hparams={"drb_every": 1}, encoders=MLP_ENCODERS,
                    epochs=3, lr=1e-2)
    full = train(cfg, benchmark=Toy(), progress=False)
    ck = tmp_path / "ck.pt"
    train(cfg, checkpoint=ck, benchmark=Toy(), progress=False, stop_after=1)
    resumed = train(cfg, checkpoint=ck, benchmark=Toy(), progress=False)
    assert resumed["final"]["test_acc"] == full["final"]["test_acc"]
    assert resumed["epochs"][2]["drb"] == full["epochs"][2]["drb"]


def test_drb_errors_name_the_parameter():
    for k, v in (("drb_every", 0), ("drb_times", 0), ("drb_lambda", -1.0)):
        with pytest.raises(ValueError, match=k):
            resolve("drb", {k: v})


# ================================================================================= BALGRAD
def test_balgrad_weights_projection_and_kl_by_hand():
    close(balgrad_weights(vec(1.0, 3.0)), [0.5, 1.5])              # 2 * 1/4, 2 * 3/4
    close(balgrad_weights(vec(0.0, 0.0)), [1.0, 1.0])
    # g_T = [1, 0], g_kl = [-1, 1]: dot -1 < 0 -> g_T + 1/2 [-1, 1] = [1/2, 1/2]
    t, dot = project_task(vec(1, 0), vec(-1, 1))
    close(t, [0.5, 0.5])
    close(dot, -1.0)
    close(project_task(vec(1, 0), vec(1, 1))[0], [1, 0])             # no conflict: unchanged
    # p = (1/2, 1/2), q = (3/4, 1/4): KL(p||q) = 1/2 ln(4/3), KL(q||p) = 3/4 ln(3/2) + 1/4 ln(1/2)
    kl = symmetric_kl({"a": torch.zeros(1, 2, dtype=D), "b": torch.tensor([[math.log(3.0), 0.0]], dtype=D)})
    close(kl, 0.5 * (0.5 * math.log(4 / 3) + 0.75 * math.log(1.5) + 0.25 * math.log(0.5)))


def test_balgrad_step_equals_a_float64_reference():
    m = _method("balgrad")
    batch = _batch()
    got, logs = _step(m, batch)
    out = m.model(batch.inputs)
    heads = m.objectives[1].heads
    lg = {k: heads[k](out.feats[k]) for k in ("a", "b")}
    ce_u = {k: F.cross_entropy(lg[k].float(), batch.label) for k in ("a", "b")}
    pa, pb = F.softmax(lg["a"], 1), F.softmax(lg["b"], 1)
    kl = 0.5 * ((pa * (pa.log() - pb.log())).sum(1).mean() + (pb * (pb.log() - pa.log())).sum(1).mean())
    ce = F.cross_entropy(out.logits.float(), batch.label)
    enc = [p for k in ("a", "b") for p in m.model.encoders[k].parameters()]
    na = sum(1 for _ in m.model.encoders["a"].parameters())
    gt, gu, gk = _auto(ce, enc), _auto(ce_u["a"] + ce_u["b"], enc), _auto(kl, enc)
    la, lb = ce_u["a"].item(), ce_u["b"].item()
    w = [2 * la / (la + lb), 2 * lb / (la + lb)]
    gkl = [g * (w[0] if i < na else w[1]) for i, g in enumerate(gk)]
    dot = sum((x * y).sum() for x, y in zip(gt, gkl))
    nk = sum((y * y).sum() for y in gkl)
    c = dot / nk if dot < 0 else 0.0
    for i, p in enumerate(enc):
        torch.testing.assert_close(got[id(p)], gt[i] - c * gkl[i] + gkl[i] + gu[i], rtol=1e-9, atol=1e-12)
    # heads: plain sum of every term's gradient
    rest = [p for p in m.parameters() if id(p) not in {id(q) for q in enc}]
    for p, g in zip(rest, _auto(ce + ce_u["a"] + ce_u["b"] + kl, rest)):
        torch.testing.assert_close(got[id(p)], g, rtol=1e-9, atol=1e-12)
    close(logs["balgrad/w_a"], w[0], tol=1e-6)
    assert dot < 0 and logs["balgrad/conflict"] == 1                 # the projection branch is exercised


def test_balgrad_training_lowers_the_loss_and_composes_with_mer():
    rec = _train("balgrad")
    for k in ("loss_ce", "loss_unimodal_heads"):
        _lowered(rec, k)
    assert rec["final"]["val_acc"] > 100 / 3 + 5
    objs, strat, _ = resolve("balgrad+mer")
    assert [o for o, _ in objs] == ["ce", "unimodal_heads", "modality_kl", "mer"] and strat[0] == "balgrad"
    _lowered(_train("balgrad+mer", {"mer_hidden": 16}), "loss_ce")


def test_balgrad_errors_name_the_parameter():
    with pytest.raises(ValueError, match="balgrad_weighting"):
        _method("balgrad", {"balgrad_weighting": "bogus"})
    with pytest.raises(ValueError, match="balgrad_kl_weight"):
        resolve("balgrad", {"balgrad_kl_weight": -1.0})
    with pytest.raises(ValueError, match="'sum' strategy"):
        resolve("balgrad+gmp")


# ===================================================================== GMP as released
def test_released_conflict_rule_by_hand():
    # entries: two encoder entries and one head entry (where g_d does not exist)
    gc, gd, mask = vec(1, 0, 1), vec(-1, 1, 0), torch.tensor([True, True, False])
    # dot = -1.  rho >= sigma: g_c - (-1 / |g_d|^2 = 2) g_d = [1/2, 1/2, 1]; G = that + g_d
    G, branch = released_combine(gc, gd, vec(2.0), vec(1.0), mask)
    assert branch == "project_cls"
    close(G, [-0.5, 1.5, 1.0])
    # rho < sigma: g_d - (-1 / |g_c|^2 = 2) g_c = [-1/2, 1, 1/2], head entry dropped -> [-1/2, 1, 0]
    G, branch = released_combine(gc, gd, vec(1.0), vec(2.0), mask)
    assert branch == "project_dom"
    close(G, [0.5, 1.0, 1.0])
    G, branch = released_combine(vec(1, 0, 1), vec(1, 1, 0), vec(1.0), vec(2.0), mask)
    assert branch == "none"
    close(G, [2, 1, 1])


def _released_reference(m, batch):
    """The released train_one_step, written as its per-parameter loops, in float64."""
    out = m.model(batch.inputs)
    uni = m.objectives[1]
    dom = m.objectives[2]
    mods = ["a", "b"]
    cls_logits = {k: uni.heads[k](out.feats[k]) for k in mods}
    dom_logits = {k: dom.disc(dom.proj[k](_grl(out.feats[k], 0.3))) for k in mods}
    # confidences in float32, as Term.confidence holds them
    sem = {k: F.softmax(cls_logits[k].detach().float(), 1).gather(1, batch.label[:, None]).mean() for k in mods}
    dmc = {k: F.softmax(dom_logits[k].detach().float(), 1).gather(1, batch.domain[:, None]).mean() for k in mods}
    sem_r = {"a": sem["a"] / sem["b"], "b": sem["b"] / sem["a"]}
    dom_r = {"a": dmc["b"] / dmc["a"], "b": dmc["a"] / dmc["b"]}
    coef = lambda r, al: (1 - math.tanh(al * r)) if r > 1 else 1.0  # noqa: E731
    grads = {}
    for k in mods:
        ps = list(m.model.encoders[k].parameters()) + list(uni.heads[k].parameters())
        gcl = torch.autograd.grad(3.0 * F.cross_entropy(cls_logits[k].float(), batch.label), ps, retain_graph=True,
                                  allow_unused=True)
        gdo = torch.autograd.grad(0.5 * F.cross_entropy(dom_logits[k].float(), batch.domain), ps, retain_graph=True,
                                  allow_unused=True)
        gcl = [None if g is None else g * coef(sem_r[k].item(), 0.5) for g in gcl]
        gdo = [None if g is None else g * coef(dom_r[k].item(), 0.1) for g in gdo]
        dot = sum((a * b).sum() for a, b in zip(gcl, gdo) if a is not None and b is not None)
        if dot < 0:
            if sem_r[k] >= dom_r[k]:
                n = sum((b * b).sum() for b in gdo if b is not None) + 1e-12
                gcl = [a if b is None else a - dot / n * b for a, b in zip(gcl, gdo)]
            else:
                n = sum((a * a).sum() for a in gcl if a is not None) + 1e-12
                gdo = [None if b is None else b - dot / n * a for a, b in zip(gcl, gdo)]
        for p, a, b in zip(ps, gcl, gdo):
            grads[id(p)] = sum(x for x in (a, b) if x is not None)
    fused = F.cross_entropy(out.logits.float(), batch.label)
    params = list(m.parameters())
    for p, g in zip(params, torch.autograd.grad(fused, params, allow_unused=True)):
        if g is not None:
            grads[id(p)] = grads.get(id(p), 0) + g
    return grads


def _grl(x, c):
    from mmdg.models.heads import grad_reverse
    return grad_reverse(x, c)


def test_released_step_equals_the_released_code_in_float64():
    seen = set()
    for seed in (0, 4, 1):
        m = _method("gmp_released", {"gmp_log_every": 1}, seed=seed)
        assert [o.name for o in m.objectives] == ["ce", "unimodal_heads", "domain_adv_released"]
        batch = _batch()
        torch.manual_seed(5)
        got, logs = _step(m, batch)
        seen.update({int(logs["gmp/branch_a"]), int(logs["gmp/branch_b"])})
        torch.manual_seed(5)                                   # same dropout masks in the projections
        _check_released(m, got, _released_reference(m, batch))
    assert {1, 2} <= seen                                      # both conflict branches were exercised


def _check_released(m, got, ref):
    for p in m.parameters():       # k and p come from float32 confidences: float32 rounding of the scales
        if id(p) in ref:
            torch.testing.assert_close(got[id(p)], ref[id(p)], rtol=1e-5, atol=1e-8)
        else:
            assert got[id(p)] is None                      # discriminator and projections: no gradient
    dom = m.objectives[2]
    assert all(got[id(p)] is None for p in dom.parameters())


def test_released_discriminator_is_never_trained_unless_asked():
    rec = _train("gmp_released", epochs=2)
    meth = rec["_method"]
    torch.manual_seed(0)
    fresh = build_method("gmp_released", build_model(Toy().input_shapes(), MLP_ENCODERS, 3), 2)
    dom, dom0 = meth.objectives[2], fresh.objectives[2]
    for (n, p), p0 in zip(dom.named_parameters(), dom0.parameters()):
        assert torch.equal(p.detach().cpu(), p0.detach()), n          # exactly its initialisation
    _lowered(rec, "loss_ce")
    _lowered(rec, "loss_unimodal_heads")
    rec = _train("gmp_released", {"released_train_disc": True}, epochs=1)
    changed = [not torch.equal(p.detach().cpu(), p0.detach())
               for p, p0 in zip(rec["_method"].objectives[2].parameters(), dom0.parameters())]
    assert all(changed)


def test_released_variant_composes_and_its_errors_name_the_parameter():
    objs, strat, hp = resolve("erm+gmp", {"gmp_variant": "released"})
    assert strat[0] == "gmp_released" and hp["alpha_p"] == 0.5        # the plugin's default
    assert resolve("gmp_released")[2]["alpha_p"] == 0.1                # the sweep config's
    objs, strat, _ = resolve("gmp_released+mer")
    assert [o for o, _ in objs] == ["ce", "unimodal_heads", "domain_adv_released", "mer"]
    _lowered(_train("gmp_released+mer", {"mer_hidden": 16}), "loss_ce")
    objs, strat, _ = resolve("simmmdg+gmp", {"gmp_variant": "released"})
    assert strat[0] == "gmp_released" and "supcon_shared" in [o for o, _ in objs]
    with pytest.raises(ValueError, match="domain_adv_released"):
        resolve("gmp", {"gmp_variant": "released"})                   # base already has domain_adv
    with pytest.raises(ValueError, match="gmp_project"):
        resolve("gmp_released", {"gmp_project": "cls"})
    with pytest.raises((TypeError, ValueError), match="released_train_disc"):
        _method("gmp_released", {"released_train_disc": 1})
    with pytest.raises(ValueError, match="gmp_released"):
        GMP(variant="released")
    with pytest.raises(ValueError, match="released"):
        GMP(variant="bogus")


def test_released_ratios_match_the_batch_means_of_the_released_code():
    # released: ratio = mean_i q_a / mean_i q_b (+1e-6); ours: sums; equal for equal batch sizes
    qa, qb = vec(0.9, 0.7), vec(0.2, 0.4)
    rho, sigma = discrepancy_ratios(torch.stack([qa.sum(), qb.sum()]), torch.stack([qb.sum(), qa.sum()]))
    close(rho, [1.6 / 0.6, 0.6 / 1.6])
    close(sigma, [1.6 / 0.6, 0.6 / 1.6])
    close(suppression(rho, 0.5), [1 - math.tanh(0.5 * 1.6 / 0.6), 1.0])


# ===================================================================== MER-DG as released
def test_lars_steps_by_hand():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=D))     # |w| = 5
    b = torch.nn.Parameter(torch.tensor([1.0], dtype=D))            # 1-D: excluded (plain SGD + momentum)
    opt = LARS([w, b], lr=0.1, weight_decay=0.0, momentum=0.9, eta=0.001)
    w.grad, b.grad = torch.tensor([[0.0, 2.0]], dtype=D), torch.tensor([2.0], dtype=D)
    opt.step()
    # trust = 0.001 * 5 / 2 = 0.0025: d = [0, 0.005]; w -= 0.1 d
    close(w, [[3.0, 4.0 - 0.0005]])
    close(b, [1.0 - 0.2])
    opt.step()                                   # same gradients: mu = 0.9 mu + d'
    n = math.sqrt(3.0 ** 2 + 3.9995 ** 2)
    d2 = 0.001 * n / 2 * 2.0
    close(w, [[3.0, 3.9995 - 0.1 * (0.9 * 0.005 + d2)]], tol=1e-12)
    close(b, [0.8 - 0.1 * (0.9 * 2 + 2)])
    # weight decay enters before the trust ratio
    v = torch.nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=D))
    opt = LARS([v], lr=1.0, weight_decay=0.5, momentum=0.0, eta=0.01)
    v.grad = torch.tensor([[1.0, 0.0]], dtype=D)
    opt.step()
    d = torch.tensor([[2.5, 2.0]], dtype=D)                           # g + 0.5 w
    close(v, torch.tensor([[3.0, 4.0]], dtype=D) - 0.01 * 5 / d.norm() * d)


def test_make_optimizer_and_its_errors():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    assert isinstance(make_optimizer(p, 1e-3, 1e-4), torch.optim.Adam)
    opt = make_optimizer(p, 1e-3, 1e-4, {"optimizer": "lars", "lars_eta": 0.01, "lars_weight_decay": 0.0})
    assert isinstance(opt, LARS) and opt.param_groups[0]["eta"] == 0.01
    with pytest.raises(ValueError, match="'optimizer'"):
        make_optimizer(p, 1e-3, 0.0, {"optimizer": "sgd"})
    with pytest.raises(ValueError, match="'optimizer'"):
        resolve("mer_released", {"optimizer": "sgd"})
    with pytest.raises(ValueError, match="'sampler'"):
        resolve("mer_released", {"sampler": "bogus"})
    with pytest.raises(ValueError, match="lars_momentum"):
        resolve("mer_released", {"lars_momentum": 1.0})


def _two_domains(n0=10, n1=7):
    x = torch.arange(n0 + n1, dtype=torch.float32)[:, None]
    dom = torch.cat([torch.zeros(n0), torch.ones(n1)]).long()
    return TensorDataset({"a": x}, torch.zeros(n0 + n1).long(), dom)


def test_balanced_domain_loader():
    ds = _two_domains()
    loader = BalancedDomainLoader(ds, batch_size=4, seed=3)
    assert len(loader) == 7 // 2                                 # min domain size // per-domain share
    seen = []
    for batch in loader:
        assert batch.domain.tolist() == [0, 0, 1, 1]
        seen += batch.inputs["a"].squeeze(1).long().tolist()
    assert len(seen) == len(set(seen)) == 12                     # no sample twice in an epoch
    again = [b.inputs["a"].squeeze(1).tolist() for b in loader]
    loader.set_epoch(1)
    other = [b.inputs["a"].squeeze(1).tolist() for b in loader]
    loader.set_epoch(0)
    assert again == [b.inputs["a"].squeeze(1).tolist() for b in loader] and other != again
    # map-style datasets (file-backed benchmarks) go through a DataLoader with the same batches
    parts = [WithDomain(TensorDataset({"a": ds.inputs["a"][:10]}, ds.label[:10], ds.domain[:10]), 0),
             WithDomain(TensorDataset({"a": ds.inputs["a"][10:]}, ds.label[10:], ds.domain[10:]), 1)]
    mapped = BalancedDomainLoader(ConcatDataset(parts), batch_size=4, seed=3)
    assert [b.inputs["a"].squeeze(1).tolist() for b in mapped] == again
    with pytest.raises(ValueError, match="batch_size"):
        BalancedDomainLoader(ds, batch_size=5)
    with pytest.raises(ValueError, match="'sampler'"):
        make_train_loader(ds, 4, 0, "bogus")
    assert len(make_train_loader(ds, 4, 0)) == 17 // 4          # the default shuffled loader


def test_mer_released_is_one_configuration():
    hp = resolve("mer_released")[2]
    assert hp["lambda_mer"] == 3.0 and hp["mer_hidden"] == 2048 and hp["optimizer"] == "lars"
    assert hp["sampler"] == "balanced_domain"
    objs, _, _ = resolve("mer_released")
    assert dict(objs)["mer"]["hidden"] == 2048
    m = _method("mer_released", {"mer_hidden": 16})
    assert m.train_options == {"optimizer": "lars", "lars_eta": 0.001, "lars_momentum": 0.9,
                               "lars_weight_decay": 1e-6, "sampler": "balanced_domain"}
    assert type(m.objectives[1].projectors["a"][1]).__name__ == "LayerNorm"
    assert RECIPES["mer_released"]["epochs"] == 20 and RECIPES["mer_released"]["lr"] == 1e-4
    assert set(RECIPES) <= set(METHODS)
    assert _method("erm").train_options == {}


def test_mer_released_training_what_lars_does_here():
    # the trainer uses LARS and the balanced loader: 48 samples per source domain, 8 per domain and batch
    rec = _train("mer_released", {"mer_hidden": 16}, epochs=1, lr=1e-4)
    meth = rec["_method"]
    torch.manual_seed(0)
    fresh = build_method("mer_released", build_model(Toy().input_shapes(), MLP_ENCODERS, 3), 2, {"mer_hidden": 16})
    w, w0 = meth.model.classifier.net.weight.detach().cpu(), fresh.model.classifier.net.weight.detach()
    # 6 steps at lr 1e-4, eta 1e-3: each step moves the head by <= lr * eta * |w| * (1 + 0.9 + ...) -> tiny
    assert 0 < (w - w0).norm() / w0.norm() < 6 * 1e-4 * 1e-3 * 10
    adam = _train("mer_released", {"mer_hidden": 16, "optimizer": "adam"}, epochs=1, lr=1e-4)
    wa = adam["_method"].model.classifier.net.weight.detach().cpu()
    assert (wa - w0).norm() / w0.norm() > 100 * (w - w0).norm() / w0.norm()
    # with a large enough lr LARS trains (the loss falls), and +gmp composes (strategy sum)
    _lowered(_train("mer_released", {"mer_hidden": 16}, epochs=3, lr=1.0), "loss_ce")
    objs, strat, _ = resolve("mer_released+gmp")
    assert strat[0] == "gmp" and [o for o, _ in objs] == ["ce", "mer", "domain_adv"]
    rec = _train("mer_released+gmp", {"mer_hidden": 16}, epochs=1, lr=1e-4)
    assert rec["final"]["oracle_test_acc"] >= rec["final"]["test_acc"]


def test_the_trainer_draws_balanced_batches_for_mer_released():
    # sources of unequal size (48 and 24): balanced batches of 8 + 8 give 24 // 8 = 3 steps an epoch,
    # the shuffled loader 72 // 16 = 4; the per-step GMP logs (trace) count the steps
    from mmdg.data.protocol import DGSplit
    toy = Toy()
    d0, d1 = toy.dataset("d0", "train").with_domain(0), toy.dataset("d1", "train").with_domain(1)
    d1 = TensorDataset({k: x[:24] for k, x in d1.inputs.items()}, d1.label[:24], d1.domain[:24])
    val = TensorDataset.concat([toy.dataset("d0", "test").with_domain(0), toy.dataset("d1", "test").with_domain(1)])
    split = DGSplit(("d0", "d1"), "d2", TensorDataset.concat([d0, d1]), val, toy.dataset("d2", "test"))
    steps = {}
    for name, hp in (("mer_released+gmp", {}), ("mer+gmp", {})):
        cfg = RunConfig(target="d2", benchmark="toy", method=name, hparams={"mer_hidden": 16, "gmp_log_every": 1, **hp},
                        encoders=MLP_ENCODERS, epochs=1, trace=True)
        rec = train(cfg, benchmark=toy, split=split, progress=False)
        steps[name] = len(rec["epochs"][0]["trace"]["_step"])
    assert steps == {"mer_released+gmp": 3, "mer+gmp": 4}
