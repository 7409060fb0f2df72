"""Gradient-balancing baselines: PCGrad, OGM-GE, MMPareto, AGM, Gradient-Blending.

Each defining computation is checked on tiny hand-derived numbers, each strategy against
plain summation where it must reduce to it and against independent float64 autograd
references on a real model; then short training runs and the sweep CLI.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdg.__main__ import main
from mmdg.data.base import Batch, TensorDataset
from mmdg.methods import build_method, resolve
from mmdg.models.model import build_model
from mmdg.objectives import Term, true_class_prob
from mmdg.objectives.grad_blending import blending_weights
from mmdg.strategies import build_strategy, total_loss
from mmdg.strategies.agm import agm_coefficients, agm_scores
from mmdg.strategies.mmpareto import min_norm_weight, pareto_update, pareto_weights
from mmdg.strategies.ogm_ge import ogm_coefficients
from mmdg.strategies.pcgrad import pcgrad_project
from mmdg.train import RunConfig, train

from conftest import MLP_ENCODERS, Toy

D = torch.float64


def vec(*x):
    return torch.tensor(x, dtype=D)


def close(x, y, tol=1e-12):
    torch.testing.assert_close(x.double(), torch.as_tensor(y, dtype=D), rtol=tol, atol=tol)


def _batch(n=24):
    toy = Toy()
    ds = TensorDataset.concat([toy.dataset("d0", "train").with_domain(0), toy.dataset("d1", "train").with_domain(1)])
    b = ds.batch(torch.arange(0, 96, 96 // n)[:n])
    return Batch({m: x.to(D) for m, x in b.inputs.items()}, b.label, b.domain)


def _method(name, hp=None, seed=0, fusion="concat", head_hidden=0):
    torch.manual_seed(seed)
    model = build_model(Toy().input_shapes(), MLP_ENCODERS, 3, fusion=fusion, head_hidden=head_hidden)
    return build_method(name, model, 2, hp).to(D)


def _grads(method, batch, strategy=None):
    """.grad of every trainable parameter after one step of ``strategy`` (default: the method's)."""
    for p in method.parameters():
        p.grad = None
    _, terms = method.terms(batch)
    logs = (strategy or method.strategy).backward(terms, method.model, method.trainable_parameters())
    return [p.grad.clone() if p.grad is not None else None for p in method.trainable_parameters()], logs


def _sum_grads(method, batch):
    return _grads(method, batch, build_strategy("sum"))[0]


def _scaled_ce_terms(method, first, second, scale, second_kind="cls"):
    """Make ``method``'s terms CE (named ``first``, kind cls) and ``scale`` x CE (``second``): parallel gradients."""
    def terms(batch):
        out = method.model(batch.inputs)
        ce = F.cross_entropy(out.logits, batch.label)
        return out, [Term(first, "cls", ce), Term(second, second_kind, scale * ce)]

    method.terms = terms


def _same(a, b, tol=1e-12):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, rtol=tol, atol=tol)


def _enc_ids(method):
    return {id(p) for ps in method.model.encoder_parameters().values() for p in ps}


def _per_modality(method):
    """Index lists into trainable_parameters(): per modality encoder, and the heads."""
    params = method.trainable_parameters()
    pos = {id(p): i for i, p in enumerate(params)}
    enc = {m: [pos[id(p)] for p in ps] for m, ps in method.model.encoder_parameters().items()}
    heads = [i for i, p in enumerate(params) if id(p) not in _enc_ids(method)]
    return enc, heads


def _autograd(loss, params):
    g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [x if x is not None else torch.zeros_like(p) for x, p in zip(g, params)]


# ================================================================================== PCGrad
def test_pcgrad_projection_of_two_known_vectors():
    # g1 = [1, 0], g2 = [-1, 1]: g1.g2 = -1 < 0.
    #   g1' = g1 - (-1 / |g2|^2 = 2) g2 = [1, 0] + 1/2 [-1, 1] = [1/2, 1/2]   (orthogonal to g2)
    #   g2' = g2 - (-1 / |g1|^2 = 1) g1 = [-1, 1] + [1, 0]     = [0, 1]       (orthogonal to g1)
    g1, g2 = pcgrad_project([vec(1, 0), vec(-1, 1)])
    close(g1, [0.5, 0.5])
    close(g2, [0.0, 1.0])
    # no conflict: unchanged
    a, b = pcgrad_project([vec(1, 0), vec(1, 1)])
    close(a, [1, 0])
    close(b, [1, 1])


def test_pcgrad_order_matters_with_three_tasks_and_projects_on_originals():
    # g1 = [1, 0], g2 = [-1, 1], g3 = [0, -1]
    # order (g2, g3): [1,0] -> [1/2, 1/2]; then . g3 = -1/2 < 0 -> [1/2, 1/2] + 1/2 [0, -1] = [1/2, 0]
    # order (g3, g2): [1,0] . g3 = 0, unchanged; then . g2 = -1 -> [1/2, 1/2]
    gs = [vec(1, 0), vec(-1, 1), vec(0, -1)]
    close(pcgrad_project(gs, [[1, 2], [0, 2], [0, 1]])[0], [0.5, 0.0])
    close(pcgrad_project(gs, [[2, 1], [0, 2], [0, 1]])[0], [0.5, 0.5])
    # g3 against the ORIGINAL g1 and g2: g3.g1 = 0; g3.g2 = -1 -> [0,-1] + 1/2 [-1, 1] = [-1/2, -1/2]
    close(pcgrad_project(gs, [[1, 2], [0, 2], [0, 1]])[2], [-0.5, -0.5])


def test_pcgrad_zero_gradient_gives_no_nan():
    a, b = pcgrad_project([vec(0, 0), vec(1, -1)])
    close(a, [0, 0])
    close(b, [1, -1])


def test_pcgrad_strategy_equals_sum_without_conflict():
    # two terms with parallel gradients (ce and 0.5 ce): no projection, PCGrad == sum
    m = _method("erm")
    batch = _batch()
    _scaled_ce_terms(m, "a", "b", 0.5)
    got, logs = _grads(m, batch, build_strategy("pcgrad"))
    _same(got, _sum_grads(m, batch))
    assert logs["pcgrad/conflicts"] == 0


def test_pcgrad_strategy_opposite_terms_cancel_on_shared_parameters():
    # terms ce and -0.5 ce: g2 = -g1/2.  g1' = g1 - (g1.g2/|g2|^2) g2 = g1 - (-2)(-g1/2) = 0, and
    # g2' = g2 - (g2.g1/|g1|^2) g1 = -g1/2 + g1/2 = 0: every shared parameter gets zero.
    m = _method("erm")
    batch = _batch()
    _scaled_ce_terms(m, "a", "b", -0.5, second_kind="other")
    got, logs = _grads(m, batch, build_strategy("pcgrad"))
    assert all(g is not None and g.abs().max() < 1e-12 for g in got)
    assert logs["pcgrad/conflicts"] == 1


def test_pcgrad_method_matches_float64_reference_and_task_specific_params_get_plain_gradient():
    # terms: ce, unimodal_ce, domain_adv, mer (half of the ordered task pairs conflict here)
    m = _method("pcgrad+mer", {"lambda_d": 0.3, "mer_hidden": 8, "mer_dim": 4})
    batch = _batch()
    torch.manual_seed(5)
    got, logs = _grads(m, batch)
    assert 0 < logs["pcgrad/conflicts"] < 1
    # reference: per-term gradients, shared = reached by >= 2 terms, projection in the drawn order
    params = m.trainable_parameters()
    _, terms = m.terms(batch)
    n_tasks = len(terms)
    raw = [torch.autograd.grad(t.loss, params, retain_graph=True, allow_unused=True) for t in terms]
    shared = [j for j in range(len(params)) if sum(r[j] is not None for r in raw) >= 2]
    flats = [torch.cat([(r[j] if r[j] is not None else torch.zeros_like(params[j])).reshape(-1) for j in shared])
             for r in raw]
    torch.manual_seed(5)
    orders = []
    for i in range(n_tasks):
        others = [j for j in range(n_tasks) if j != i]
        orders.append([others[k] for k in torch.randperm(n_tasks - 1).tolist()])
    total = torch.zeros_like(flats[0])
    projected = 0
    for i in range(n_tasks):
        g = flats[i].clone()
        for j in orders[i]:
            d = g @ flats[j]
            if d < 0:
                g = g - d / (flats[j] @ flats[j]) * flats[j]
                projected += 1
        total += g
    assert projected > 0
    off = 0
    for j in shared:
        n = params[j].numel()
        torch.testing.assert_close(got[j].reshape(-1), total[off:off + n], rtol=1e-10, atol=1e-12)
        off += n
    disc = [j for j in range(len(params)) if j not in shared]
    assert disc, "the discriminator is reached by the domain term only"
    for j in disc:
        want = sum(r[j] for r in raw if r[j] is not None)
        torch.testing.assert_close(got[j], want, rtol=1e-12, atol=1e-12)
    # mean = sum / (number of tasks) on the shared parameters
    m.strategy = build_strategy("pcgrad", reduction="mean")
    torch.manual_seed(5)
    mean, _ = _grads(m, batch)
    for j in shared:
        torch.testing.assert_close(mean[j], got[j] / n_tasks, rtol=1e-12, atol=1e-14)


def test_pcgrad_bad_reduction_is_named():
    with pytest.raises(ValueError, match="reduction"):
        build_strategy("pcgrad", reduction="avg")


# ================================================================================== OGM-GE
def _hand_shares():
    """Two samples, labels [0, 0].
    a: rows [ln 3, 0] -> p(y) = 3/4 and [0, 0] -> 1/2:  s_a = 5/4
    b: rows [0, 0] -> 1/2 and [0, ln 3] -> 1/4:          s_b = 3/4
    """
    l3 = math.log(3.0)
    shares = {"a": torch.tensor([[l3, 0.0], [0.0, 0.0]], dtype=D), "b": torch.tensor([[0.0, 0.0], [0.0, l3]], dtype=D)}
    return true_class_prob(shares, torch.tensor([0, 0]))


def test_ogm_coefficients_from_known_logits():
    q = _hand_shares()
    sums = torch.stack([q["a"].sum(), q["b"].sum()])
    close(sums, [1.25, 0.75])
    rho, k = ogm_coefficients(sums, alpha=1.5)
    # rho_a = 1.25 / 0.75 = 5/3 -> k_a = 1 - tanh(1.5 * (5/3 - 1)) = 1 - tanh(1);  rho_b = 3/5 <= 1 -> k_b = 1
    close(rho, [5 / 3, 3 / 5], 1e-6)
    close(k, [1 - math.tanh(1.0), 1.0], 1e-6)
    _, k_lit = ogm_coefficients(sums, alpha=1.5, literal=True)   # released code: 1 - tanh(1.5 * 5/3)
    close(k_lit, [1 - math.tanh(2.5), 1.0], 1e-6)


def test_ogm_ge_without_noise_scales_the_dominant_encoder_of_the_summed_gradient():
    m = _method("ogm_ge", {"ogm_alpha": 0.8, "ogm_ge": False, "lambda_d": 0.3})
    batch = _batch()
    got, logs = _grads(m, batch)
    plain = _sum_grads(m, batch)
    enc, heads = _per_modality(m)
    # independent k from the fused CE's shares
    out = m.model(batch.inputs)
    s = {mod: torch.softmax(out.shares[mod], 1).gather(1, batch.label[:, None]).sum() for mod in ("a", "b")}
    rho = {"a": s["a"] / s["b"], "b": s["b"] / s["a"]}
    for mod, idx in enc.items():
        k = 1 - math.tanh(0.8 * (rho[mod].item() - 1)) if rho[mod] > 1 else 1.0
        close(logs[f"ogm_ge/k_{mod}"], k, 1e-6)
        for i in idx:
            torch.testing.assert_close(got[i], k * plain[i], rtol=1e-6, atol=1e-12)
    assert min(logs["ogm_ge/k_a"], logs["ogm_ge/k_b"]) < 1       # one modality was suppressed
    _same([got[i] for i in heads], [plain[i] for i in heads])      # heads: plain summed gradient


@pytest.mark.parametrize("hp", [{"ogm_alpha": 0.0, "ogm_ge": False}, {"ogm_conv_only": True},
                                {"modulation_starts": 3, "modulation_ends": 5}])
def test_ogm_ge_reduces_to_sum(hp):
    # alpha = 0 without noise; conv_only on MLP encoders (no conv kernels); outside the epoch window
    m = _method("ogm_ge", hp)
    batch = _batch()
    got, logs = _grads(m, batch)
    _same(got, _sum_grads(m, batch))


def test_ogm_ge_noise_is_seeded_and_has_the_gradient_std():
    m = _method("ogm_ge", {"ogm_alpha": 0.0})
    batch = _batch()
    torch.manual_seed(1)
    g1, _ = _grads(m, batch)
    torch.manual_seed(1)
    g2, _ = _grads(m, batch)
    _same(g1, g2)
    plain = _sum_grads(m, batch)
    enc, heads = _per_modality(m)
    big = max((i for idx in enc.values() for i in idx), key=lambda i: plain[i].numel())
    noise = g1[big] - plain[big]
    assert plain[big].numel() >= 128
    assert noise.std().item() == pytest.approx(plain[big].std().item(), rel=0.25)
    _same([g1[i] for i in heads], [plain[i] for i in heads])


def test_ogm_ge_epoch_window_follows_the_trainer():
    cfg = RunConfig(target="d2", benchmark="toy", method="ogm_ge", encoders=MLP_ENCODERS, epochs=2,
                    hparams={"modulation_ends": 0})
    rec = train(cfg, benchmark=Toy(), progress=False)
    assert "ogm_ge/k_a" in rec["epochs"][0]["train"]
    assert "ogm_ge/k_a" not in rec["epochs"][1]["train"]


def test_ogm_ge_errors_name_the_parameter():
    with pytest.raises(ValueError, match="alpha"):
        build_strategy("ogm_ge", alpha=-1.0)
    with pytest.raises(ValueError, match="modulation_ends"):
        build_strategy("ogm_ge", modulation_starts=5, modulation_ends=2)


# ================================================================================ MMPareto
def test_mmpareto_min_norm_weights_of_two_known_vectors():
    # g1 = [1, 0], g2 = [-1, 1]: |g1|^2 = 1, g1.g2 = -1, |g2|^2 = 2, cos = -1/sqrt(2) <= 0 -> min norm:
    #   c = (|g2|^2 - g1.g2) / |g1 - g2|^2 = (2 + 1) / 5 = 3/5;  c g1 + (1 - c) g2 = [1/5, 2/5]
    w1, w2, cos = pareto_weights(vec(1, 0), vec(-1, 1))
    close(cos, -1 / math.sqrt(2))
    close(w1, 0.6)
    close(w2, 0.4)
    # the min-norm point is orthogonal to g1 - g2
    close(torch.dot(w1 * vec(1, 0) + w2 * vec(-1, 1), vec(2, -1)), 0.0)
    # new = 2 [1/5, 2/5] = [2/5, 4/5], |new| = sqrt(4/5) < |g1 + g2| = |[0, 1]| = 1 -> rescaled to norm 1,
    # times gamma 1.5: 1.5 [1, 2] / sqrt(5)
    close(pareto_update(vec(1, 0), vec(-1, 1), w1, w2, 1.5), [1.5 / math.sqrt(5), 3 / math.sqrt(5)])
    # aligned (cos > 0): 1/2 each, new = g1 + g2 = [2, 1] (no rescale), times gamma
    w1, w2, _ = pareto_weights(vec(1, 0), vec(1, 1))
    close(w1, 0.5)
    close(pareto_update(vec(1, 0), vec(1, 1), w1, w2, 1.5), [3.0, 1.5])
    # the solver's interval ends: a zero g1 gets 0.999, a g2 inside g1's half-space 0.001
    close(min_norm_weight(vec(0.0)[0], vec(0.0)[0], vec(1.0)[0]), 0.999)
    close(min_norm_weight(vec(4.0)[0], vec(1.0)[0], vec(1.0)[0]), 0.001)


def test_mmpareto_aligned_terms_with_gamma_one_equal_sum():
    # uni term = 0.5 * the multimodal term: cos = 1 on every encoder -> weights 1/2, new = g_mm + g_uni
    m = _method("erm")
    batch = _batch()
    _scaled_ce_terms(m, "ce", "unimodal_heads", 0.5)
    got, logs = _grads(m, batch, build_strategy("mmpareto", gamma=1.0))
    _same(got, _sum_grads(m, batch), 1e-10)
    close(logs["mmpareto/w_mm_a"], 0.5)
    got15, _ = _grads(m, batch, build_strategy("mmpareto", gamma=1.5))
    enc, heads = _per_modality(m)
    plain = _sum_grads(m, batch)
    for i in enc["a"] + enc["b"]:
        torch.testing.assert_close(got15[i], 1.5 * plain[i], rtol=1e-10, atol=1e-14)
    _same([got15[i] for i in heads], [plain[i] for i in heads])


def test_mmpareto_method_matches_float64_reference():
    m = _method("mmpareto", {"lambda_d": 0.3})           # ce, unimodal_heads, domain_adv
    batch = _batch()
    got, logs = _grads(m, batch)
    params = m.trainable_parameters()
    _, terms = m.terms(batch)
    g_mm, g_uni, g_dom = (_autograd(t.loss, params) for t in terms)
    enc, heads = _per_modality(m)
    for i in heads:
        torch.testing.assert_close(got[i], g_mm[i] + g_uni[i] + g_dom[i], rtol=1e-12, atol=1e-14)
    for mod, idx in enc.items():
        a = torch.cat([g_mm[i].reshape(-1) for i in idx])
        b = torch.cat([g_uni[i].reshape(-1) for i in idx])
        cos = (a @ b) / (a.norm() * b.norm())
        if cos > 0:
            w = 0.5
        else:
            w = ((b @ b - a @ b) / ((a - b) @ (a - b))).item()
        close(logs[f"mmpareto/w_mm_{mod}"], w, 1e-10)
        for i in idx:
            new = 2 * (w * g_mm[i] + (1 - w) * g_uni[i])
            floor = (g_mm[i] + g_uni[i]).norm()
            if floor > new.norm() > 0:
                new = new * floor / new.norm()
            torch.testing.assert_close(got[i], 1.5 * new + g_dom[i], rtol=1e-10, atol=1e-14)


def test_mmpareto_needs_its_terms():
    m = _method("erm")
    with pytest.raises(ValueError, match="unimodal term"):
        _grads(m, _batch(), build_strategy("mmpareto"))


# ===================================================================================== AGM
def test_agm_coefficient_from_known_scores():
    # s = [1/2, 1]: ratio_a = exp(1 - 1/2) = e^(1/2), ratio_v = e^(-1/2); running means [0.8, 0.8] -> opt = 1
    # k_a = exp(1 * (1 - e^(1/2))), k_v = exp(1 - e^(-1/2))
    ratio, opt, k = agm_coefficients(vec(0.5, 1.0), vec(0.8, 0.8), alpha=1.0)
    close(ratio, [math.exp(0.5), math.exp(-0.5)])
    close(opt, [1.0, 1.0])
    close(k, [math.exp(1 - math.exp(0.5)), math.exp(1 - math.exp(-0.5))])
    # cap: running means [0, 3] -> opt_a = e^3; scores [3, 0] -> ratio_a = e^-3; opt - ratio > 10 -> exp(0.5 * 10)
    _, _, k = agm_coefficients(vec(3.0, 0.0), vec(0.0, 3.0), alpha=0.5)
    close(k[0], math.exp(5.0))
    # scores: s = mean -log(max(q, 1e-8)); q_a = [3/4, 1/2], q_b = [1/2, 1/4]
    s = agm_scores(_hand_shares(), ["a", "b"])
    close(s, [-(math.log(0.75) + math.log(0.5)) / 2, -(math.log(0.5) + math.log(0.25)) / 2], 1e-6)
    close(agm_scores({"a": vec(0.0, 1.0)}, ["a"]), [-math.log(1e-8) / 2], 1e-6)


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_agm_mono_responses_equal_logit_shares_for_late_fusion(fusion):
    # m_a = 1/2 (f(a, v) - f(0, v) + f(a, 0)) with model.classify on zeroed features == share_a
    m = _method("agm", fusion=fusion)
    out = m.model(_batch().inputs)
    z = out.feats
    f = lambda za, zb: m.model.classify({"a": za, "b": zb})[0]          # noqa: E731
    m_a = 0.5 * (f(z["a"], z["b"]) - f(0 * z["a"], z["b"]) + f(z["a"], 0 * z["b"]))
    m_b = 0.5 * (f(z["a"], z["b"]) - f(z["a"], 0 * z["b"]) + f(0 * z["a"], z["b"]))
    torch.testing.assert_close(m_a, out.shares["a"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m_b, out.shares["b"], rtol=1e-10, atol=1e-12)


def test_agm_refuses_heads_and_fusions_where_shares_are_not_the_responses():
    for kw in ({"head_hidden": 8}, {"fusion": "gated"}):
        m = _method("agm", **kw)
        with pytest.raises(ValueError, match="head_hidden=0"):
            _grads(m, _batch())


def test_agm_scales_classification_gradient_and_keeps_running_means():
    m = _method("agm", {"agm_alpha": 2.0, "lambda_d": 0.3})
    batch = _batch()
    params = m.trainable_parameters()
    _, terms = m.terms(batch)
    g_cls, g_dom = _autograd(terms[0].loss, params), _autograd(terms[1].loss, params)
    q = terms[0].confidence
    s1 = torch.stack([-q[mod].log().mean() for mod in ("a", "b")])
    got, logs = _grads(m, batch)
    # first step: running means 0 -> opt = 1;  k_a = exp(2 (1 - exp(s_b - s_a)))
    k = {"a": math.exp(2 * (1 - math.exp((s1[1] - s1[0]).item()))),
         "b": math.exp(2 * (1 - math.exp((s1[0] - s1[1]).item())))}
    enc, heads = _per_modality(m)
    for mod, idx in enc.items():
        close(logs[f"agm/k_{mod}"], k[mod], 1e-6)
        for i in idx:
            # k is float32: the share confidences are computed in float32
            torch.testing.assert_close(got[i], k[mod] * g_cls[i] + g_dom[i], rtol=1e-5, atol=1e-10)
    for i in heads:
        torch.testing.assert_close(got[i], g_cls[i] + g_dom[i], rtol=1e-12, atol=1e-14)
    close(m.strategy.mean_scores, s1, 1e-6)
    _grads(m, batch)                           # same scores again: mean stays, step count 2
    close(m.strategy.mean_scores, s1, 1e-6)
    assert m.strategy.steps == 2
    state = m.state_dict()
    fresh = _method("agm", {"agm_alpha": 2.0, "lambda_d": 0.3})
    fresh.load_state_dict(state)
    assert fresh.strategy.steps == 2
    close(fresh.strategy.mean_scores, s1, 1e-6)


def test_agm_alpha_zero_equals_sum():
    m = _method("agm", {"agm_alpha": 0.0})
    batch = _batch()
    got, _ = _grads(m, batch)
    _same(got, _sum_grads(m, batch), 1e-12)


# ======================================================================== Gradient-Blending
def test_blending_weights_from_known_losses():
    # prev: train [1.0, 1.0], val [1.2, 1.5];  now: train [0.6, 0.8], val [1.0, 1.2]
    # dG = [0.2, 0.3];  O_prev = [0.2, 0.5], O_now = [0.4, 0.4] -> dO = [0.2, -0.1], dO^2 = [0.04, 0.01]
    # raw = [0.2/0.04, 0.3/0.01] = [5, 30] -> normalised to sum 2: [10/35, 60/35] = [2/7, 12/7]
    w = blending_weights([1.0, 1.0], [1.2, 1.5], [0.6, 0.8], [1.0, 1.2])
    close(w, [2 / 7, 12 / 7])
    # a head whose held-out loss rose gets 0; none decreasing -> None (keep the weights)
    close(blending_weights([1.0, 1.0], [1.2, 1.0], [0.6, 0.8], [1.0, 1.1]), [2.0, 0.0])
    assert blending_weights([1.0], [1.0], [0.5], [1.2]) is None


@pytest.mark.parametrize("heads", ["aux", "shares"])
def test_grad_blending_loss_with_unit_weights_is_the_sum_of_heads(heads):
    m = _method("grad_blending", {"gb_heads": heads})
    batch = _batch()
    out, (term,) = m.terms(batch)
    obj = m.objectives[0]
    if heads == "aux":
        uni = {mod: obj.aux.heads[mod](out.feats[mod]) for mod in ("a", "b")}
    else:
        uni = out.shares
    want = F.cross_entropy(out.logits, batch.label) + sum(F.cross_entropy(uni[mod], batch.label) for mod in ("a", "b"))
    close(term.loss, want.item(), 1e-6)              # the objective works in float32
    obj.weights.copy_(torch.tensor([0.5, 2.0, 0.0]))
    _, (term,) = m.terms(batch)
    want = 0.5 * F.cross_entropy(out.logits, batch.label) + 2.0 * F.cross_entropy(uni["a"], batch.label)
    close(term.loss, want.item(), 1e-6)              # the objective works in float32
    assert set(term.confidence) == {"a", "b"}


def test_grad_blending_epoch_hook_estimates_weights_and_resumes(tmp_path):
    cfg = RunConfig(target="d2", benchmark="toy", method="grad_blending", encoders=MLP_ENCODERS, epochs=3, lr=1e-2)
    full = train(cfg, benchmark=Toy(), progress=False)
    rows = full["epochs"]
    gb = [r["grad_blending"] for r in rows]
    heads = ["fused", "a", "b"]
    assert gb[0]["weights_next"] == dict.fromkeys(heads, 1.0)      # one checkpoint: no estimate yet
    want = blending_weights([gb[0]["train_ce"][h] for h in heads], [gb[0]["val_ce"][h] for h in heads],
                            [gb[1]["train_ce"][h] for h in heads], [gb[1]["val_ce"][h] for h in heads])
    assert want is not None
    assert [gb[1]["weights_next"][h] for h in heads] == pytest.approx(want.tolist(), rel=1e-6)
    assert rows[2]["train"]["gb_w_a"] == pytest.approx(gb[1]["weights_next"]["a"], rel=1e-6)
    # the train losses are the epoch means of the term's logs
    assert gb[1]["train_ce"]["a"] == pytest.approx(rows[1]["train"]["gb_ce_a"])
    ckpt = tmp_path / "ck.pt"
    train(cfg, checkpoint=ckpt, benchmark=Toy(), progress=False, stop_after=2)
    resumed = train(cfg, checkpoint=ckpt, benchmark=Toy(), progress=False)
    assert [r["grad_blending"] for r in resumed["epochs"]] == gb
    assert resumed["final"] == full["final"]


# ==================================================================== registry, plugins, runs
@pytest.mark.parametrize("name", ["ogm_ge", "pcgrad", "mmpareto", "agm"])
def test_gmp_plugin_refuses_the_balancing_strategies(name):
    with pytest.raises(ValueError, match="'sum' strategy"):
        resolve(f"{name}+gmp")


def test_plugins_compose():
    objectives, strategy, hp = resolve("mmpareto+mer")
    assert [o for o, _ in objectives] == ["ce", "unimodal_heads", "mer"] and strategy[0] == "mmpareto"
    objectives, strategy, _ = resolve("grad_blending+gmp")
    assert [o for o, _ in objectives] == ["grad_blending", "domain_adv"] and strategy[0] == "gmp"
    assert dict(objectives)["domain_adv"]["weight"] == 0.3
    objectives, _, _ = resolve("agm", {"lambda_d": 0.5})
    assert objectives[-1] == ("domain_adv", {"weight": 0.5, "hidden": 0})
    with pytest.raises(ValueError, match="agm: hyperparameter 'lambda_d'"):
        resolve("agm", {"lambda_d": -1.0})
    # +mer: one more term, and every trainable parameter (encoders, heads, MER projectors) gets a gradient
    for name in ("ogm_ge+mer", "pcgrad+mer", "mmpareto+mer", "agm+mer", "grad_blending+mer"):
        m = _method(name, {"mer_hidden": 8, "mer_dim": 4})
        got, _ = _grads(m, _batch())
        assert all(g is not None and torch.isfinite(g).all() for g in got), name


@pytest.mark.parametrize("name", ["ogm_ge", "pcgrad", "mmpareto", "agm", "grad_blending"])
def test_short_training_lowers_the_losses(name):
    cfg = RunConfig(target="d2", benchmark="toy", method=name, encoders=MLP_ENCODERS, epochs=2, lr=1e-2)
    rec = train(cfg, benchmark=Toy(), progress=False)
    first, last = rec["epochs"][0]["train"], rec["epochs"][-1]["train"]
    keys = [k for k in first if k.startswith("loss_")]
    assert keys and all(last[k] < first[k] for k in keys), {k: (first[k], last[k]) for k in keys}
    assert rec["final"]["val_acc"] > 100 / 3 + 5                   # above chance (3 classes)


def test_sweep_cli_runs_the_baselines(tmp_path, capsys):
    args = ["--benchmark", "synth_foley", "--bench", "size=tiny", "--seeds", "0", "--epochs", "1",
            "--results", str(tmp_path), "--quiet"]
    assert main(["sweep", "--methods", "ogm_ge,pcgrad", "--targets", "studio", *args]) == 0
    assert len(list((tmp_path / "synth_foley").rglob("*.json"))) == 2
    assert main(["collect", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ogm_ge" in out and "pcgrad" in out


def test_total_loss_keeps_float64_rounds_half_up_and_refuses_no_terms():
    tiny = 1e-9                                                   # lost in float32 (eps 1.2e-7), kept in float64
    terms = [Term("a", "cls", torch.tensor(1.0, dtype=torch.float64)), Term("b", "dom", torch.tensor(tiny, dtype=torch.float64))]
    total = total_loss(terms)
    assert total.dtype == torch.float64 and total.item() == 1.0 + tiny
    half = total_loss([Term("h", "cls", torch.tensor(0.5, dtype=torch.float16)), Term("f", "cls", torch.tensor(0.25))])
    assert half.dtype == torch.float32 and half.item() == 0.75
    assert total_loss([], allow_empty=True) is None
    with pytest.raises(ValueError, match="at least one objective"):
        total_loss([])
